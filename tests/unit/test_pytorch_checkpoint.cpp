// PyTorch checkpoints (torch.save): the restricted unpickler, the zip and legacy formats, tensors as views, the
// WeightStore integration, inspect and convert, over tests/data/pytorch (written by zoo/fixtures/make_pytorch.py
// with torch 1.13; expected values from torch and from the transformers goldens in tests/data/mamba).
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>


#include "test_helpers.hpp"
#include "vlmamba/io/convert.hpp"
#include "vlmamba/io/inspect.hpp"
#include "vlmamba/io/pickle.hpp"
#include "vlmamba/io/pytorch_checkpoint.hpp"
#include "vlmamba/io/weights.hpp"
#include "vlmamba/models/load_mamba.hpp"

namespace fs = std::filesystem;
using namespace vlmamba;
using vlmamba::test::error_of;
using vlmamba::test::read_bytes;
using vlmamba::test::rel_err;
using vlmamba::test::same_bytes;
using vlmamba::test::TempDir;
using vlmamba::test::write_bytes;

namespace {

const fs::path kPytorchData = fs::path(VLMAMBA_TEST_DATA_DIR) / "pytorch";
const fs::path kGolden = fs::path(VLMAMBA_TEST_DATA_DIR) / "mamba" / "tiny-tied" / "golden.safetensors";
const char* const kPayloadMark = "/tmp/vlmamba_pytorch_payload_ran";  // what the bad files' payloads would create

std::vector<std::int32_t> golden_ids() {
    const WeightStore g = WeightStore::open(kGolden);
    return test::ids_of(g.get("input_ids"));
}

Tensor golden_tensor(const char* name) { return WeightStore::open(kGolden).get(name); }

}  // namespace

TEST_CASE("pytorch: Mamba checkpoints made by torch.save load to the transformers logits") {
    const auto ids = golden_ids();
    const Tensor logits = golden_tensor("logits"), logits_bf16 = golden_tensor("logits_bf16");
    struct Case {
        const char* dir;
        bool bf16;   // weights rounded to bf16: compare with transformers on the bf16 file
        double tol;  // vs the f32 logits
    };
    for (const Case c : {Case{"mamba-f32", false, 2e-5}, Case{"mamba-bf16", true, 3e-2}, Case{"mamba-f16", false, 3e-2},
                         Case{"mamba-legacy", true, 3e-2}, Case{"mamba-sharded", true, 3e-2},
                         Case{"mamba-zip64", true, 3e-2}, Case{"torch2/mamba-bf16", true, 3e-2}}) {
        const std::string dir_name = c.dir;
        CAPTURE(dir_name);
        const fs::path dir = kPytorchData / c.dir;
        const WeightStore store = WeightStore::open(dir);
        CHECK(store.format() == WeightFormat::Pytorch);
        CHECK(store.sharded() == (std::string(c.dir) == "mamba-sharded"));
        const MambaLm lm = load_mamba_lm(dir);
        const Tensor out = lm.forward(ids);
        CHECK(rel_err(out, logits) <= c.tol);
        if (c.bf16) CHECK(rel_err(out, logits_bf16) <= 2e-5);
        MESSAGE(dir_name << ": rel err vs f32 logits " << rel_err(out, logits));
    }
    // The tied head shares the embedding's storage in the file (one view), and the loaded model keeps one copy.
    for (const char* d : {"mamba-f32", "mamba-bf16", "mamba-zip64", "torch2/mamba-bf16"}) {
        const WeightStore s = WeightStore::open(kPytorchData / d / "pytorch_model.bin");
        CHECK(s.view("lm_head.weight").raw() == s.view("backbone.embedding.weight").raw());
        const MambaLm lm = load_mamba_lm(kPytorchData / d);
        CHECK(lm.lm_head.raw() == lm.embedding.raw());
    }
}

TEST_CASE("pytorch: dtypes, storage offsets and strides as torch wrote them (zip, force_zip64, legacy; 1.13, 2.11)") {
    // torch 1.13 (Debian) wrote the top directory, torch 2.11 (byteorder, .format_version, .storage_alignment,
    // .data/serialization_id entries) wrote torch2/.
    for (const std::string file : {"views.pt", "views_zip64.pt", "views_legacy.pt", "torch2/views.pt"}) {
        CAPTURE(file);
        const fs::path path = kPytorchData / file;
        const SafetensorsFile expected = SafetensorsFile::open(path.parent_path() / "views_expected.safetensors");
        const PytorchCheckpoint c = PytorchCheckpoint::open(path);
        CHECK(c.format() == (file == "views_legacy.pt" ? PytorchCheckpoint::Format::Legacy
                                                       : PytorchCheckpoint::Format::Zip));
        CHECK(c.names() == expected.names());
        CHECK(c.leaves().empty());
        for (const auto& name : expected.names()) {
            CAPTURE(name);
            const Tensor t = c.get(name);
            CHECK(t.is_contiguous());
            CHECK(same_bytes(t, expected.get(name)));
        }
        const PytorchEntry& cols = c.entry("f32_offset_cols");
        CHECK(cols.offset == 11);
        CHECK(cols.strides == Shape{8, 1});
        CHECK(c.entry("f32_transposed").strides == Shape{1, 8});
        CHECK(c.entry("f32_expanded").strides == Shape{0, 1});
    }
    // Zip entries are 64-byte aligned: contiguous tensors are views of the mapping, and views of one storage
    // (two names, a storage offset) point into the same memory.
    const PytorchCheckpoint c = PytorchCheckpoint::open(kPytorchData / "views.pt");
    const Tensor base = c.get("f32");
    CHECK(c.get("f32_tied").raw() == base.raw());
    CHECK(c.get("f32_offset_rows").raw() == base.raw() + 16 * 4);
    CHECK(c.get("f32_transposed").raw() != base.raw());  // strided: a contiguous copy
    CHECK(c.get("bf16_row").raw() == c.get("bf16").raw() + 7 * 2);
    CHECK(c.archive() == "views");
    CHECK(c.get("scalar").shape().empty());
    CHECK(c.get("scalar").data<float>()[0] == 3.5f);
    CHECK(c.get("u8").to(DType::F32).data<float>()[9] == 225.f);
    CHECK(c.get("bool").to(DType::F32).data<float>()[3] == 1.f);
}

TEST_CASE("pytorch: a nested checkpoint flattens to dotted names and keeps its other values") {
    for (const fs::path& dir : {kPytorchData, kPytorchData / "torch2"}) {
        const std::string dir_name = dir.string();
        CAPTURE(dir_name);
        std::ifstream in(dir / "nested_expected.json");
        const nlohmann::json want = nlohmann::json::parse(in);
        const PytorchCheckpoint c = PytorchCheckpoint::open(dir / "nested.pt");
        std::vector<std::string> names;
        for (const auto& [name, v] : want["tensors"].items()) {
            CAPTURE(name);
            names.push_back(name);
            REQUIRE(c.contains(name));
            CHECK(dtype_name(c.entry(name).dtype) == v[0].get<std::string>());
            CHECK(c.entry(name).shape == v[1].get<Shape>());
        }
        CHECK(c.names() == names);
        std::map<std::string, std::string> leaves;
        for (const auto& l : c.leaves()) leaves[l.name] = l.value;
        std::map<std::string, std::string> want_leaves;
        for (const auto& [name, v] : want["leaves"].items()) want_leaves[name] = v.get<std::string>();
        CHECK(leaves == want_leaves);
        CHECK(c.get("optimizer.state.0.exp_avg").at({1, 3}) == 1.f);
    }

    std::ostringstream out;
    inspect(kPytorchData / "nested.pt", out);
    const std::string s = out.str();
    CHECK(s.find("(PyTorch checkpoint)") != std::string::npos);
    CHECK(s.find("model.projector.fc1.weight  F32") != std::string::npos);
    CHECK(s.find("model.llm.0.weight") != std::string::npos);
    CHECK(s.find("10 other values:") != std::string::npos);
    CHECK(s.find("  step = 1000\n") != std::string::npos);
    CHECK(s.find("  optimizer.param_groups.0.betas = (0.9, 0.999)\n") != std::string::npos);
    CHECK(s.find("  run = 'cobra-stage2'\n") != std::string::npos);
}

TEST_CASE("pytorch: every bad file is refused with one line naming the file and the reason; nothing runs") {
    std::error_code ec;
    fs::remove(kPayloadMark, ec);
    const std::map<std::string, std::string> reasons = {
        {"os_system.pt", "refused global posix.system"},
        {"os_system_legacy.pt", "refused global posix.system"},
        {"eval.pt", "refused global builtins.eval"},
        {"numpy.pt", "refused global numpy.core.multiarray._reconstruct"},
        {"dtype_object.pt", "refused global torch.float64"},
        {"not_dict.pt", "the top level is a list"},
        {"float64.pt", "storage class torch.DoubleStorage, an unsupported dtype"},
        {"plain_pickle.pkl", "does not start with torch's magic number"},
        {"truncated.pt", "no end-of-central-directory record (truncated"},
        {"corrupt_directory.pt", "is malformed (corrupt archive)"},
        {"corrupt_pickle.pt", "fails its CRC-32 check"},
        {"truncated_legacy.pt", "only 16 bytes remain (truncated?)"},
        {"not_a_checkpoint.bin", "neither a zip archive nor a pickle"},
        {"empty.bin", "neither a zip archive nor a pickle (empty file)"},
        {"compressed.pt", "is compressed (method 8, deflate)"},
        {"no_pickle.pt", "no ARCHIVE/data.pkl entry"},
        {"size_past_storage.pt", "tensor 'w' with offset 0, size (7,) and stride (1,) reads element 6 of storage '0', "
                                 "which holds 6 elements"},
        {"offset_past_storage.pt", "with offset 5, size (2,) and stride (1,) reads element 6"},
        {"stride_out_of_bounds.pt", "size (2, 2) and stride (5, 1) reads element 6"},
        {"negative_offset.pt", "negative storage offset -1"},
        {"numel_past_data.pt", "storage '0' declares 8 elements of 4 bytes but holds 24 bytes"},
        {"missing_storage.pt", "storage '7' has no entry 'archive/data/7'"},
        {"opcode_inst.pt", "opcode 'i' (INST) is outside the supported subset"},
        {"opcode_newobj.pt", "opcode 0x81 (NEWOBJ) is outside the supported subset"},
        {"memo_index.pt", "memo index 4294967295 exceeds the limit"},
        {"memo_bomb.pt", "expands to more than 1048576 names"},
        {"recursion_bomb.pt", "nested deeper than 64 levels"},
        {"mark_bomb.pt", "more than 256 open MARKs"},
    };
    std::size_t seen = 0;
    for (const auto& de : fs::directory_iterator(kPytorchData / "bad")) {
        const std::string fn = de.path().filename().string();
        if (fn == "README.md") continue;
        CAPTURE(fn);
        ++seen;
        auto it = reasons.find(fn);
        REQUIRE_MESSAGE(it != reasons.end(), "add the expected reason of ", fn, " to this test");
        for (const auto& open : std::vector<std::function<void()>>{
                 [&] { PytorchCheckpoint::open(de.path()); }, [&] { WeightStore::open(de.path()); },
                 [&] { std::ostringstream o; inspect(de.path(), o); }}) {
            const std::string msg = error_of(open);
            CHECK(msg.find(it->second) != std::string::npos);
            CHECK(msg.find(de.path().string()) != std::string::npos);
            CHECK(msg.find('\n') == std::string::npos);
            CHECK(msg.size() < 400);
        }
    }
    CHECK(seen == reasons.size());
    CHECK_FALSE(fs::exists(kPayloadMark));
}

TEST_CASE("pytorch: WeightStore prefers safetensors, accepts pytorch_model.bin and .bin/.pt paths") {
    TempDir d;
    const fs::path src = kPytorchData / "mamba-f32";
    fs::copy_file(src / "pytorch_model.bin", d.path / "pytorch_model.bin");
    WeightStore s = WeightStore::open(d.path);
    CHECK(s.format() == WeightFormat::Pytorch);
    CHECK(s.checkpoints().size() == 1);
    CHECK(s.files().empty());
    CHECK(s.info("lm_head.weight").shape == Shape{96, 40});
    CHECK(s.info("lm_head.weight").file == d.path / "pytorch_model.bin");
    CHECK(error_of([&] { s.file_of("lm_head.weight"); }).find("is in a PyTorch checkpoint") != std::string::npos);

    // Both present: model.safetensors wins.
    save_safetensors(d.path / "model.safetensors", {{"only_here", Tensor::full({2}, 1.f)}});
    s = WeightStore::open(d.path);
    CHECK(s.format() == WeightFormat::Safetensors);
    CHECK(s.contains("only_here"));

    // A file path of any name is sniffed; .pt and .bin are PyTorch.
    fs::copy_file(kPytorchData / "views.pt", d.path / "weights.pth");
    fs::copy_file(kPytorchData / "views.pt", d.path / "weights.data");
    CHECK(WeightStore::open(d.path / "weights.pth").contains("f32_tied"));
    CHECK(WeightStore::open(d.path / "weights.data").contains("f32_tied"));

    // A shard of the other format in an index is refused, naming both.
    fs::create_directories(d.path / "mixed");
    save_safetensors(d.path / "mixed" / "a.safetensors", {{"a", Tensor::full({2}, 1.f)}});
    fs::copy_file(kPytorchData / "views.pt", d.path / "mixed" / "b.bin");
    std::ofstream(d.path / "mixed" / "pytorch_model.bin.index.json")
        << R"({"weight_map": {"a": "a.safetensors", "f32": "b.bin"}})";
    const std::string msg = error_of([&] { WeightStore::open(d.path / "mixed"); });
    CHECK(msg.find("b.bin is a PyTorch checkpoint, but the other files are safetensors files") != std::string::npos);

    // A shape mismatch names the shard in a sharded PyTorch store.
    const WeightStore sh = WeightStore::open(kPytorchData / "mamba-sharded");
    WeightLoader l(sh);
    l.take("lm_head.weight", {1, 2});
    const std::string mismatch = error_of([&] { l.finish(); });
    CHECK(mismatch.find("'lm_head.weight' has shape (96, 40), expected (1, 2) in pytorch_model-0000") !=
          std::string::npos);
}

TEST_CASE("pytorch: convert writes safetensors with the same names and values") {
    TempDir d;
    const ConvertSummary s = convert_to_safetensors(kPytorchData / "views.pt", d.path / "views.safetensors");
    CHECK(s.tensors == 18);
    const SafetensorsFile out = SafetensorsFile::open(d.path / "views.safetensors");
    const SafetensorsFile expected = SafetensorsFile::open(kPytorchData / "views_expected.safetensors");
    CHECK(out.names() == expected.names());
    for (const auto& name : expected.names()) CHECK(same_bytes(out.get(name), expected.get(name)));
    CHECK(out.metadata().at("format") == "pt");

    const ConvertSummary n = convert_to_safetensors(kPytorchData / "nested.pt", d.path / "nested.safetensors");
    CHECK(n.skipped_leaves == 10);

    // A converted Mamba directory gives the same logits as the checkpoint.
    fs::create_directories(d.path / "lm");
    fs::copy_file(kPytorchData / "mamba-sharded" / "config.json", d.path / "lm" / "config.json");
    convert_to_safetensors(kPytorchData / "mamba-sharded", d.path / "lm" / "model.safetensors");
    const auto ids = golden_ids();
    CHECK(rel_err(load_mamba_lm(d.path / "lm").forward(ids), golden_tensor("logits_bf16")) <= 2e-5);
    CHECK(error_of([&] { convert_to_safetensors(kPytorchData / "bad" / "os_system.pt", d.path / "x.safetensors"); })
              .find("refused global posix.system") != std::string::npos);
    CHECK_FALSE(fs::exists(d.path / "x.safetensors"));
}

TEST_CASE("pytorch: the unpickler reads protocol 4 opcodes and renders values as Python does") {
    using pickle::Kind;
    pickle::Arena a;
    pickle::Hooks h;
    h.allow_global = [](std::string_view m, std::string_view n) { return m == "collections" && n == "OrderedDict"; };
    h.reduce = [](pickle::Arena& ar, const pickle::Value&, const pickle::Value&) { return ar.make(Kind::Dict); };
    // FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, REDUCE, LONG1 (negative), BINFLOAT, BINGET, TUPLE3, SETITEMS.
    const unsigned char p[] = {0x80, 4, 0x95, 50, 0, 0, 0, 0, 0, 0, 0,
                               0x8c, 11, 'c', 'o', 'l', 'l', 'e', 'c', 't', 'i', 'o', 'n', 's', 0x94,
                               0x8c, 11, 'O', 'r', 'd', 'e', 'r', 'e', 'd', 'D', 'i', 'c', 't', 0x94,
                               0x93, ')', 'R', 0x94, '(', 0x8c, 1, 'n', 0x8a, 2, 0x00, 0xff, 0x8c, 1, 'f',
                               'G', 0x3f, 0xd0, 0, 0, 0, 0, 0, 0, 0x8c, 1, 't', 'h', 0, 'h', 1, 0x88, 0x87, 'u', '.'};
    std::size_t used = 0;
    const pickle::Value* v = pickle::unpickle(a, reinterpret_cast<const std::byte*>(p), sizeof p, "test", h, &used);
    CHECK(used == sizeof p);
    REQUIRE(v->kind == Kind::Dict);
    CHECK(pickle::repr(*v) == "{'n': -256, 'f': 0.25, 't': ('collections', 'OrderedDict', True)}");

    // Without hooks every global is refused by name, and a short pickle is an error, not a crash.
    CHECK_THROWS_WITH_AS(pickle::unpickle(a, reinterpret_cast<const std::byte*>(p), sizeof p, "x", pickle::Hooks{}),
                         doctest::Contains("refused global collections.OrderedDict"), Error);
    CHECK_THROWS_WITH_AS(pickle::unpickle(a, reinterpret_cast<const std::byte*>(p), 20, "x", h),
                         doctest::Contains("[pickle] x: truncated pickle"), Error);
}

TEST_CASE("pytorch: random corruption of real checkpoints gives errors, never crashes") {
    TempDir d;
    std::mt19937 gen(11);
    for (const char* name : {"views.pt", "views_legacy.pt", "nested.pt", "views_zip64.pt"}) {
        const auto orig = read_bytes(kPytorchData / name);
        for (int trial = 0; trial < 150; ++trial) {
            auto b = orig;
            const int kind = trial % 3;
            if (kind == 0) {
                for (int k = 0; k < 4; ++k) b[gen() % b.size()] = static_cast<unsigned char>(gen());
            } else if (kind == 1) {
                b.resize(gen() % b.size());
            } else {
                // Corrupt a byte inside the pickle region (the first KB for these small files).
                b[gen() % std::min<std::size_t>(b.size(), 1024)] ^= static_cast<unsigned char>(1u << (gen() % 8));
            }
            const fs::path p = d.path / "x.pt";
            write_bytes(p, b);
            try {
                const PytorchCheckpoint c = PytorchCheckpoint::open(p);
                for (const auto& n : c.names()) (void)c.get(n).contiguous();
            } catch (const Error& e) {
                CHECK(std::string(e.what()).find(p.string()) != std::string::npos);
            }
        }
    }
}
