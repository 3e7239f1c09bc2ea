// Patch embedding of a ViT (transformers modeling_clip.py: CLIPVisionEmbeddings; modeling_siglip.py:
// SiglipVisionEmbeddings): a Conv2d with stride = kernel ("valid", so rows and columns past the last whole patch
// are never seen), flattened row-major, an optional class token in front, plus the position embeddings.
// The conv is one GEMM over im2col patches.
#pragma once
#include <cstring>
#include <string>

#include "vlmamba/core/parallel.hpp"
#include "vlmamba/core/tensor.hpp"
#include "vlmamba/cuda/api.hpp"
#include "vlmamba/layers/param.hpp"
#include "vlmamba/ops/elementwise.hpp"
#include "vlmamba/ops/gemm.hpp"

namespace vlmamba {

// Conv2d with kernel = stride = P and no padding. x: (Cin, H, W); w: (Cout, Cin, P, P); b: (Cout) or undefined.
// Returns (Gh·Gw, Cout), Gh = H / P, Gw = W / P, rows in row-major patch order.
Tensor patch_conv(const Tensor& x, const Tensor& w, const Tensor& b);

namespace ref {
Tensor patch_conv(const Tensor& x, const Tensor& w, const Tensor& b);
}

struct PatchEmbed {
    struct Config {
        int channels = 3, hidden = 0, patch = 0, image_size = 0;
        bool bias = false;       // SigLIP: true
        bool class_token = false;  // CLIP: true
        int grid() const { return image_size / patch; }
        int num_positions() const { return grid() * grid() + (class_token ? 1 : 0); }
    };
    Config cfg;
    Tensor patch_embedding_weight;     // (C, Cin, P, P)
    Tensor patch_embedding_bias;       // (C) or undefined
    Tensor class_embedding;            // (C) or undefined
    Tensor position_embedding_weight;  // (num_positions, C)

    // `prefix` ends with "embeddings." (e.g. "vision_model.embeddings.").
    static PatchEmbed load(const Config& c, const std::string& prefix, const ParamSource& src);
    PatchEmbed to(Device d) const {
        auto opt = [&](const Tensor& t) { return t.defined() ? t.to(DType::F32).to(d) : Tensor(); };
        return {cfg, opt(patch_embedding_weight), opt(patch_embedding_bias), opt(class_embedding),
                opt(position_embedding_weight)};
    }
    // x (Cin, S, S) on the host -> (num_positions, C) on the weights' device
    Tensor forward(const Tensor& x) const;
};

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {
inline void check_patch_conv(const Tensor& x, const Tensor& w, const Tensor& b) {
    constexpr const char* op = "patch_conv";
    VLM_CHECK(w.ndim() == 4 && w.size(2) == w.size(3) && w.size(2) > 0, op, "weight has shape ",
              shape_str(w.shape()), ", expected (Cout, Cin, P, P)");
    VLM_CHECK(x.ndim() == 3 && x.size(0) == w.size(1) && x.size(1) >= w.size(2) && x.size(2) >= w.size(2), op,
              "input has shape ", shape_str(x.shape()), ", expected (", w.size(1), ", H, W) with H, W >= ", w.size(2));
    if (b.defined())
        VLM_CHECK(b.ndim() == 1 && b.size(0) == w.size(0), op, "bias has shape ", shape_str(b.shape()),
                  ", expected (", w.size(0), ",)");
}
}  // namespace detail

// im2col of x (Cin, H, W) for a P×P stride-P conv: one row per patch, columns in the weight's (Cin, kh, kw) order.
inline Tensor im2col_patches(const Tensor& x, std::int64_t P) {
    const std::int64_t Cin = x.size(0), H = x.size(1), W = x.size(2);
    const std::int64_t Gh = H / P, Gw = W / P, K = Cin * P * P;
    const Tensor xc = x.to(DType::F32);          // (Cin, H, W) contiguous
    Tensor cols = Tensor::empty({Gh * Gw, K});  // (G², Cin·P·P)
    const float* xp = xc.data<float>();
    float* cp = cols.data<float>();
    parallel_for(Gh * Gw, [&](std::int64_t g) {
        const std::int64_t gy = g / Gw, gx = g % Gw;
        float* row = cp + g * K;
        for (std::int64_t c = 0; c < Cin; ++c)
            for (std::int64_t ky = 0; ky < P; ++ky)
                std::memcpy(row + (c * P + ky) * P, xp + (c * H + gy * P + ky) * W + gx * P, std::size_t(P) * 4);
    }, K);
    return cols;
}

inline Tensor patch_conv(const Tensor& x, const Tensor& w, const Tensor& b) {
    detail::check_patch_conv(x, w, b);
    const std::int64_t Cin = x.size(0), P = w.size(2), Cout = w.size(0);
    return linear(im2col_patches(x, P), w.contiguous().reshape({Cout, Cin * P * P}), b);  // (G², Cout)
}

namespace ref {
inline Tensor patch_conv(const Tensor& x, const Tensor& w, const Tensor& b) {
    detail::check_patch_conv(x, w, b);
    const std::int64_t Cin = x.size(0), P = w.size(2), Cout = w.size(0);
    const std::int64_t Gh = x.size(1) / P, Gw = x.size(2) / P;
    Tensor y = Tensor::empty({Gh * Gw, Cout});
    for (std::int64_t gy = 0; gy < Gh; ++gy)
        for (std::int64_t gx = 0; gx < Gw; ++gx)
            for (std::int64_t o = 0; o < Cout; ++o) {
                double acc = b.defined() ? b.at({o}) : 0.0;
                for (std::int64_t c = 0; c < Cin; ++c)
                    for (std::int64_t ky = 0; ky < P; ++ky)
                        for (std::int64_t kx = 0; kx < P; ++kx)
                            acc += double(x.at({c, gy * P + ky, gx * P + kx})) * w.at({o, c, ky, kx});
                y.data<float>()[(gy * Gw + gx) * Cout + o] = float(acc);
            }
    return y;
}
}  // namespace ref

inline PatchEmbed PatchEmbed::load(const Config& c, const std::string& p, const ParamSource& src) {
    const std::int64_t C = c.hidden, P = c.patch;
    PatchEmbed e;
    e.cfg = c;
    e.patch_embedding_weight = src.fetch(p + "patch_embedding.weight", {C, c.channels, P, P});
    if (c.bias) e.patch_embedding_bias = src.fetch(p + "patch_embedding.bias", {C});
    if (c.class_token) e.class_embedding = src.fetch(p + "class_embedding", {C});
    e.position_embedding_weight = src.fetch(p + "position_embedding.weight", {c.num_positions(), C});
    return e;
}

inline Tensor PatchEmbed::forward(const Tensor& x) const {
    const std::int64_t C = cfg.hidden, S = cfg.image_size, G2 = std::int64_t(cfg.grid()) * cfg.grid();
    check_shape("patch_embed", "input", x, {cfg.channels, S, S});
    const std::int64_t first = cfg.class_token ? 1 : 0;
    if (patch_embedding_weight.is_cuda()) {  // im2col on the host (the pixels are small), the rest on the GPU
        const Tensor& w = patch_embedding_weight;
        const Tensor cols = im2col_patches(x, cfg.patch).to(Device::Cuda);                  // (G², Cin·P·P)
        const Tensor emb = linear(cols, w.reshape({w.size(0), w.numel() / w.size(0)}));     // (G², C)
        Tensor out = Tensor::empty({G2 + first, C}, DType::F32, Device::Cuda);                // (N, C)
        cuda::vit_embed({int(G2), int(C), emb.data<float>(),
                         patch_embedding_bias.defined() ? patch_embedding_bias.data<float>() : nullptr,
                         class_embedding.defined() ? class_embedding.data<float>() : nullptr,
                         position_embedding_weight.data<float>(), out.data<float>()});
        return out;
    }
    Tensor out = Tensor::empty({G2 + first, C});  // (N, C)
    // modeling_clip.py: CLIPVisionEmbeddings.forward: cat([class_embeds, patch_embeds]) + position_embedding
    if (cfg.class_token) std::memcpy(out.data<float>(), class_embedding.data<float>(), std::size_t(C) * 4);
    Tensor patches = out.slice(0, first, first + G2);  // (G², C), contiguous rows of out
    Tensor conv = patch_conv(x, patch_embedding_weight, patch_embedding_bias);
    copy_into(patches, conv);
    assign(out, out + position_embedding_weight);
    return out;
}

}  // namespace vlmamba
