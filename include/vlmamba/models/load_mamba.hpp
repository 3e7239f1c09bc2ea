// Loading a Mamba LM directory (config.json + safetensors, single or sharded) into a MambaLm.
#pragma once
#include <algorithm>
#include <filesystem>

#include "vlmamba/io/weights.hpp"
#include "vlmamba/models/mamba_lm.hpp"

namespace vlmamba {

// Wraps a WeightLoader as a ParamSource that converts every tensor to f32 (compute is f32).
ParamSource param_source(WeightLoader& loader);

// A Mamba LM's sizes from its tensors under `prefix` (mamba_ssm or HF naming), for checkpoints without an LM config
// (Cobra's): d_model and vocab_size from the embedding, n_layer from the layers present, d_inner from in_proj,
// d_state from A_log, d_conv from conv1d, dt_rank from dt_proj, conv_bias from its presence; eps 1e-5, EOS 0.
MambaConfig mamba_config_from_weights(const WeightStore& store, const std::string& prefix);

// Loads `dir` (config.json + model.safetensors[.index.json]). Every missing tensor and every wrong shape is reported
// in one error that names the files.
MambaLm load_mamba_lm(const std::filesystem::path& dir);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline ParamSource param_source(WeightLoader& loader) {
    return {[&loader](const std::string& n) { return loader.contains(n); },
            [&loader](const std::string& n, const Shape& s) { return loader.take(n, s, DType::F32); }};
}

inline MambaConfig mamba_config_from_weights(const WeightStore& store, const std::string& prefix) {
    constexpr const char* op = "mamba_config";
    const std::string where = store.path().string();
    auto shape = [&](const std::string& name, std::size_t rank) {
        VLM_CHECK(store.contains(prefix + name), op, where, ": expected tensor '", prefix + name,
                  "' (a Mamba LM in mamba_ssm or HF naming), got none");
        const Shape s = store.info(prefix + name).shape;
        VLM_CHECK(s.size() == rank, op, where, ": tensor '", prefix + name, "' has shape ", shape_str(s),
                  ", expected rank ", rank);
        return s;
    };
    const std::string emb = store.contains(prefix + "backbone.embeddings.weight") ? "backbone.embeddings.weight"
                                                                                  : "backbone.embedding.weight";
    MambaConfig c;
    const Shape e = shape(emb, 2);
    c.vocab_size = int(std::min<std::int64_t>(e[0], kMaxConfigVocab + 1));
    c.d_model = int(std::min<std::int64_t>(e[1], kMaxConfigWidth + 1));
    while (c.n_layer <= kMaxConfigLayers &&
           store.contains(prefix + "backbone.layers." + std::to_string(c.n_layer) + ".mixer.in_proj.weight"))
        ++c.n_layer;
    const std::string l0 = "backbone.layers.0.mixer.";
    c.d_inner = int(std::min<std::int64_t>(shape(l0 + "in_proj.weight", 2)[0] / 2, kMaxConfigWidth + 1));
    c.d_state = int(std::min<std::int64_t>(shape(l0 + "A_log", 2)[1], 65));
    c.d_conv = int(std::min<std::int64_t>(shape(l0 + "conv1d.weight", 3)[2], 9));
    c.dt_rank = int(std::min<std::int64_t>(shape(l0 + "dt_proj.weight", 2)[1], kMaxConfigWidth + 1));
    c.conv_bias = store.contains(prefix + l0 + "conv1d.bias");
    VLM_CHECK(c.vocab_size >= 1 && c.vocab_size <= kMaxConfigVocab && c.d_model >= 1 &&
                  c.d_model <= kMaxConfigWidth && c.n_layer >= 1 && c.n_layer <= kMaxConfigLayers && c.d_inner >= 1 &&
                  c.d_inner <= kMaxConfigWidth && c.dt_rank >= 1 && c.dt_rank <= kMaxConfigWidth,
              op, where, ": sizes from the tensors under '", prefix, "' are out of range: vocab ", c.vocab_size,
              ", d_model ", c.d_model, ", n_layer ", c.n_layer, ", d_inner ", c.d_inner, ", dt_rank ", c.dt_rank);
    VLM_CHECK(c.d_state >= 1 && c.d_state <= 64 && c.d_conv >= 1 && c.d_conv <= 8, op, where,
              ": expected d_state in [1, 64] and d_conv in [1, 8] from the tensors, got ", c.d_state, " and ",
              c.d_conv);
    return c;
}

inline MambaLm load_mamba_lm(const std::filesystem::path& dir) {
    const MambaConfig cfg = load_mamba_config(dir / "config.json");
    const WeightStore store = WeightStore::open(dir);
    WeightLoader loader(store);
    MambaLm lm = MambaLm::load(cfg, param_source(loader));
    loader.finish();
    return lm;
}

}  // namespace vlmamba
