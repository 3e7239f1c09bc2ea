// Golden tests of the Mamba LM against transformers (fixtures: zoo/fixtures/make_mamba.py), plus decode invariants.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "test_helpers.hpp"
#include "vlmamba/models/load_mamba.hpp"
#include "vlmamba/ops/conv.hpp"

using namespace vlmamba;
namespace fs = std::filesystem;
using vlmamba::test::rel_err;

namespace {
const fs::path kMambaData = fs::path(VLMAMBA_TEST_DATA_DIR) / "mamba";

Tensor row(const Tensor& t, std::int64_t i) { return t.slice(0, i, i + 1); }
}  // namespace

TEST_CASE("causal conv1d matches the reference, and its update equals the full conv") {
    for (auto [L, E, K] : {std::array<std::int64_t, 3>{1, 1, 4}, {7, 17, 3}, {33, 40, 4}, {5, 3, 1}}) {
        Tensor x = test::randn({L, E}, 1), w = test::randn({E, 1, K}, 2), b = test::randn({E}, 3);
        Tensor y = causal_conv1d(x, w, b, true);
        CHECK(rel_err(y, ref::causal_conv1d(x, w, b, true)) < 1e-6);
        Tensor st = Tensor::zeros({1, E, K});
        for (std::int64_t t = 0; t < L; ++t) {
            Tensor yt = causal_conv1d_update(st, row(x, t), w, b, true);  // (1, E)
            CHECK(rel_err(yt, row(y, t)) < 1e-6);
        }
    }
}

TEST_CASE("mamba LM matches transformers on the golden fixtures") {
    for (const char* cfg : {"tiny-tied", "tiny-untied"}) {
        const fs::path base = kMambaData / cfg;
        if (!fs::exists(base / "golden.safetensors")) {
            MESSAGE("skipping: no fixture at " << base.string());
            continue;
        }
        const WeightStore golden = WeightStore::open(base / "golden.safetensors");
        const auto ids = test::ids_of(golden.get("input_ids"));
        const auto greedy = test::ids_of(golden.get("greedy_ids"));
        for (const char* variant : {"hf-f32", "ssm-f32", "hf-bf16", "ssm-bf16"}) {
            CAPTURE(cfg);
            CAPTURE(variant);
            const bool bf16 = std::string(variant).ends_with("bf16");
            const MambaLm lm = load_mamba_lm(base / variant);
            std::vector<Tensor> layer_out;
            Tensor hidden = lm.forward_hidden(lm.embed(ids), nullptr, 0, &layer_out);
            Tensor logits = lm.logits(hidden);  // (L, V)
            if (!bf16) {
                CHECK(rel_err(logits, golden.get("logits")) <= 2e-5);
                for (int i = 0; i < lm.cfg.n_layer; ++i)
                    CHECK(rel_err(layer_out[i], golden.get("layer_out." + std::to_string(i))) <= 2e-5);
                CHECK(rel_err(hidden, golden.get("norm_f_out")) <= 2e-5);
            } else {
                // transformers loading the bf16 file (from_pretrained, default f32 compute) gives logits_bf16. The
                // bar is 2e-2; we hold the f32-rounding bar, since the compute is the same.
                CHECK(rel_err(logits, golden.get("logits_bf16")) <= 2e-5);
                // For information: bf16 weight rounding vs the f32 model, and transformers' native-bf16 compute.
                MESSAGE("bf16 file vs f32 model: " << rel_err(logits, golden.get("logits"))
                        << ", vs native-bf16 compute: " << rel_err(logits, golden.get("logits_bf16_native")));
                continue;
            }
            // Greedy continuation through the recurrent state; each step's logits equal the full forward's.
            MambaState st = lm.new_state(1);
            Tensor h = lm.forward_hidden(lm.embed(ids), &st);
            Tensor last = lm.logits(row(h, h.size(0) - 1));  // (1, V)
            std::vector<std::int32_t> seq = ids, out;
            const Tensor greedy_logits = golden.get("greedy_logits");
            for (std::size_t i = 0; i < greedy.size(); ++i) {
                CHECK(rel_err(last, row(greedy_logits, std::int64_t(i))) <= 2e-5);
                const float* l = last.data<float>();
                const auto id = std::int32_t(std::max_element(l, l + last.numel()) - l);
                out.push_back(id);
                seq.push_back(id);
                last = lm.step(std::span<const std::int32_t>(&id, 1), st);
            }
            CHECK(out == greedy);
            // The last step's logits equal a full forward over the whole sequence.
            Tensor full = lm.forward(seq);
            CHECK(rel_err(last, row(full, full.size(0) - 1)) <= 2e-5);
        }
    }
}

TEST_CASE("batched decode equals single-sequence decode, and states snapshot") {
    const fs::path dir = kMambaData / "tiny-untied" / "hf-f32";
    if (!fs::exists(dir)) {
        MESSAGE("skipping: no fixture at " << dir.string());
        return;
    }
    const MambaLm lm = load_mamba_lm(dir);
    const std::vector<std::vector<std::int32_t>> prompts{{5, 9, 2}, {7}, {11, 3, 60, 4, 8}};
    MambaState batch = lm.new_state(3);
    std::vector<MambaState> single;
    for (int b = 0; b < 3; ++b) {
        lm.forward_hidden(lm.embed(prompts[b]), &batch, b);
        single.push_back(lm.new_state(1));
        lm.forward_hidden(lm.embed(prompts[b]), &single.back(), 0);
    }
    MambaState snapshot = batch;
    std::vector<std::int32_t> toks{3, 4, 5};
    Tensor lb = lm.step(toks, batch);  // (3, V)
    for (int b = 0; b < 3; ++b) {
        Tensor ls = lm.step(std::span<const std::int32_t>(&toks[b], 1), single[b]);
        CHECK(rel_err(row(lb, b), ls) <= 1e-6);
    }
    Tensor again = lm.step(toks, snapshot);  // restoring the snapshot replays the same step
    CHECK(rel_err(again, lb) == 0.0);
}

TEST_CASE("mamba LM bad input gets clear errors") {
    const fs::path dir = kMambaData / "tiny-tied" / "hf-f32";
    if (!fs::exists(dir)) {
        MESSAGE("skipping: no fixture at " << dir.string());
        return;
    }
    const MambaLm lm = load_mamba_lm(dir);
    const std::vector<std::int32_t> bad{1, lm.cfg.vocab_size};
    CHECK_THROWS_WITH_AS(lm.forward(bad), doctest::Contains("outside the embedding"), Error);
    CHECK_THROWS_WITH_AS(lm.forward(std::vector<std::int32_t>{}), doctest::Contains("non-empty prompt"), Error);
    // A config whose d_inner disagrees with the tensors: every mismatching shape is named.
    const fs::path tmp = fs::temp_directory_path() / "vlmamba_bad_dinner";
    fs::create_directories(tmp);
    fs::copy_file(dir / "model.safetensors", tmp / "model.safetensors", fs::copy_options::overwrite_existing);
    nlohmann::json cfg = read_json_file(dir / "config.json", "test");
    cfg["intermediate_size"] = cfg["intermediate_size"].get<int>() + 8;
    std::ofstream(tmp / "config.json") << cfg.dump();
    CHECK_THROWS_WITH_AS(load_mamba_lm(tmp), doctest::Contains("in_proj.weight' has shape"), Error);
    std::ofstream(tmp / "config.json") << R"({"model_type": "gpt2", "hidden_size": 4})";
    CHECK_THROWS_WITH_AS(load_mamba_lm(tmp), doctest::Contains("expected model_type \"mamba\""), Error);
    fs::remove_all(tmp);
}

// Issue 15: embed() used to read a bf16 or f16 embedding as f32, past its buffer for ids >= V/2.
TEST_CASE("mamba LM embeds through bf16 and f16 embeddings, every id") {
    const fs::path dir = kMambaData / "tiny-untied" / "hf-f32";
    if (!fs::exists(dir)) {
        MESSAGE("skipping: no fixture at " << dir.string());
        return;
    }
    MambaLm lm = load_mamba_lm(dir);
    const Tensor f32 = lm.embedding;  // (V, D)
    const std::int64_t V = f32.size(0), D = f32.size(1);
    std::vector<std::int32_t> ids;
    for (std::int64_t v = V - 1; v >= 0; v -= 3) ids.push_back(std::int32_t(v));
    for (DType dt : {DType::BF16, DType::F16}) {
        lm.embedding = f32.to(dt);
        const Tensor narrow = lm.embedding.to(DType::F32);  // what each stored value means, widened
        const Tensor e = lm.embed(ids);                      // (L, D)
        for (std::size_t t = 0; t < ids.size(); ++t)
            for (std::int64_t d = 0; d < D; ++d)
                REQUIRE_MESSAGE(e.data<float>()[std::int64_t(t) * D + d] == narrow.data<float>()[ids[t] * D + d],
                                dtype_name(dt), " id ", ids[t], " dim ", d);
    }
}
