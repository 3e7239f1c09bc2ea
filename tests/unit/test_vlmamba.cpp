// Whole VL-Mamba against the float64 PyTorch reference (zoo/reference/make_vlmamba_fixtures.py), the zoo factory, and
// bad configs. This TU instantiates the zoo's variants (vlmamba/models/zoo.hpp) once for the tests.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "test_helpers.hpp"
#include "vlmamba/models/zoo.hpp"

using namespace vlmamba;
namespace fs = std::filesystem;
using vlmamba::test::rel_err;

namespace {
const fs::path kVlData = fs::path(VLMAMBA_TEST_DATA_DIR) / "vlmamba";

// Greedy continuation: prefill [prefix; ids], then recurrent steps.
std::vector<std::int32_t> greedy(const zoo::AnyVlMamba& m, const Tensor& prefix, const std::vector<std::int32_t>& ids,
                                 std::size_t n) {
    const MambaLm& lm = m.language_model();
    MambaState st = lm.new_state(1);
    Tensor h = lm.forward_hidden(m.input_embeddings({prefix}, ids), &st);
    Tensor last = lm.logits(h.slice(0, h.size(0) - 1, h.size(0)));
    std::vector<std::int32_t> out;
    for (std::size_t i = 0; i < n; ++i) {
        const float* l = last.data<float>();
        const auto id = std::int32_t(std::max_element(l, l + last.numel()) - l);
        out.push_back(id);
        last = lm.step(std::span<const std::int32_t>(&id, 1), st);
    }
    return out;
}
}  // namespace

TEST_CASE("VL-Mamba matches the float64 PyTorch reference, from one directory or from components") {
    for (const char* name : {"tiny-siglip-vssl2-bsm", "tiny-siglip-vssl2-bsm-components", "tiny-clip-mlp",
                             "tiny-clip-mlp-components"}) {
        CAPTURE(name);
        const fs::path dir = kVlData / name;
        if (!fs::exists(dir / "golden.safetensors")) {
            MESSAGE("skipping: no fixture at " << dir.string());
            continue;
        }
        const WeightStore golden = WeightStore::open(dir / "golden.safetensors");
        const zoo::AnyVlMamba m = zoo::load(dir);
        const Tensor pixels = golden.get("pixel_values");
        const auto ids = test::ids_of(golden.get("input_ids"));
        const Tensor features = m.features(pixels);
        CHECK(rel_err(features, golden.get("features")) <= 2e-5);
        const Tensor prefix = m.connect(features);
        CHECK(rel_err(prefix, golden.get("prefix")) <= 2e-5);
        CHECK(rel_err(m.text_logits({prefix}, ids), golden.get("logits")) <= 2e-5);
        const auto expect = test::ids_of(golden.get("greedy_ids"));
        CHECK(greedy(m, prefix, ids, expect.size()) == expect);
    }
}

TEST_CASE("zoo factory names the variant and rejects what it cannot build") {
    const fs::path dir = kVlData / "tiny-siglip-vssl2-bsm";
    if (!fs::exists(dir)) return;
    CHECK(zoo::load(dir).variant() == "siglip/vss_l2/bsm");
    const fs::path tmp = fs::temp_directory_path() / "vlmamba_bad_vl";
    fs::create_directories(tmp);
    fs::copy_file(dir / "model.safetensors", tmp / "model.safetensors", fs::copy_options::overwrite_existing);
    const nlohmann::json good = read_json_file(dir / "config.json", "test");
    auto write = [&](const nlohmann::json& j) { std::ofstream(tmp / "config.json") << j.dump(); };

    nlohmann::json j = good;
    j["connector_config"]["type"] = "qformer";
    write(j);
    CHECK_THROWS_WITH_AS(zoo::load(tmp), doctest::Contains("mlp"), Error);
    j = good;
    j["connector_config"]["scan"] = "diagonal";
    write(j);
    CHECK_THROWS_WITH_AS(zoo::load(tmp), doctest::Contains("bsm"), Error);
    j = good;
    j["model_type"] = "llava";
    write(j);
    CHECK_THROWS_WITH_AS(zoo::load(tmp), doctest::Contains("expected model_type \"vlmamba\""), Error);
    // Missing connector tensors: a weights file without mm_projector.* lists them all.
    {
        const WeightStore store = WeightStore::open(dir);
        std::vector<std::pair<std::string, Tensor>> keep;
        for (const auto& n : store.names())
            if (!n.starts_with("mm_projector.")) keep.emplace_back(n, store.get(n));
        save_safetensors(tmp / "model.safetensors", keep);
    }
    write(good);
    CHECK_THROWS_WITH_AS(zoo::load(tmp), doctest::Contains("mm_projector.linear1.weight"), Error);
    fs::remove_all(tmp);
}

TEST_CASE("a connector rejects a grid that does not match the token count") {
    const fs::path dir = kVlData / "tiny-siglip-vssl2-bsm";
    if (!fs::exists(dir)) return;
    const zoo::AnyVlMamba m = zoo::load(dir);
    const std::int64_t Cv = m.config().vision.hidden_size;
    CHECK_THROWS_WITH_AS(m.connect(Tensor::zeros({7, Cv})), doctest::Contains("expected"), Error);
}
