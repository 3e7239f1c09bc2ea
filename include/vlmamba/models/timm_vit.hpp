// A timm VisionTransformer used as a feature tower (timm vision_transformer.py), as Cobra / Prismatic use them:
// the patch tokens at the output of the second-to-last block (get_intermediate_layers(x, n={depth − 2}): no final
// norm, class and register tokens dropped).
//   x = patch_embed.proj(px)                                  Conv2d P×P stride P, with bias      (G², C)
//   no_embed_class: x = [cls; reg; x + pos_embed]             pos_embed covers the patches only   (DINOv2-reg)
//   otherwise:      x = [cls; reg; x] + pos_embed             (SigLIP: no class token, no registers)
//   x = blocks[0 .. depth − 2](x)                             VitBlock, timm naming, LayerScale when init_values
// The sizes come from timm's config.json ("architecture", and "model_args" for a tower that is not the published
// size) or from open_clip's open_clip_config.json (vision_cfg.timm_model_name, vision_cfg.image_size). The tower runs
// at the size it is created with (Cobra: the backbone id's resolution); a checkpoint saved at another grid has its
// pos_embed resampled on load exactly as timm's checkpoint_filter_fn does it (resample_abs_pos_embed: bicubic,
// antialias, the prefix rows kept as they are).
#pragma once
#include <array>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "vlmamba/io/image_resize.hpp"
#include "vlmamba/io/json_config.hpp"
#include "vlmamba/io/weights.hpp"
#include "vlmamba/layers/patch_embed.hpp"
#include "vlmamba/layers/vit_block.hpp"
#include "vlmamba/models/load_mamba.hpp"
#include "vlmamba/ops/interpolate.hpp"

namespace vlmamba {

// ---------------------------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------------------------

struct TimmVitConfig {
    std::string name;           // the tower's role in a fused encoder ("dino", "siglip")
    std::string architecture;   // timm's model name, e.g. "vit_large_patch14_reg4_dinov2"
    std::filesystem::path config_file, weights;  // the tower's config and checkpoint
    int img_size = 0;           // the size it runs at
    int patch_size = 16, embed_dim = 768, depth = 12, num_heads = 12, mlp_hidden = 3072;
    bool class_token = true, no_embed_class = false, layer_scale = false;
    int reg_tokens = 0;
    float eps = 1e-6f;          // timm's LayerNorm default
    std::array<float, 3> mean{0.5f, 0.5f, 0.5f}, std{0.5f, 0.5f, 0.5f};
    Resample resample = Resample::Bicubic;

    int grid() const { return img_size / patch_size; }
    int num_prefix_tokens() const { return (class_token ? 1 : 0) + reg_tokens; }
    int pos_prefix_tokens() const { return no_embed_class ? 0 : num_prefix_tokens(); }  // rows of pos_embed
};

// A tower directory: timm's config.json (preferred) or open_clip's open_clip_config.json, and the checkpoint
// (model.safetensors, pytorch_model.bin, open_clip_pytorch_model.bin or open_clip_model.safetensors). `img_size` is
// the size the tower runs at. Errors name the directory and what is missing.
TimmVitConfig load_timm_vit_config(const std::filesystem::path& dir, int img_size, const std::string& name);

// timm's resample_abs_pos_embed(posemb, new_size, old_size, num_prefix_tokens, 'bicubic', antialias=True):
// posemb (prefix + old_h·old_w, C) -> (prefix + new_h·new_w, C); the prefix rows are kept; an unchanged square grid
// is returned as is.
Tensor resample_abs_pos_embed(const Tensor& posemb, int new_h, int new_w, int num_prefix_tokens);

struct TimmVit {
    TimmVitConfig cfg;
    Tensor patch_embed_proj_weight, patch_embed_proj_bias;  // (C, 3, P, P), (C)
    Tensor cls_token;                                       // (1, C) or undefined
    Tensor reg_token;                                       // (R, C) or undefined
    Tensor pos_embed;                                       // (pos_prefix + G², C), at the run grid
    std::vector<VitBlock> blocks;                           // blocks.{i}, the first depth − 1

    // Reads the tensors through `loader` (scoped to the tower's prefix); pos_embed is resampled when the checkpoint's grid differs from cfg.grid().
    static TimmVit load(const TimmVitConfig& cfg, const WeightStore& store, WeightLoader& loader);
    // pixels (3, S, S) -> patch features (G², C) of block depth − 2.
    Tensor features(const Tensor& pixels) const;
    // pixels (B, 3, S, S) -> (B, G², C): one product per weight for all B images, attention per image.
    Tensor features_batch(const Tensor& pixels) const;
};

// Opens cfg.weights and loads the tower; every missing or mis-shaped tensor is reported in one error.
TimmVit load_timm_vit(const TimmVitConfig& cfg);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {

// timm's registered defaults for the architectures Cobra uses (vision_transformer.py: model_args of each
// @register_model function over VisionTransformer's defaults). Returns false for an unknown name.
inline bool timm_vit_defaults(const std::string& arch, TimmVitConfig& c, double& mlp_ratio) {
    mlp_ratio = 4.0;
    if (arch == "vit_large_patch14_reg4_dinov2" || arch == "vit_large_patch14_dinov2") {
        c.patch_size = 14, c.embed_dim = 1024, c.depth = 24, c.num_heads = 16, c.layer_scale = true;
        if (arch == "vit_large_patch14_reg4_dinov2") c.reg_tokens = 4, c.no_embed_class = true;
        c.mean = {0.485f, 0.456f, 0.406f}, c.std = {0.229f, 0.224f, 0.225f};  // IMAGENET_DEFAULT_MEAN / _STD
        return true;
    }
    if (arch == "vit_so400m_patch14_siglip_384" || arch == "vit_so400m_patch14_siglip_224") {
        c.patch_size = 14, c.embed_dim = 1152, c.depth = 27, c.num_heads = 16, c.class_token = false;
        mlp_ratio = 3.7362;
        return true;  // IMAGENET_INCEPTION_MEAN / _STD (0.5): the defaults
    }
    return false;
}

// model_args keys that change the tower's structure, and those that only name heads or sizes we do not use.
inline void apply_timm_model_args(const nlohmann::json& a, TimmVitConfig& c, double& mlp_ratio,
                                  const std::string& file) {
    constexpr const char* op = "timm_vit";
    VLM_CHECK(a.is_object(), op, file, ": model_args is ", detail::json_brief(a), ", expected an object");
    for (const auto& [k, v] : a.items()) {
        if (k == "patch_size") c.patch_size = json_require<int>(a, "patch_size", file, op);
        else if (k == "embed_dim") c.embed_dim = json_require<int>(a, "embed_dim", file, op);
        else if (k == "depth") c.depth = json_require<int>(a, "depth", file, op);
        else if (k == "num_heads") c.num_heads = json_require<int>(a, "num_heads", file, op);
        else if (k == "mlp_ratio") mlp_ratio = json_require<double>(a, "mlp_ratio", file, op);
        else if (k == "init_values") c.layer_scale = !v.is_null() && !(v.is_number() && v.get<double>() == 0.0);
        else if (k == "class_token") c.class_token = json_require<bool>(a, "class_token", file, op);
        else if (k == "reg_tokens") c.reg_tokens = json_require<int>(a, "reg_tokens", file, op);
        else if (k == "no_embed_class") c.no_embed_class = json_require<bool>(a, "no_embed_class", file, op);
        else if (k == "qkv_bias" || k == "pre_norm") {
            const bool want = k == "qkv_bias";
            VLM_CHECK(json_require<bool>(a, k.c_str(), file, op) == want, op, file, ": model_args.", k, " is ",
                      detail::json_brief(v), ", expected ", want ? "true" : "false", " (the only form supported)");
        } else if (k != "img_size" && k != "global_pool" && k != "num_classes" && k != "final_norm" &&
                   k != "fc_norm" && k != "dynamic_img_size") {
            fail(op, file, ": model_args has unsupported key '", k, "'; supported: img_size, patch_size, embed_dim, ",
                 "depth, num_heads, mlp_ratio, init_values, class_token, reg_tokens, no_embed_class, qkv_bias, ",
                 "pre_norm, global_pool, num_classes, final_norm, fc_norm, dynamic_img_size");
        }
    }
}

// mean, std and interpolation of a pretrained_cfg (timm) or preprocess_cfg (open_clip) object, when present.
inline void apply_timm_data_cfg(const nlohmann::json& p, TimmVitConfig& c, const std::string& file) {
    constexpr const char* op = "timm_vit";
    auto triple = [&](const char* key, std::array<float, 3>& out) {
        if (!p.contains(key)) return;
        const auto v = json_require<std::vector<float>>(p, key, file, op);
        VLM_CHECK(v.size() == 3, op, file, ": '", key, "' has ", v.size(), " values, expected 3");
        out = {v[0], v[1], v[2]};
    };
    triple("mean", c.mean);
    triple("std", c.std);
    const std::string interp = json_get<std::string>(p, "interpolation", "bicubic", file, op);
    if (interp == "bicubic") c.resample = Resample::Bicubic;
    else if (interp == "bilinear") c.resample = Resample::Bilinear;
    else fail(op, file, ": interpolation '", interp, "' is not supported: expected bicubic or bilinear");
}

}  // namespace detail

inline TimmVitConfig load_timm_vit_config(const std::filesystem::path& dir, int img_size, const std::string& name) {
    constexpr const char* op = "timm_vit";
    namespace fs = std::filesystem;
    VLM_CHECK(fs::is_directory(dir), op, dir.string(), ": expected the '", name, "' tower's directory, got ",
              fs::exists(dir) ? "a file" : "nothing");
    TimmVitConfig c;
    c.name = name;
    c.img_size = img_size;
    double mlp_ratio = 4.0;
    const fs::path timm_cfg = dir / "config.json", oc_cfg = dir / "open_clip_config.json";
    if (fs::exists(timm_cfg)) {
        c.config_file = timm_cfg;
        const std::string f = timm_cfg.string();
        const nlohmann::json j = read_json_file(timm_cfg, op);
        c.architecture = json_require<std::string>(j, "architecture", f, op);
        VLM_CHECK(detail::timm_vit_defaults(c.architecture, c, mlp_ratio), op, f, ": architecture '", c.architecture,
                  "' is not supported: expected vit_large_patch14_reg4_dinov2, vit_large_patch14_dinov2, "
                  "vit_so400m_patch14_siglip_384 or vit_so400m_patch14_siglip_224");
        if (j.contains("model_args")) detail::apply_timm_model_args(j["model_args"], c, mlp_ratio, f);
        if (j.contains("pretrained_cfg") && j["pretrained_cfg"].is_object())
            detail::apply_timm_data_cfg(j["pretrained_cfg"], c, f);
    } else if (fs::exists(oc_cfg)) {
        c.config_file = oc_cfg;
        const std::string f = oc_cfg.string();
        const nlohmann::json j = read_json_file(oc_cfg, op);
        const nlohmann::json vc = j.value("model_cfg", nlohmann::json::object()).value("vision_cfg", nlohmann::json());
        VLM_CHECK(vc.is_object() && vc.contains("timm_model_name"), op, f,
                  ": expected model_cfg.vision_cfg.timm_model_name (an open_clip model with a timm tower), got none");
        c.architecture = json_require<std::string>(vc, "timm_model_name", f, op);
        VLM_CHECK(detail::timm_vit_defaults(c.architecture, c, mlp_ratio), op, f, ": timm_model_name '",
                  c.architecture, "' is not supported: expected vit_so400m_patch14_siglip_384, ",
                  "vit_so400m_patch14_siglip_224, vit_large_patch14_reg4_dinov2 or vit_large_patch14_dinov2");
        if (j.contains("preprocess_cfg") && j["preprocess_cfg"].is_object())
            detail::apply_timm_data_cfg(j["preprocess_cfg"], c, f);
    } else {
        fail(op, dir.string(), ": expected config.json (timm) or open_clip_config.json (open_clip) for the '", name,
             "' tower, got neither");
    }
    for (const char* w : {"model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin",
                          "open_clip_model.safetensors"})
        if (fs::exists(dir / w)) {
            c.weights = dir / w;
            break;
        }
    VLM_CHECK(!c.weights.empty(), op, dir.string(), ": expected a checkpoint for the '", name, "' tower (",
              "model.safetensors, pytorch_model.bin, open_clip_pytorch_model.bin or open_clip_model.safetensors), ",
              "got none");
    const std::string f = c.config_file.string();
    c.mlp_hidden = int(double(c.embed_dim) * mlp_ratio);  // Block: int(dim * mlp_ratio)
    VLM_CHECK(c.embed_dim > 0 && c.embed_dim <= kMaxConfigWidth && c.mlp_hidden > 0 &&
                  c.mlp_hidden <= kMaxConfigWidth && c.num_heads > 0 && c.embed_dim % c.num_heads == 0,
              op, f, ": expected embed_dim in [1, ", kMaxConfigWidth, "] divisible by num_heads and a positive MLP ",
              "width, got embed_dim ", c.embed_dim, ", num_heads ", c.num_heads, ", MLP ", c.mlp_hidden);
    VLM_CHECK(c.depth >= 2 && c.depth <= kMaxConfigLayers && c.reg_tokens >= 0 && c.reg_tokens <= 64, op, f,
              ": expected depth in [2, ", kMaxConfigLayers, "] (features come from block depth - 2) and reg_tokens ",
              "in [0, 64], got depth ", c.depth, ", reg_tokens ", c.reg_tokens);
    VLM_CHECK(c.patch_size > 0 && img_size >= c.patch_size && img_size <= 16384, op, f, ": the tower runs at ",
              img_size, " px, expected a size in [patch_size = ", c.patch_size, ", 16384]");
    return c;
}

inline Tensor resample_abs_pos_embed(const Tensor& posemb, int new_h, int new_w, int num_prefix_tokens) {
    constexpr const char* op = "resample_abs_pos_embed";
    VLM_CHECK(posemb.ndim() == 2 && posemb.size(0) > num_prefix_tokens, op, "posemb has shape ",
              shape_str(posemb.shape()), ", expected (", num_prefix_tokens, " + H·W, C)");
    const std::int64_t rows = posemb.size(0), C = posemb.size(1), n_old = rows - num_prefix_tokens;
    if (rows == std::int64_t(new_h) * new_w + num_prefix_tokens && new_h == new_w) return posemb;
    const auto hw = std::int64_t(std::sqrt(double(n_old)));  // timm: old_size = int(sqrt(tokens)), square
    VLM_CHECK(hw * hw == n_old, op, "posemb has ", n_old, " grid rows, expected a square number");
    const Tensor grid = posemb.slice(0, num_prefix_tokens, rows).contiguous().reshape({hw, hw, C});  // (H, W, C)
    const Tensor resized = resize_bicubic_antialias(grid, new_h, new_w);                          // (H', W', C)
    Tensor out = Tensor::empty({num_prefix_tokens + std::int64_t(new_h) * new_w, C});
    if (num_prefix_tokens > 0) {
        Tensor head = out.slice(0, 0, num_prefix_tokens);
        copy_into(head, posemb.slice(0, 0, num_prefix_tokens));
    }
    Tensor tail = out.slice(0, num_prefix_tokens, out.size(0));
    copy_into(tail, resized.reshape({std::int64_t(new_h) * new_w, C}));
    return out;
}

inline TimmVit TimmVit::load(const TimmVitConfig& c, const WeightStore& store, WeightLoader& loader) {
    constexpr const char* op = "timm_vit";
    const std::int64_t C = c.embed_dim, P = c.patch_size, G = c.grid();
    const ParamSource src = param_source(loader);
    TimmVit t;
    t.cfg = c;
    t.patch_embed_proj_weight = src.fetch("patch_embed.proj.weight", {C, 3, P, P});
    t.patch_embed_proj_bias = src.fetch("patch_embed.proj.bias", {C});
    if (c.class_token) {
        const Tensor cls = src.fetch("cls_token", {1, 1, C});
        if (cls.defined()) t.cls_token = cls.reshape({1, C});
    }
    if (c.reg_tokens > 0) {
        const Tensor reg = src.fetch("reg_token", {1, c.reg_tokens, C});
        if (reg.defined()) t.reg_token = reg.reshape({c.reg_tokens, C});
    }
    // The checkpoint's grid is its pos_embed's (model_args' img_size is the size it was saved at).
    const std::string pos = loader.prefix() + "pos_embed";
    const std::int64_t pre = c.pos_prefix_tokens();
    if (store.contains(pos)) {
        const Shape s = store.info(pos).shape;
        const std::int64_t n = s.size() == 3 ? s[1] - pre : -1;
        const auto g = std::int64_t(std::sqrt(double(std::max<std::int64_t>(n, 0))));
        VLM_CHECK(s.size() == 3 && s[0] == 1 && s[2] == C && n > 0 && g * g == n, op, store.path().string(),
                  ": tensor '", pos, "' has shape ", shape_str(s), ", expected (1, ", pre, " + G·G, ", C, ")");
        const Tensor saved = src.fetch("pos_embed", s);
        // timm checkpoint_filter_fn: resample_abs_pos_embed(v, new_size=grid, num_prefix_tokens=0 if
        // no_embed_class else num_prefix_tokens, interpolation='bicubic', antialias=True)
        if (saved.defined()) t.pos_embed = resample_abs_pos_embed(saved.reshape({s[1], C}), int(G), int(G), int(pre));
    } else {
        src.fetch("pos_embed", {1, pre + G * G, C});  // recorded as missing
    }
    const VitBlock::Config bc{c.embed_dim, c.num_heads, c.mlp_hidden, c.eps, VitAct::Gelu};  // nn.GELU: erf
    for (int i = 0; i + 1 < c.depth; ++i)
        t.blocks.push_back(VitBlock::load_timm(bc, c.layer_scale, "blocks." + std::to_string(i) + ".", src));
    return t;
}

namespace detail {
// patch_embed + _pos_embed of one image: pixels (3, S, S) -> (prefix + G², C).
inline Tensor timm_embed(const TimmVit& t, const Tensor& px) {
    const TimmVitConfig& c = t.cfg;
    const std::int64_t C = c.embed_dim, S = c.img_size, G2 = std::int64_t(c.grid()) * c.grid();
    const std::int64_t pre = c.num_prefix_tokens();
    check_shape("timm_vit", "pixel_values", px, {3, S, S});
    Tensor x = Tensor::empty({pre + G2, C});                                     // (N, C)
    Tensor patches = x.slice(0, pre, pre + G2);                                  // (G², C)
    copy_into(patches, patch_conv(px, t.patch_embed_proj_weight, t.patch_embed_proj_bias));
    if (c.no_embed_class) assign(patches, patches + t.pos_embed);               // x + pos_embed, then the prefix
    if (c.class_token) {
        Tensor row = x.slice(0, 0, 1);
        copy_into(row, t.cls_token);
    }
    if (c.reg_tokens > 0) {
        Tensor rows = x.slice(0, c.class_token ? 1 : 0, pre);
        copy_into(rows, t.reg_token);
    }
    if (!c.no_embed_class) assign(x, x + t.pos_embed);                           // [prefix; x] + pos_embed
    return x;
}
}  // namespace detail

inline Tensor TimmVit::features(const Tensor& pixels) const {
    Tensor x = detail::timm_embed(*this, pixels);  // (N, C)
    VitScratch ws;
    for (const VitBlock& b : blocks) b.forward_inplace(x, ws);
    return x.slice(0, cfg.num_prefix_tokens(), x.size(0)).contiguous();  // (G², C): patch tokens only
}

inline Tensor TimmVit::features_batch(const Tensor& pixels) const {
    const std::int64_t S = cfg.img_size;
    VLM_CHECK(pixels.ndim() == 4 && pixels.size(0) >= 1 && pixels.shape() == Shape({pixels.size(0), 3, S, S}),
              "timm_vit", "pixel_values has shape ", shape_str(pixels.shape()), ", expected (B, 3, ", S, ", ", S, ")");
    const std::int64_t B = pixels.size(0), pre = cfg.num_prefix_tokens(), C = cfg.embed_dim;
    const std::int64_t N = pre + std::int64_t(cfg.grid()) * cfg.grid();
    Tensor x = Tensor::empty({B * N, C});  // (B·N, C)
    for (std::int64_t b = 0; b < B; ++b) {
        Tensor dst = x.slice(0, b * N, (b + 1) * N);
        copy_into(dst, detail::timm_embed(*this, pixels.select(0, b)));
    }
    VitScratch ws;
    for (const VitBlock& blk : blocks) blk.forward_inplace(x, ws, int(B));
    Tensor out = Tensor::empty({B, N - pre, C});  // (B, G², C)
    for (std::int64_t b = 0; b < B; ++b) {
        Tensor dst = out.select(0, b);
        copy_into(dst, x.slice(0, b * N + pre, (b + 1) * N));
    }
    return out;
}

inline TimmVit load_timm_vit(const TimmVitConfig& cfg) {
    const WeightStore store = WeightStore::open(cfg.weights);
    WeightLoader root(store);
    // open_clip keeps the timm tower under visual.trunk. (what timm's checkpoint_filter_fn strips)
    const bool open_clip = store.contains("visual.trunk.pos_embed") || store.contains("visual.trunk.blocks.0.norm1.weight");
    WeightLoader loader = root.scope(open_clip ? "visual.trunk." : "");
    TimmVit t = TimmVit::load(cfg, store, loader);
    root.finish();
    return t;
}

}  // namespace vlmamba
