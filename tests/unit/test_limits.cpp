// Limits before allocation and the findings of the fuzzers (tests/fuzz, docs/reliability.md): each bad input is
// refused with one vlmamba::Error line, before anything is sized by it. The fuzzers' own reproducers live under
// tests/data/fuzz/<target>/ and are replayed by scripts/fuzz --ci.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <vlmamba/io/image.hpp>
#include <vlmamba/io/safetensors.hpp>
#include <vlmamba/io/tokenizer.hpp>
#include <vlmamba/models/connector.hpp>
#include <vlmamba/models/mamba_config.hpp>
#include <vlmamba/models/vision_config.hpp>
#include <vlmamba/models/vision_encoder.hpp>

using namespace vlmamba;
namespace fs = std::filesystem;

namespace {

template <class F>
void refused(F&& f, std::initializer_list<std::string> parts) {
    try {
        f();
        FAIL("expected vlmamba::Error");
    } catch (const Error& e) {
        const std::string msg = e.what();
        CHECK_MESSAGE(msg.find('\n') == std::string::npos, "not one line: ", msg);
        CHECK_MESSAGE(msg.size() < 400, "too long: ", msg.size(), " bytes");
        for (const auto& p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "'", p, "' not in: ", msg);
    }
}

std::string deep(int depth) { return std::string(std::size_t(depth), '[') + std::string(std::size_t(depth), ']'); }

fs::path write_temp(const std::string& name, const std::string& text) {
    const fs::path p = fs::temp_directory_path() / ("vlmamba_limits_" + name);
    std::ofstream(p, std::ios::binary) << text;
    return p;
}

nlohmann::json mamba(const std::string& extra) {
    return nlohmann::json::parse(R"({"d_model": 64, "n_layer": 2, "vocab_size": 100)" + extra + "}");
}

}  // namespace

TEST_CASE("JSON nesting is capped before parsing in every reader") {
    const std::string d = deep(20000);
    refused([&] { load_mamba_config(write_temp("deep.json", R"({"d_model": )" + d + "}")); },
            {"[mamba_config]", "nested deeper than 128"});
    refused([&] { load_vision_config(write_temp("deep_vision.json", R"({"vision_config": )" + d + "}")); },
            {"[vision_config]", "nested deeper than 128"});
    refused([&] { Tokenizer::from_string(R"({"model": )" + d + "}", "tok.json"); }, {"[tokenizer]", "tok.json"});
    refused([&] { parse_connector_config(R"({"type": )" + d + "}", "meta"); }, {"[connector]", "meta"});
    const std::string header = R"({"__metadata__": {"a": )" + d + "}}";
    std::vector<std::byte> file(8 + header.size());
    const std::uint64_t n = header.size();
    std::memcpy(file.data(), &n, 8);
    std::memcpy(file.data() + 8, header.data(), header.size());
    refused([&] { parse_safetensors(file.data(), file.size(), "deep.safetensors"); },
            {"[safetensors]", "deep.safetensors", "nested deeper"});
    // 128 levels are fine
    CHECK_NOTHROW(detail::check_json_depth(deep(128), "x", "test"));
}

TEST_CASE("config integers out of int range are refused, not wrapped") {
    refused([] { parse_mamba_config(mamba(R"(, "n_layer": 4294967300)"), "c.json"); },
            {"c.json", "'n_layer'", "out of range"});
    refused([] { parse_mamba_config(mamba(R"(, "ssm_cfg": {"dt_rank": -4294967295})"), "c.json"); },
            {"'dt_rank'", "out of range"});
    refused([] { parse_mamba_config(mamba(R"(, "norm_epsilon": 1e300)"), "c.json"); }, {"'norm_epsilon'", "float"});
}

TEST_CASE("config sizes are multiplied without overflow and capped") {
    refused([] { parse_mamba_config(mamba(R"(, "ssm_cfg": {"expand": 2147483647})"), "c.json"); },
            {"expand * d_model"});
    refused([] { parse_mamba_config(mamba(R"(, "vocab_size": 2147483647, "pad_vocab_size_multiple": 8)"), "c.json"); },
            {"vocab_size"});
    refused([] { parse_mamba_config(mamba(R"(, "n_layer": 2000000000)"), "c.json"); }, {"n_layer <= 1024"});
    refused([] { parse_mamba_config(nlohmann::json::parse(R"({"hidden_size": 2147483647, "num_hidden_layers": 1,
                                                            "vocab_size": 10})"), "hf.json"); },
            {"hf.json"});
    refused([] { parse_vision_config(nlohmann::json::parse(R"({"model_type": "siglip_vision_model",
                                     "image_size": 2147483647, "patch_size": 1})"), "v.json"); },
            {"image_size <= 16384"});
    refused([] { parse_vision_config(nlohmann::json::parse(R"({"model_type": "clip_vision_model",
                                     "num_hidden_layers": 2147483647, "feature_layer": -2})"), "v.json"); },
            {"num_hidden_layers <= 1024"});
    refused([] { parse_connector_config(R"({"type": "vss_l2", "expand": 1073741823})"); }, {"'expand'", "[1, 64]"});
}

TEST_CASE("tokenizer tables are not sized by a stray huge id") {
    // 134 bytes that used to ask for 2^30 strings (32 GiB)
    const std::string t = R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 1073741823}, "merges": ["a b"]},
                             "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}})";
    refused([&] { Tokenizer::from_string(t, "big.json"); }, {"big.json", "token ids below", "1073741823"});
}

TEST_CASE("JPEG Huffman tables are validated before stb reads them") {
    // SOI, then a DHT whose code counts sum to 324 (> 256): Debian's stb reads past its 257-entry table.
    const std::vector<std::uint8_t> jpg = {0xFF, 0xD8, 0xFF, 0xC4, 0x5A, 0x3D, 0x11, 0x5A, 0xD9};
    refused([&] { decode_image(jpg, "h.jpg"); }, {"h.jpg", "corrupt or truncated jpeg"});
    std::vector<std::uint8_t> dht = {0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x14, 0x00, 0x11, 0x5A, 0xD9};
    dht.resize(dht.size() + 14, 0);
    dht.insert(dht.end(), {0xFF, 0xD9});
    refused([&] { decode_image(dht, "h2.jpg"); }, {"Huffman table"});
}

TEST_CASE("a tiny image file that claims a huge size is refused before stb allocates it") {
    const fs::path dir = fs::path(VLMAMBA_TEST_DATA_DIR) / "fuzz" / "image";
    refused([&] { load_image(dir / "bmp_claims_768mb.bmp"); }, {"truncated bmp", "16000x16000", "768000014 bytes"});
    refused([&] { load_image(dir / "png_claims_768mb.png"); }, {"truncated png", "the file has 69"});
    refused([&] { load_image(dir / "gif_claims_2gb.gif"); }, {"gif is 16000x16000", "at most 16777216 pixels"});
    // found by fuzz_image: an IDAT chunk whose length runs past the end (stb reallocated to the claimed length)
    refused([&] { load_image(dir / "png_idat_length_past_end.png"); }, {"corrupt or truncated png", "chunk"});
}

TEST_CASE("a vision_tower_path naming the model's own directory is refused, not followed forever") {
    const fs::path dir = fs::temp_directory_path() / "vlmamba_limits_self_tower";
    fs::create_directories(dir);
    for (const char* rel : {"", "."}) {
        CAPTURE(rel);
        std::ofstream(dir / "config.json") << R"({"model_type": "vlmamba", "vision_tower_path": ")" << rel << "\"}";
        refused([&] { load_vision_tower(dir); }, {"vision_tower_path", "names a VL-Mamba directory"});
    }
    fs::remove_all(dir);
}
