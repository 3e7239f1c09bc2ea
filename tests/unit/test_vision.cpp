// Vision towers: attention and patch conv against their references, CLIP and SigLIP against transformers on the
// golden fixtures (zoo/fixtures/make_vision.py) under the hub, transformers-5 and full-model namings, bad input.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "test_helpers.hpp"
#include "vlmamba/io/safetensors.hpp"
#include "vlmamba/models/vision_encoder.hpp"
#include "vlmamba/ops/attention.hpp"

using namespace vlmamba;
namespace fs = std::filesystem;
using vlmamba::test::randn;
using vlmamba::test::rel_err;

namespace {
const fs::path kVisionData = fs::path(VLMAMBA_TEST_DATA_DIR) / "vision";
constexpr double kGoldenTol = 2e-5;  // max|ours − ref| / max|ref|, f32 (task bar)

// A fresh empty temporary directory.
fs::path temp_dir(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / name;
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}
}  // namespace

TEST_CASE("attention matches the reference on odd shapes, with strided q/k/v views") {
    std::uint32_t seed = 100;
    for (int heads : {1, 3}) {
        for (std::int64_t N : {1, 7, 50}) {
            for (std::int64_t D : {5, 8}) {
                const std::int64_t C = heads * D;
                CAPTURE(heads);
                CAPTURE(N);
                CAPTURE(D);
                const Tensor qkv = randn({N, 3 * C}, seed++);  // (N, 3C) like a fused projection
                const Tensor q = qkv.slice(1, 0, C), k = qkv.slice(1, C, 2 * C), v = qkv.slice(1, 2 * C, 3 * C);
                const float scale = 1.f / std::sqrt(float(D));
                const Tensor want = ref::attention(q, k, v, heads, scale);
                CHECK(rel_err(attention(q, k, v, heads, scale), want) < 2e-6);
                // Into a strided output (a column slice of a wider buffer).
                Tensor wide = Tensor::zeros({N, C + 3});
                Tensor out = wide.slice(1, 1, 1 + C);
                attention_into(out, q, k, v, heads, scale);
                CHECK(rel_err(out, want) < 2e-6);
                CHECK(wide.at({N - 1, 0}) == 0.f);
                CHECK(wide.at({N - 1, C + 2}) == 0.f);
            }
        }
    }
    // More queries than one block, keys of another length, large logits (softmax stability).
    const Tensor q = randn({131, 12}, 7, 3.f), k = randn({50, 12}, 8, 3.f), v = randn({50, 12}, 9);
    CHECK(rel_err(attention(q, k, v, 3, 0.5f), ref::attention(q, k, v, 3, 0.5f)) < 2e-6);
    // Rows of the softmax sum to one: with v = 1 everywhere the output is 1.
    const Tensor ones = Tensor::full({50, 12}, 1.f);
    const Tensor o = attention(q, k, ones, 4, 1.f);
    for (std::int64_t i = 0; i < o.numel(); ++i) CHECK(o.data<float>()[i] == doctest::Approx(1.f).epsilon(1e-6));
    CHECK_THROWS_WITH_AS(attention(q, k, v, 5, 1.f), doctest::Contains("heads dividing C = 12"), Error);
    CHECK_THROWS_WITH_AS(attention(q, randn({50, 8}, 1), v, 3, 1.f), doctest::Contains("expected q (Nq, C)"), Error);
}

TEST_CASE("patch conv equals a naive conv, with and without bias, on sizes that leave a remainder") {
    struct Case { std::int64_t cin, cout, P, H, W; bool bias; };
    std::uint32_t seed = 200;
    for (const Case c : {Case{3, 8, 3, 10, 8, true}, Case{3, 5, 4, 9, 13, false}, Case{1, 7, 2, 2, 2, true},
                         Case{2, 6, 5, 11, 5, false}}) {
        const Tensor x = randn({c.cin, c.H, c.W}, seed++);
        const Tensor w = randn({c.cout, c.cin, c.P, c.P}, seed++, 0.3f);
        const Tensor b = c.bias ? randn({c.cout}, seed++) : Tensor{};
        const Tensor y = patch_conv(x, w, b);
        CHECK(y.shape() == Shape{(c.H / c.P) * (c.W / c.P), c.cout});
        CHECK(rel_err(y, ref::patch_conv(x, w, b)) < 2e-6);
    }
    CHECK_THROWS_WITH_AS(patch_conv(randn({3, 2, 2}, 1), randn({4, 3, 3, 3}, 2), {}),
                         doctest::Contains("expected (3, H, W) with H, W >= 3"), Error);
}

TEST_CASE("patch embed: class token first, then patches row-major, plus positions") {
    const std::int64_t C = 6, P = 2, S = 5;  // grid 2×2, the last row and column unseen
    PatchEmbed::Config cfg{3, int(C), int(P), int(S), /*bias=*/true, /*class_token=*/true};
    std::map<std::string, Tensor> w{{"e.patch_embedding.weight", randn({C, 3, P, P}, 1)},
                                    {"e.patch_embedding.bias", randn({C}, 2)},
                                    {"e.class_embedding", randn({C}, 3)},
                                    {"e.position_embedding.weight", randn({5, C}, 4)}};
    ParamSource src{[&](const std::string& n) { return w.count(n) > 0; },
                    [&](const std::string& n, const Shape& s) {
                        REQUIRE(w.count(n));
                        REQUIRE(w[n].shape() == s);
                        return w[n];
                    }};
    const PatchEmbed pe = PatchEmbed::load(cfg, "e.", src);
    const Tensor x = randn({3, S, S}, 5);
    const Tensor y = pe.forward(x);  // (5, C)
    REQUIRE(y.shape() == Shape{5, C});
    const Tensor conv = ref::patch_conv(x, w["e.patch_embedding.weight"], w["e.patch_embedding.bias"]);  // (4, C)
    const Tensor& pos = w["e.position_embedding.weight"];
    for (std::int64_t c = 0; c < C; ++c) {
        CHECK(y.at({0, c}) == doctest::Approx(w["e.class_embedding"].at({c}) + pos.at({0, c})).epsilon(1e-6));
        for (std::int64_t g = 0; g < 4; ++g)
            CHECK(y.at({1 + g, c}) == doctest::Approx(conv.at({g, c}) + pos.at({1 + g, c})).epsilon(1e-5));
    }
    CHECK_THROWS_WITH_AS(pe.forward(randn({3, 4, 4}, 6)), doctest::Contains("input has shape (3, 4, 4)"), Error);
}

TEST_CASE("CLIP and SigLIP towers match transformers under hub, transformers-5 and full-model naming") {
    for (const char* tower : {"clip", "siglip"}) {
        const fs::path root = kVisionData / tower;
        if (!fs::exists(root / "golden.safetensors")) {
            MESSAGE("skipping: no fixture at " << root.string());
            continue;
        }
        const SafetensorsFile golden = SafetensorsFile::open(root / "golden.safetensors");
        const Tensor pixels = golden.get("pixel_values");  // (1, 3, S, S)
        for (const char* naming : {"hub", "t5", "full"}) {
            CAPTURE(tower);
            CAPTURE(naming);
            const VisionEncoder enc = load_vision_tower(root / naming);
            CHECK(enc.cfg.family == (std::string(tower) == "clip" ? VisionFamily::Clip : VisionFamily::Siglip));
            const VisionOutput out = enc.forward(pixels);
            REQUIRE(out.hidden_states.size() == std::size_t(enc.cfg.num_hidden_layers + 1));
            for (std::size_t i = 0; i < out.hidden_states.size(); ++i) {
                CAPTURE(i);
                const Tensor want = golden.get("hidden_states." + std::to_string(i));
                REQUIRE(out.hidden_states[i].shape() == want.shape());
                CHECK(rel_err(out.hidden_states[i], want) <= kGoldenTol);
            }
            CHECK(rel_err(out.last_hidden_state, golden.get("last_hidden_state")) <= kGoldenTol);

            // Features: hidden_states[-2], CLIP without CLS; a (3, S, S) input gives the same.
            const Tensor f = enc.features(pixels.select(0, 0));
            const Tensor h2 = golden.get("hidden_states." + std::to_string(enc.cfg.num_hidden_layers - 1));  // (1, N, C)
            const std::int64_t skip = enc.cfg.class_token() ? 1 : 0;
            const Tensor want_f = h2.select(0, 0).slice(0, skip, h2.size(1));  // (N', C)
            REQUIRE(f.shape() == want_f.shape());
            CHECK(rel_err(f, want_f) <= kGoldenTol);
        }
    }
}

TEST_CASE("a VL-Mamba directory's vision_tower.* prefix and feature_layer are honoured") {
    const fs::path hub = kVisionData / "siglip" / "hub";
    if (!fs::exists(hub)) {
        MESSAGE("skipping: no fixture at " << hub.string());
        return;
    }
    const fs::path tmp = temp_dir("vlmamba_test_vision_vlm");
    const SafetensorsFile src = SafetensorsFile::open(hub / "model.safetensors");
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& n : src.names()) tensors.emplace_back("vision_tower." + n, src.get(n));
    tensors.emplace_back("mm_projector.0.weight", Tensor::zeros({4, 48}));
    save_safetensors(tmp / "model.safetensors", tensors);
    nlohmann::json cfg{{"model_type", "vlmamba"}, {"feature_layer", -3},
                       {"vision_config", read_json_file(hub / "config.json", "test")}};
    std::ofstream(tmp / "config.json") << cfg.dump();
    const VisionEncoder enc = load_vision_tower(tmp);
    CHECK(enc.cfg.feature_index() == 1);
    const SafetensorsFile golden = SafetensorsFile::open(kVisionData / "siglip" / "golden.safetensors");
    const Tensor f = enc.features(golden.get("pixel_values"));
    CHECK(rel_err(f, golden.get("hidden_states.1").select(0, 0)) <= kGoldenTol);
    fs::remove_all(tmp);
}

TEST_CASE("vision bad input gets clear errors") {
    const fs::path hub = kVisionData / "clip" / "hub";
    if (!fs::exists(hub)) {
        MESSAGE("skipping: no fixture at " << hub.string());
        return;
    }
    const VisionEncoder enc = load_vision_tower(hub);
    CHECK_THROWS_WITH_AS(enc.forward(Tensor::zeros({1, 3, 27, 28})),
                         doctest::Contains("[vision] pixel_values has shape (1, 3, 27, 28), expected (1, 3, 28, 28)"),
                         Error);
    CHECK_THROWS_WITH_AS(enc.forward(Tensor::zeros({2, 3, 28, 28})), doctest::Contains("pixel_values has shape"),
                         Error);
    CHECK_THROWS_WITH_AS(enc.features(Tensor::zeros({28, 28})), doctest::Contains("expected (1, 3, 28, 28)"), Error);

    // Missing and mis-shaped tensors are all listed in one error.
    const fs::path tmp = temp_dir("vlmamba_test_vision_missing");
    const SafetensorsFile src = SafetensorsFile::open(hub / "model.safetensors");
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& n : src.names()) {
        if (n == "vision_model.encoder.layers.1.mlp.fc2.bias" || n == "vision_model.pre_layrnorm.weight") continue;
        if (n == "vision_model.embeddings.position_embedding.weight")
            tensors.emplace_back(n, Tensor::zeros({16, 48}));
        else
            tensors.emplace_back(n, src.get(n));
    }
    save_safetensors(tmp / "model.safetensors", tensors);
    fs::copy_file(hub / "config.json", tmp / "config.json");
    try {
        (void)load_vision_tower(tmp);
        FAIL("expected an error");
    } catch (const Error& e) {
        const std::string m = e.what();
        CHECK(m.find("2 missing tensors") != std::string::npos);
        CHECK(m.find("'vision_model.encoder.layers.1.mlp.fc2.bias'") != std::string::npos);
        CHECK(m.find("'vision_model.pre_layrnorm.weight'") != std::string::npos);
        CHECK(m.find("'vision_model.embeddings.position_embedding.weight' has shape (16, 48), expected (17, 48)") !=
              std::string::npos);
    }

    // Config errors.
    CHECK_THROWS_WITH_AS(parse_vision_config({{"model_type", "vit"}}, "c.json"),
                         doctest::Contains("model_type 'vit' is not a supported vision tower: expected "
                                           "clip_vision_model, siglip_vision_model"),
                         Error);
    CHECK_THROWS_WITH_AS(parse_vision_config({{"model_type", "siglip"}}, "c.json"),
                         doctest::Contains("needs a 'vision_config' object"), Error);
    CHECK_THROWS_WITH_AS(parse_vision_config({{"model_type", "clip_vision_model"}, {"hidden_act", "relu"}}, "c.json"),
                         doctest::Contains("hidden_act 'relu' is not supported"), Error);
    CHECK_THROWS_WITH_AS(parse_vision_config({{"model_type", "clip_vision_model"}, {"feature_layer", -20}}, "c.json"),
                         doctest::Contains("feature_layer -20 is outside"), Error);
    // A nested config without its own model_type takes the family from the outer one; defaults fill the rest.
    const VisionConfig s = parse_vision_config({{"model_type", "siglip"}, {"vision_config", {{"hidden_size", 1152},
                                                {"intermediate_size", 4304}, {"num_hidden_layers", 27},
                                                {"num_attention_heads", 16}, {"image_size", 384},
                                                {"patch_size", 14}}}}, "c.json");
    CHECK(s.family == VisionFamily::Siglip);
    CHECK(s.num_positions() == 729);
    CHECK(s.act == VitAct::GeluTanh);
    CHECK(s.layer_norm_eps == doctest::Approx(1e-6));
    CHECK(s.feature_index() == 26);
    fs::remove_all(tmp);
}
