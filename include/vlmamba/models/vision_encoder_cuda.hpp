// CudaVisionEncoder: the CLIP / SigLIP tower of models/vision_encoder.hpp on the GPU through the closed box
// vlmamba::cuda, with the same op order (modeling_clip.py: CLIPVisionTransformer; modeling_siglip.py:
// SiglipVisionTransformer). Weights and activations are f32 on the device; the products go through cuBLAS (tf32
// tensor cores when asked), attention as two strided-batched products around a row softmax. The patch im2col is
// made on the host (the pixels are small), everything after it on the device.
#pragma once
#include <cmath>
#include <utility>
#include <vector>

#include "vlmamba/cuda/api.hpp"
#include "vlmamba/cuda/device_buffer.hpp"
#include "vlmamba/models/vision_encoder.hpp"

namespace vlmamba {

class CudaVisionEncoder {
public:
    struct Layer {
        DeviceBuffer ln1_w, ln1_b;   // (C)
        DeviceBuffer qkv_w, qkv_b;   // (3C, C), (3C)
        DeviceBuffer out_w, out_b;   // (C, C), (C)
        DeviceBuffer ln2_w, ln2_b;   // (C)
        DeviceBuffer fc1_w, fc1_b;   // (I, C), (I)
        DeviceBuffer fc2_w, fc2_b;   // (C, I), (C)
    };
    VisionConfig cfg;
    bool tf32 = false;
    DeviceBuffer patch_w;         // (C, Cin·P·P)
    DeviceBuffer patch_b;         // (C); SigLIP only
    DeviceBuffer cls;             // (C); CLIP only
    DeviceBuffer pos;             // (num_positions, C)
    DeviceBuffer pre_w, pre_b;    // (C); CLIP only
    std::vector<Layer> layers;

    static CudaVisionEncoder upload(const VisionEncoder& e, bool tf32 = false);

    CudaVisionEncoder() = default;
    ~CudaVisionEncoder() {
        if (stream_) try { cuda::stream_destroy(stream_); } catch (...) {}
    }
    CudaVisionEncoder(CudaVisionEncoder&& o) noexcept { *this = std::move(o); }
    CudaVisionEncoder& operator=(CudaVisionEncoder&& o) noexcept {
        if (this != &o) {
            if (stream_) try { cuda::stream_destroy(stream_); } catch (...) {}
            cfg = o.cfg, tf32 = o.tf32;
            patch_w = std::move(o.patch_w), patch_b = std::move(o.patch_b), cls = std::move(o.cls);
            pos = std::move(o.pos), pre_w = std::move(o.pre_w), pre_b = std::move(o.pre_b);
            layers = std::move(o.layers);
            work_ = std::move(o.work_);
            stream_ = std::exchange(o.stream_, nullptr);
        }
        return *this;
    }

    // hidden_states[index] as (N, C) on the host (VisionEncoder::hidden_state).
    Tensor hidden_state(const Tensor& pixels, int index) const;
    // hidden_states[feature_layer] as (N', C) on the host, CLIP without CLS (VisionEncoder::features).
    Tensor features(const Tensor& pixels) const {
        Tensor x = hidden_state(pixels, cfg.feature_index());  // (N, C)
        return cfg.class_token() ? x.slice(0, 1, x.size(0)).contiguous() : x;
    }

private:
    cuda::Stream stream_ = nullptr;
    mutable DeviceBuffer work_;  // activations of a forward pass, kept for the next image
    void layer(const Layer& l, float* x, float* xn, float* qkv, float* scores, float* ctx, float* tmp,
               float* hid) const;
};

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {
inline DeviceBuffer to_device_f32(const Tensor& t) {
    const Tensor c = t.to(DType::F32);  // contiguous f32
    DeviceBuffer b(c.nbytes());
    cuda::copy_h2d(b.get(), c.raw(), c.nbytes());
    return b;
}
inline cuda::Activation cuda_activation(VitAct a) {
    switch (a) {
        case VitAct::QuickGelu: return cuda::Activation::QuickGelu;
        case VitAct::GeluTanh: return cuda::Activation::GeluTanh;
        default: return cuda::Activation::Gelu;
    }
}
}  // namespace detail

inline CudaVisionEncoder CudaVisionEncoder::upload(const VisionEncoder& e, bool tf32) {
    VLM_CHECK(cuda::available(), "cuda_vision_encoder", "expected a CUDA device, got none");
    using detail::to_device_f32;
    CudaVisionEncoder g;
    g.cfg = e.cfg;
    g.tf32 = tf32;
    const Tensor& pw = e.embeddings.patch_embedding_weight;  // (C, Cin, P, P)
    g.patch_w = to_device_f32(pw.contiguous().reshape({pw.size(0), pw.numel() / pw.size(0)}));
    if (e.embeddings.patch_embedding_bias.defined()) g.patch_b = to_device_f32(e.embeddings.patch_embedding_bias);
    if (e.embeddings.class_embedding.defined()) g.cls = to_device_f32(e.embeddings.class_embedding);
    g.pos = to_device_f32(e.embeddings.position_embedding_weight);
    if (e.cfg.class_token()) {
        g.pre_w = to_device_f32(e.pre_layrnorm_weight);
        g.pre_b = to_device_f32(e.pre_layrnorm_bias);
    }
    for (const VitBlock& b : e.layers) {
        Layer l;
        l.ln1_w = to_device_f32(b.layer_norm1_weight), l.ln1_b = to_device_f32(b.layer_norm1_bias);
        l.qkv_w = to_device_f32(b.self_attn.qkv_weight), l.qkv_b = to_device_f32(b.self_attn.qkv_bias);
        l.out_w = to_device_f32(b.self_attn.out_proj_weight), l.out_b = to_device_f32(b.self_attn.out_proj_bias);
        l.ln2_w = to_device_f32(b.layer_norm2_weight), l.ln2_b = to_device_f32(b.layer_norm2_bias);
        l.fc1_w = to_device_f32(b.mlp.fc1_weight), l.fc1_b = to_device_f32(b.mlp.fc1_bias);
        l.fc2_w = to_device_f32(b.mlp.fc2_weight), l.fc2_b = to_device_f32(b.mlp.fc2_bias);
        g.layers.push_back(std::move(l));
    }
    g.stream_ = cuda::stream_create();
    return g;
}

// modeling_clip.py: CLIPEncoderLayer.forward (SigLIP the same): pre-norm attention, then pre-norm MLP.
inline void CudaVisionEncoder::layer(const Layer& l, float* x, float* xn, float* qkv, float* scores, float* ctx,
                                     float* tmp, float* hid) const {
    const int N = cfg.num_positions(), C = cfg.hidden_size, I = cfg.intermediate_size, H = cfg.num_attention_heads;
    const int Dh = C / H;
    const float eps = cfg.layer_norm_eps;
    const cuda::Stream s = stream_;
    auto gemm = [&](int m, int n, int k, const float* a, const void* w, float* c) {  // c (m, n) = a · wᵀ
        cuda::gemm({m, n, k, a, w, c, DType::F32, DType::F32, tf32}, s);
    };
    cuda::layer_norm({N, C, x, l.ln1_w.as<float>(), l.ln1_b.as<float>(), xn, eps}, s);        // (N, C)
    gemm(N, 3 * C, C, xn, l.qkv_w.get(), qkv);                                                 // (N, 3C)
    cuda::bias_act(qkv, l.qkv_b.as<float>(), N, 3 * C, cuda::Activation::None, s);
    // scores[h] (N, N) = q_h k_hᵀ, q_h and k_h the head's Dh columns of qkv
    cuda::gemm_batched({N, N, Dh, qkv, qkv + C, scores, DType::F32, DType::F32, tf32, 1.0f, 0.0f, 3 * C, 3 * C, N},
                       {H, Dh, Dh, std::int64_t(N) * N, true}, s);                            // (H, N, N)
    cuda::softmax_rows(scores, std::int64_t(H) * N, N, 1.0f / std::sqrt(float(Dh)), s);
    // ctx[:, h] (N, Dh) = p_h v_h
    cuda::gemm_batched({N, Dh, N, scores, qkv + 2 * C, ctx, DType::F32, DType::F32, tf32, 1.0f, 0.0f, N, 3 * C, C},
                       {H, std::int64_t(N) * N, Dh, Dh, false}, s);                           // (N, C)
    gemm(N, C, C, ctx, l.out_w.get(), tmp);                                                    // (N, C)
    cuda::bias_residual(x, tmp, l.out_b.as<float>(), N, C, s);
    cuda::layer_norm({N, C, x, l.ln2_w.as<float>(), l.ln2_b.as<float>(), xn, eps}, s);
    gemm(N, I, C, xn, l.fc1_w.get(), hid);                                                     // (N, I)
    cuda::bias_act(hid, l.fc1_b.as<float>(), N, I, detail::cuda_activation(cfg.act), s);
    gemm(N, C, I, hid, l.fc2_w.get(), tmp);                                                    // (N, C)
    cuda::bias_residual(x, tmp, l.fc2_b.as<float>(), N, C, s);
}

inline Tensor CudaVisionEncoder::hidden_state(const Tensor& pixels, int index) const {
    VLM_CHECK(index >= 0 && index <= cfg.num_hidden_layers, "vision", "expected a hidden_states index in [0, ",
              cfg.num_hidden_layers, "], got ", index);
    const Tensor px = detail::vision_pixels(pixels, cfg);                        // (3, S, S)
    const Tensor cols = im2col_patches(px, cfg.patch_size);                      // (Np, K)
    const std::size_t Np = std::size_t(cols.size(0)), K = std::size_t(cols.size(1));
    const std::size_t N = std::size_t(cfg.num_positions()), C = std::size_t(cfg.hidden_size);
    const std::size_t I = std::size_t(cfg.intermediate_size), H = std::size_t(cfg.num_attention_heads);
    const std::size_t bytes = (Np * K + Np * C + 4 * N * C + 3 * N * C + H * N * N + N * I) * sizeof(float);
    if (work_.bytes() < bytes) work_ = DeviceBuffer(bytes);
    float* p = work_.as<float>();
    auto take = [&p](std::size_t n) { float* q = p; p += n; return q; };
    float *dcols = take(Np * K), *emb = take(Np * C), *x = take(N * C), *xn = take(N * C), *ctx = take(N * C);
    float *tmp = take(N * C), *qkv = take(3 * N * C), *scores = take(H * N * N), *hid = take(N * I);
    cuda::copy_h2d(dcols, cols.data<float>(), cols.nbytes());
    cuda::gemm({int(Np), int(C), int(K), dcols, patch_w.get(), emb, DType::F32, DType::F32, tf32}, stream_);
    cuda::vit_embed({int(Np), int(C), emb, patch_b.as<float>(), cls.as<float>(), pos.as<float>(), x}, stream_);
    if (cfg.class_token())  // modeling_clip.py: pre_layrnorm
        cuda::layer_norm({int(N), int(C), x, pre_w.as<float>(), pre_b.as<float>(), x, cfg.layer_norm_eps}, stream_);
    for (int i = 0; i < index; ++i) layer(layers[std::size_t(i)], x, xn, qkv, scores, ctx, tmp, hid);
    Tensor out = Tensor::empty({std::int64_t(N), std::int64_t(C)});
    cuda::synchronize();
    cuda::copy_d2h(out.data<float>(), x, out.nbytes());
    return out;
}

}  // namespace vlmamba
