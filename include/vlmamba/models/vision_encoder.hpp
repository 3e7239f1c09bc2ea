// The CLIP and SigLIP vision towers (transformers modeling_clip.py: CLIPVisionTransformer; modeling_siglip.py:
// SiglipVisionTransformer), with HF's hidden_states indexing:
//   [0]   the embeddings (patch conv + position; CLIP: with the CLS token, after pre_layrnorm)
//   [i]   the residual stream after encoder layer i (1-based)
//   last_hidden_state: CLIP the encoder output (post_layernorm only feeds the pooled CLS), SigLIP post_layernorm of it.
// The two families differ only in three runtime switches (class token, pre_layrnorm, patch-conv bias), so one struct
// serves both and the family comes from config.json at run time, as the CLI needs.
// features() is what a VLM consumes (SPEC §1.4): hidden_states[feature_layer] (default -2), CLIP without CLS.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "vlmamba/io/weights.hpp"
#include "vlmamba/layers/patch_embed.hpp"
#include "vlmamba/layers/vit_block.hpp"
#include "vlmamba/models/load_mamba.hpp"
#include "vlmamba/models/vision_config.hpp"
#include "vlmamba/ops/norm.hpp"

namespace vlmamba {

struct VisionOutput {
    std::vector<Tensor> hidden_states;  // num_hidden_layers + 1 × (1, N, C)
    Tensor last_hidden_state;           // (1, N, C)
};

struct VisionEncoder {
    VisionConfig cfg;
    PatchEmbed embeddings;
    Tensor pre_layrnorm_weight, pre_layrnorm_bias;  // (C), CLIP only ("layrnorm" as in the checkpoints)
    std::vector<VitBlock> layers;                   // encoder.layers.{i}
    Tensor post_layernorm_weight, post_layernorm_bias;  // (C)

    // `prefix` is the tower's own ("vision_model." for hub checkpoints, "" for transformers 5).
    static VisionEncoder load(const VisionConfig& c, const std::string& prefix, const ParamSource& src);
    // A copy on `d` (f32). The forward passes then run there; pixels come from the host, outputs stay on `d`.
    VisionEncoder to(Device d) const;
    Device device() const { return embeddings.position_embedding_weight.device(); }

    // pixels (1, 3, S, S) or (3, S, S), S = image_size -> every hidden state and last_hidden_state.
    VisionOutput forward(const Tensor& pixels) const;
    // The image features: hidden_states[cfg.feature_layer] as (N', C), CLIP without the CLS row. Runs only the
    // layers it needs.
    Tensor features(const Tensor& pixels) const;
    // hidden_states[index] as (N, C), running layers 1..index only.
    Tensor hidden_state(const Tensor& pixels, int index) const;
    // A batch of images in one forward: pixels (B, 3, S, S) -> features (B, N', C). Each weight is applied once to
    // all B·N rows; attention stays within each image.
    Tensor features_batch(const Tensor& pixels) const;
};

// Loads from a ParamSource, detecting the naming under `prefix`: hub ("vision_model.embeddings....", also a full
// CLIPModel / SiglipModel, whose other tensors are ignored) or transformers 5 ("embeddings....").
VisionEncoder load_vision_tower(const VisionConfig& cfg, const ParamSource& src, const std::string& prefix = "");
// As above through a WeightLoader (may be scoped, e.g. root.scope("vision_tower.")); the caller calls finish().
VisionEncoder load_vision_tower(const VisionConfig& cfg, WeightLoader& loader);
// A directory with config.json and model.safetensors[.index.json]: a vision tower, a full CLIP / SigLIP model, or a
// VL-Mamba directory (tower under "vision_tower." or in "vision_tower_path"). Every missing or mis-shaped tensor is
// reported in one error.
VisionEncoder load_vision_tower(const std::filesystem::path& dir);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline VisionEncoder VisionEncoder::load(const VisionConfig& c, const std::string& p, const ParamSource& src) {
    const std::int64_t C = c.hidden_size;
    const bool clip = c.family == VisionFamily::Clip;
    VisionEncoder e;
    e.cfg = c;
    e.embeddings = PatchEmbed::load({c.num_channels, c.hidden_size, c.patch_size, c.image_size,
                                     /*bias=*/!clip, /*class_token=*/clip},
                                    p + "embeddings.", src);
    if (clip) {
        e.pre_layrnorm_weight = src.fetch(p + "pre_layrnorm.weight", {C});
        e.pre_layrnorm_bias = src.fetch(p + "pre_layrnorm.bias", {C});
    }
    const VitBlock::Config bc{c.hidden_size, c.num_attention_heads, c.intermediate_size, c.layer_norm_eps, c.act};
    for (int i = 0; i < c.num_hidden_layers; ++i)
        e.layers.push_back(VitBlock::load(bc, p + "encoder.layers." + std::to_string(i) + ".", src));
    e.post_layernorm_weight = src.fetch(p + "post_layernorm.weight", {C});
    e.post_layernorm_bias = src.fetch(p + "post_layernorm.bias", {C});
    return e;
}

inline VisionEncoder VisionEncoder::to(Device d) const {
    auto opt = [&](const Tensor& t) { return t.defined() ? t.to(DType::F32).to(d) : Tensor(); };
    VisionEncoder e;
    e.cfg = cfg;
    e.embeddings = embeddings.to(d);
    e.pre_layrnorm_weight = opt(pre_layrnorm_weight), e.pre_layrnorm_bias = opt(pre_layrnorm_bias);
    for (const VitBlock& b : layers) e.layers.push_back(b.to(d));
    e.post_layernorm_weight = opt(post_layernorm_weight), e.post_layernorm_bias = opt(post_layernorm_bias);
    return e;
}

namespace detail {
// (1, 3, S, S) or (3, S, S) -> (3, S, S); anything else is "[vision] pixel_values has shape (..), expected ...".
inline Tensor vision_pixels(const Tensor& px, const VisionConfig& c) {
    const std::int64_t S = c.image_size, Ch = c.num_channels;
    const bool ok4 = px.ndim() == 4 && px.shape() == Shape{1, Ch, S, S};
    const bool ok3 = px.ndim() == 3 && px.shape() == Shape{Ch, S, S};
    if (!ok4 && !ok3)
        fail("vision", "pixel_values has shape ", shape_str(px.shape()), ", expected ", shape_str({1, Ch, S, S}),
             " (or ", shape_str({Ch, S, S}), ")");
    return ok4 ? px.select(0, 0) : px;
}

// Embeddings (+ pre_layrnorm), then `upto` layers; hidden state i goes to `all` when given.
inline Tensor vision_run(const VisionEncoder& e, const Tensor& pixels, int upto, std::vector<Tensor>* all) {
    const Tensor px = vision_pixels(pixels, e.cfg);   // (3, S, S)
    Tensor x = e.embeddings.forward(px);              // (N, C)
    if (e.cfg.class_token())                          // modeling_clip.py: CLIPVisionTransformer.forward: pre_layrnorm
        x = layer_norm(x, e.pre_layrnorm_weight, e.pre_layrnorm_bias, e.cfg.layer_norm_eps);
    if (all) all->push_back(x.clone());
    VitScratch ws;
    for (int i = 0; i < upto; ++i) {
        e.layers[std::size_t(i)].forward_inplace(x, ws);  // (N, C)
        if (all) all->push_back(x.clone());
    }
    return x;
}
}  // namespace detail

inline VisionOutput VisionEncoder::forward(const Tensor& pixels) const {
    VisionOutput out;
    std::vector<Tensor> hs;
    Tensor x = detail::vision_run(*this, pixels, cfg.num_hidden_layers, &hs);  // (N, C)
    for (auto& h : hs) out.hidden_states.push_back(h.unsqueeze(0));           // (1, N, C)
    // SigLIP applies post_layernorm to last_hidden_state; CLIP only to the pooled CLS token.
    if (cfg.family == VisionFamily::Siglip) x = layer_norm(x, post_layernorm_weight, post_layernorm_bias, cfg.layer_norm_eps);
    out.last_hidden_state = x.unsqueeze(0);  // (1, N, C)
    return out;
}

inline Tensor VisionEncoder::hidden_state(const Tensor& pixels, int index) const {
    VLM_CHECK(index >= 0 && index <= cfg.num_hidden_layers, "vision", "expected a hidden_states index in [0, ",
              cfg.num_hidden_layers, "], got ", index);
    return detail::vision_run(*this, pixels, index, nullptr);  // (N, C)
}

inline Tensor VisionEncoder::features(const Tensor& pixels) const {
    Tensor x = hidden_state(pixels, cfg.feature_index());  // (N, C)
    return cfg.class_token() ? x.slice(0, 1, x.size(0)).contiguous() : x;  // (N', C)
}

inline Tensor VisionEncoder::features_batch(const Tensor& pixels) const {
    const std::int64_t S = cfg.image_size, Ch = cfg.num_channels;
    VLM_CHECK(pixels.ndim() == 4 && pixels.size(0) >= 1 && pixels.shape() == Shape({pixels.size(0), Ch, S, S}),
              "vision", "pixel_values has shape ", shape_str(pixels.shape()), ", expected (B, ", Ch, ", ", S, ", ", S,
              ")");
    const std::int64_t B = pixels.size(0);
    std::vector<Tensor> emb;
    for (std::int64_t b = 0; b < B; ++b) emb.push_back(embeddings.forward(pixels.select(0, b)));  // (N, C)
    const std::int64_t N = emb[0].size(0), C = cfg.hidden_size;
    Tensor x = Tensor::empty({B * N, C}, DType::F32, device());  // (B·N, C)
    for (std::int64_t b = 0; b < B; ++b) {
        Tensor dst = x.slice(0, b * N, (b + 1) * N);
        copy_into(dst, emb[std::size_t(b)]);
    }
    if (cfg.class_token()) x = layer_norm(x, pre_layrnorm_weight, pre_layrnorm_bias, cfg.layer_norm_eps);
    VitScratch ws;
    for (int i = 0; i < cfg.feature_index(); ++i) layers[std::size_t(i)].forward_inplace(x, ws, int(B));
    const std::int64_t skip = cfg.class_token() ? 1 : 0;  // CLIP drops its CLS row
    Tensor out = Tensor::empty({B, N - skip, C}, DType::F32, device());  // (B, N', C)
    for (std::int64_t b = 0; b < B; ++b) {
        Tensor dst = out.select(0, b);
        copy_into(dst, x.slice(0, b * N + skip, (b + 1) * N));
    }
    return out;
}

inline VisionEncoder load_vision_tower(const VisionConfig& cfg, const ParamSource& src, const std::string& prefix) {
    const std::string hub = prefix + "vision_model.";
    const bool is_hub = src.contains(hub + "embeddings.patch_embedding.weight");
    return VisionEncoder::load(cfg, is_hub ? hub : prefix, src);
}

inline VisionEncoder load_vision_tower(const VisionConfig& cfg, WeightLoader& loader) {
    return load_vision_tower(cfg, param_source(loader));
}

inline VisionEncoder load_vision_tower(const std::filesystem::path& dir) {
    const std::filesystem::path cfg_file = dir / "config.json";
    const std::string file = cfg_file.string();
    const nlohmann::json j = read_json_file(cfg_file, "vision_config");
    const bool vlmamba = json_get<std::string>(j, "model_type", "", file, "vision_config") == "vlmamba";
    if (vlmamba && j.contains("vision_tower_path")) {  // SPEC §8.2: assembled from a component directory
        const auto rel = json_require<std::string>(j, "vision_tower_path", file, "vision_config");
        // one level only: an empty path (the directory itself) or a chain of VL-Mamba directories would recurse
        VLM_CHECK(json_get<std::string>(read_json_file(dir / rel / "config.json", "vision_config"), "model_type", "",
                                        file, "vision_config") != "vlmamba",
                  "vision_config", file, ": vision_tower_path '", rel,
                  "' names a VL-Mamba directory, expected a CLIP or SigLIP tower directory");
        VisionEncoder e = load_vision_tower(dir / rel);
        e.cfg.feature_layer = json_get<int>(j, "feature_layer", e.cfg.feature_layer, file, "vision_config");
        check_feature_layer(e.cfg, file, "vision_config");
        return e;
    }
    const VisionConfig cfg = parse_vision_config(j, file);
    const WeightStore store = WeightStore::open(dir);
    WeightLoader root(store);
    WeightLoader loader = vlmamba ? root.scope("vision_tower.") : root;
    VisionEncoder e = load_vision_tower(cfg, loader);
    root.finish();
    return e;
}

}  // namespace vlmamba
