// The pre-norm encoder block shared by CLIP and SigLIP (transformers modeling_clip.py: CLIPEncoderLayer;
// modeling_siglip.py: SiglipEncoderLayer) and timm's ViTs (timm vision_transformer.py: Block):
//   x = x + ls1 · out_proj(attention(LN1(x)))      attention: softmax(q kᵀ / √head_dim) v per head, no mask
//   x = x + ls2 · fc2(act(fc1(LN2(x))))            act: quick_gelu (CLIP), gelu_pytorch_tanh (SigLIP) or exact gelu
// ls1, ls2 are timm's LayerScale gammas (DINOv2), absent (1) otherwise. q, k and v come from one GEMM: HF's three
// weights are stacked at load time, timm stores them stacked (attn.qkv).
#pragma once
#include <cmath>
#include <string>
#include <string_view>

#include "vlmamba/cuda/api.hpp"
#include "vlmamba/layers/param.hpp"
#include "vlmamba/ops/attention.hpp"
#include "vlmamba/ops/elementwise.hpp"
#include "vlmamba/ops/gemm.hpp"
#include "vlmamba/ops/norm.hpp"

namespace vlmamba {

// The MLP activations of the ViT configs (`hidden_act`).
enum class VitAct { QuickGelu, Gelu, GeluTanh };

// "quick_gelu", "gelu" (erf), "gelu_pytorch_tanh" or "gelu_new" (both tanh); otherwise an error listing them.
VitAct parse_vit_act(std::string_view name, const std::string& where);
// y = act(y + b) in place; y: (N, I) contiguous f32, b: (I); on either device.
void bias_act_inplace(Tensor& y, const Tensor& b, VitAct act);

// Activation buffers reused across the layers of a forward pass (outputs are written with linear_into, so a tower
// allocates them once instead of per layer). Resized on demand.
struct VitScratch {
    Tensor qkv;     // (N, 3C)
    Tensor ctx;     // (N, C)
    Tensor proj;    // (N, C)
    Tensor hidden;  // (N, I)
    static Tensor& fit(Tensor& t, const Shape& s, Device d) {
        if (!t.defined() || t.shape() != s || t.device() != d) t = Tensor::empty(s, DType::F32, d);
        return t;
    }
};

struct VitAttention {
    struct Config { int hidden = 0, heads = 0; };
    Config cfg;
    Tensor qkv_weight;       // (3C, C): q_proj, k_proj, v_proj weights stacked
    Tensor qkv_bias;         // (3C)
    Tensor out_proj_weight;  // (C, C)
    Tensor out_proj_bias;    // (C)

    // `prefix` ends with "self_attn.".
    static VitAttention load(const Config& c, const std::string& prefix, const ParamSource& src);
    VitAttention to(Device d) const {
        return {cfg, qkv_weight.to(d), qkv_bias.to(d), out_proj_weight.to(d), out_proj_bias.to(d)};
    }
    Tensor forward(const Tensor& x) const;  // (N, C) -> (N, C)
    // Result in ws.proj (N, C). x may hold `images` images of N / images rows each: attention stays within one.
    void forward(const Tensor& x, VitScratch& ws, int images = 1) const;
};

struct VitMlp {
    struct Config { int hidden = 0, intermediate = 0; VitAct act = VitAct::Gelu; };
    Config cfg;
    Tensor fc1_weight, fc1_bias;  // (I, C), (I)
    Tensor fc2_weight, fc2_bias;  // (C, I), (C)

    static VitMlp load(const Config& c, const std::string& prefix, const ParamSource& src);
    VitMlp to(Device d) const { return {cfg, fc1_weight.to(d), fc1_bias.to(d), fc2_weight.to(d), fc2_bias.to(d)}; }
    Tensor forward(const Tensor& x) const;  // (N, C) -> (N, C)
    // Result in ws.proj (N, C).
    void forward(const Tensor& x, VitScratch& ws) const;
};

struct VitBlock {
    struct Config {
        int hidden = 0, heads = 0, intermediate = 0;
        float eps = 1e-5f;
        VitAct act = VitAct::Gelu;
    };
    Config cfg;
    Tensor layer_norm1_weight, layer_norm1_bias;  // (C)
    VitAttention self_attn;
    Tensor layer_norm2_weight, layer_norm2_bias;  // (C)
    VitMlp mlp;
    Tensor ls1_gamma, ls2_gamma;                  // (C) timm LayerScale, or undefined

    // HF naming; `prefix` ends with "layers.{i}.".
    static VitBlock load(const Config& c, const std::string& prefix, const ParamSource& src);
    // timm naming (norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2, ls1.gamma, ls2.gamma); `prefix` ends with
    // "blocks.{i}.". LayerScale gammas are read when `layer_scale`.
    static VitBlock load_timm(const Config& c, bool layer_scale, const std::string& prefix, const ParamSource& src);
    VitBlock to(Device d) const {
        auto opt = [&](const Tensor& t) { return t.defined() ? t.to(d) : Tensor(); };
        return {cfg, layer_norm1_weight.to(d), layer_norm1_bias.to(d), self_attn.to(d), layer_norm2_weight.to(d),
                layer_norm2_bias.to(d), mlp.to(d), opt(ls1_gamma), opt(ls2_gamma)};
    }
    Tensor forward(const Tensor& x) const;  // (N, C) -> (N, C)
    void forward_inplace(Tensor& x) const;  // x: (N, C) contiguous f32, updated in place
    // x: (B·N, C), B = images of N rows each (one batched product per weight, attention per image).
    void forward_inplace(Tensor& x, VitScratch& ws, int images = 1) const;
};

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline VitAct parse_vit_act(std::string_view name, const std::string& where) {
    if (name == "quick_gelu") return VitAct::QuickGelu;
    if (name == "gelu") return VitAct::Gelu;
    if (name == "gelu_pytorch_tanh" || name == "gelu_new") return VitAct::GeluTanh;
    fail("vision_config", where, ": hidden_act '", name,
         "' is not supported: expected quick_gelu, gelu, gelu_pytorch_tanh or gelu_new");
}

inline void bias_act_inplace(Tensor& y, const Tensor& b, VitAct act) {
    if (same_device("bias_act", y, b) == Device::Cuda) {
        VLM_CHECK(y.ndim() == 2 && y.dtype() == DType::F32 && y.is_contiguous(), "bias_act",
                  "expected a contiguous F32 (N, I), got ", shape_str(y.shape()));
        const Tensor bc = b.to(DType::F32);
        const cuda::Activation a = act == VitAct::QuickGelu ? cuda::Activation::QuickGelu
                                   : act == VitAct::GeluTanh ? cuda::Activation::GeluTanh
                                                             : cuda::Activation::Gelu;
        cuda::bias_act(y.data<float>(), bc.data<float>(), y.size(0), int(y.size(1)), a);
        return;
    }
    switch (act) {
        case VitAct::QuickGelu: assign(y, quick_gelu(y + b)); break;
        case VitAct::Gelu: assign(y, gelu(y + b)); break;
        case VitAct::GeluTanh: assign(y, gelu_tanh(y + b)); break;
    }
}

inline VitAttention VitAttention::load(const Config& c, const std::string& p, const ParamSource& src) {
    const std::int64_t C = c.hidden;
    VitAttention a;
    a.cfg = c;
    const char* names[3] = {"q_proj.", "k_proj.", "v_proj."};
    Tensor w[3], b[3];
    for (int i = 0; i < 3; ++i) {
        w[i] = src.fetch(p + names[i] + "weight", {C, C});
        b[i] = src.fetch(p + names[i] + "bias", {C});
    }
    a.out_proj_weight = src.fetch(p + "out_proj.weight", {C, C});
    a.out_proj_bias = src.fetch(p + "out_proj.bias", {C});
    if (w[0].defined() && w[1].defined() && w[2].defined() && b[0].defined() && b[1].defined() && b[2].defined()) {
        a.qkv_weight = Tensor::empty({3 * C, C});  // (3C, C)
        a.qkv_bias = Tensor::empty({3 * C});       // (3C)
        for (std::int64_t i = 0; i < 3; ++i) {
            Tensor wd = a.qkv_weight.slice(0, i * C, (i + 1) * C), bd = a.qkv_bias.slice(0, i * C, (i + 1) * C);
            copy_into(wd, w[i]);
            copy_into(bd, b[i]);
        }
    }
    return a;
}

inline void VitAttention::forward(const Tensor& x, VitScratch& ws, int images) const {
    const std::int64_t N = x.size(0), C = cfg.hidden;
    check_shape("vit_attention", "input", x, {N, C});
    VLM_CHECK(images >= 1 && N % images == 0, "vit_attention", "expected ", N, " rows to split into ", images,
              " images of equal length");
    Tensor& qkv = VitScratch::fit(ws.qkv, {N, 3 * C}, x.device());  // (N, 3C) = [q | k | v]
    linear_into(qkv, x, qkv_weight, qkv_bias);
    Tensor& ctx = VitScratch::fit(ws.ctx, {N, C}, x.device());      // (N, C), heads side by side
    const std::int64_t n = N / images;                  // rows of one image
    for (std::int64_t b = 0; b < images; ++b) {
        const Tensor t = qkv.slice(0, b * n, (b + 1) * n);  // (n, 3C)
        Tensor out = ctx.slice(0, b * n, (b + 1) * n);      // (n, C)
        attention_into(out, t.slice(1, 0, C), t.slice(1, C, 2 * C), t.slice(1, 2 * C, 3 * C), cfg.heads,
                       1.f / std::sqrt(float(C / cfg.heads)));
    }
    linear_into(VitScratch::fit(ws.proj, {N, C}, x.device()), ctx, out_proj_weight, out_proj_bias);  // (N, C)
}

inline Tensor VitAttention::forward(const Tensor& x) const {
    VitScratch ws;
    forward(x, ws);
    return ws.proj;
}

inline VitMlp VitMlp::load(const Config& c, const std::string& p, const ParamSource& src) {
    const std::int64_t C = c.hidden, I = c.intermediate;
    VitMlp m;
    m.cfg = c;
    m.fc1_weight = src.fetch(p + "fc1.weight", {I, C});
    m.fc1_bias = src.fetch(p + "fc1.bias", {I});
    m.fc2_weight = src.fetch(p + "fc2.weight", {C, I});
    m.fc2_bias = src.fetch(p + "fc2.bias", {C});
    return m;
}

inline void VitMlp::forward(const Tensor& x, VitScratch& ws) const {
    const std::int64_t N = x.size(0);
    Tensor& h = VitScratch::fit(ws.hidden, {N, cfg.intermediate}, x.device());  // (N, I)
    linear_into(h, x, fc1_weight);
    bias_act_inplace(h, fc1_bias, cfg.act);                          // act(fc1(x)) with the bias fused
    linear_into(VitScratch::fit(ws.proj, {N, cfg.hidden}, x.device()), h, fc2_weight, fc2_bias);  // (N, C)
}

inline Tensor VitMlp::forward(const Tensor& x) const {
    VitScratch ws;
    forward(x, ws);
    return ws.proj;
}

inline VitBlock VitBlock::load(const Config& c, const std::string& p, const ParamSource& src) {
    const std::int64_t C = c.hidden;
    VLM_CHECK(c.heads > 0 && c.hidden % c.heads == 0, "vit_block", "expected num_attention_heads dividing ",
              "hidden_size, got ", c.heads, " heads for hidden_size ", c.hidden);
    VitBlock b;
    b.cfg = c;
    b.layer_norm1_weight = src.fetch(p + "layer_norm1.weight", {C});
    b.layer_norm1_bias = src.fetch(p + "layer_norm1.bias", {C});
    b.self_attn = VitAttention::load({c.hidden, c.heads}, p + "self_attn.", src);
    b.layer_norm2_weight = src.fetch(p + "layer_norm2.weight", {C});
    b.layer_norm2_bias = src.fetch(p + "layer_norm2.bias", {C});
    b.mlp = VitMlp::load({c.hidden, c.intermediate, c.act}, p + "mlp.", src);
    return b;
}

inline VitBlock VitBlock::load_timm(const Config& c, bool layer_scale, const std::string& p, const ParamSource& src) {
    const std::int64_t C = c.hidden, I = c.intermediate;
    VLM_CHECK(c.heads > 0 && c.hidden % c.heads == 0, "vit_block", "expected num_heads dividing embed_dim, got ",
              c.heads, " heads for embed_dim ", c.hidden);
    VitBlock b;
    b.cfg = c;
    b.layer_norm1_weight = src.fetch(p + "norm1.weight", {C});
    b.layer_norm1_bias = src.fetch(p + "norm1.bias", {C});
    b.self_attn.cfg = {c.hidden, c.heads};
    b.self_attn.qkv_weight = src.fetch(p + "attn.qkv.weight", {3 * C, C});  // rows: q, k, v
    b.self_attn.qkv_bias = src.fetch(p + "attn.qkv.bias", {3 * C});
    b.self_attn.out_proj_weight = src.fetch(p + "attn.proj.weight", {C, C});
    b.self_attn.out_proj_bias = src.fetch(p + "attn.proj.bias", {C});
    b.layer_norm2_weight = src.fetch(p + "norm2.weight", {C});
    b.layer_norm2_bias = src.fetch(p + "norm2.bias", {C});
    b.mlp.cfg = {c.hidden, c.intermediate, c.act};
    b.mlp.fc1_weight = src.fetch(p + "mlp.fc1.weight", {I, C});
    b.mlp.fc1_bias = src.fetch(p + "mlp.fc1.bias", {I});
    b.mlp.fc2_weight = src.fetch(p + "mlp.fc2.weight", {C, I});
    b.mlp.fc2_bias = src.fetch(p + "mlp.fc2.bias", {C});
    if (layer_scale) {
        b.ls1_gamma = src.fetch(p + "ls1.gamma", {C});
        b.ls2_gamma = src.fetch(p + "ls2.gamma", {C});
    }
    return b;
}

inline void VitBlock::forward_inplace(Tensor& x, VitScratch& ws, int images) const {
    VLM_CHECK(x.ndim() == 2 && x.size(1) == cfg.hidden, "vit_block", "input has shape ", shape_str(x.shape()),
              ", expected (N, ", cfg.hidden, ")");
    VLM_CHECK(x.dtype() == DType::F32 && x.is_contiguous(), "vit_block", "expected a contiguous F32 residual, got ",
              dtype_name(x.dtype()), " strides ", shape_str(x.strides()));
    // modeling_clip.py: CLIPEncoderLayer.forward (the same in SiglipEncoderLayer)
    // timm vision_transformer.py: Block.forward adds ls1(attn(norm1(x))) and ls2(mlp(norm2(x)))
    self_attn.forward(layer_norm(x, layer_norm1_weight, layer_norm1_bias, cfg.eps), ws, images);
    if (ls1_gamma.defined()) add_scaled_(x, ws.proj, ls1_gamma);  // x += ls1 · attn(LN1(x))
    else add_(x, ws.proj);                                        // x += attn(LN1(x))
    mlp.forward(layer_norm(x, layer_norm2_weight, layer_norm2_bias, cfg.eps), ws);
    if (ls2_gamma.defined()) add_scaled_(x, ws.proj, ls2_gamma);  // x += ls2 · mlp(LN2(x))
    else add_(x, ws.proj);                                        // x += mlp(LN2(x))
}

inline void VitBlock::forward_inplace(Tensor& x) const {
    VitScratch ws;
    forward_inplace(x, ws);
}

inline Tensor VitBlock::forward(const Tensor& x) const {
    Tensor y = x.dtype() == DType::F32 ? x.clone() : x.to(DType::F32);  // (N, C) contiguous copy
    forward_inplace(y);
    return y;
}

}  // namespace vlmamba
