// RMSNorm (Mamba) and LayerNorm (ViT, connectors) along the last axis, computed in f32.
#pragma once
#include <cmath>

#include "vlmamba/core/parallel.hpp"
#include "vlmamba/core/tensor.hpp"
#include "vlmamba/cuda/api.hpp"

namespace vlmamba {

// y = x · rsqrt(mean(x²) + eps) · w          (mamba_ssm rms_norm_ref; HF MambaRMSNorm)
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps);                      // (..., C) -> (..., C)
// y = (x − mean) · rsqrt(var + eps) · w + b  (biased variance, as torch.nn.LayerNorm)
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);  // (..., C) -> (..., C)

namespace ref {
Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps);
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps);
}

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {
inline void check_norm(const char* op, const Tensor& x, const Tensor& w, const Tensor* b) {
    VLM_CHECK(x.ndim() >= 1, op, "expected rank >= 1, got ", shape_str(x.shape()));
    const std::int64_t C = x.shape().back();
    VLM_CHECK(w.ndim() == 1 && w.size(0) == C, op, "weight has shape ", shape_str(w.shape()), ", expected (", C,
              ",)");
    if (b) VLM_CHECK(b->ndim() == 1 && b->size(0) == C, op, "bias has shape ", shape_str(b->shape()),
                     ", expected (", C, ",)");
}
}  // namespace detail

inline Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
    detail::check_norm("rms_norm", x, weight, nullptr);
    const std::int64_t C = x.shape().back(), R = C ? x.numel() / C : 0;
    if (same_device("rms_norm", x, weight) == Device::Cuda) {
        const Tensor xc = x.to(DType::F32), w = weight.dtype() == DType::BF16 ? weight : weight.to(DType::F32);
        Tensor y = Tensor::empty(x.shape(), DType::F32, Device::Cuda);  // (..., C)
        if (R) cuda::rms_norm({int(R), int(C), xc.data<float>(), nullptr, w.raw(), w.dtype(), y.raw(), DType::F32, eps});
        return y;
    }
    const Tensor xc = x.to(DType::F32), w = weight.to(DType::F32);
    Tensor y = Tensor::empty(x.shape());  // (..., C)
    const float* in = xc.data<float>();
    const float* wp = w.data<float>();
    float* out = y.data<float>();
    parallel_for(R, [&](std::int64_t r) {
        const float* row = in + r * C;
        float ss = 0.f;
        for (std::int64_t c = 0; c < C; ++c) ss += row[c] * row[c];
        const float inv = 1.f / std::sqrt(ss / float(C) + eps);
        for (std::int64_t c = 0; c < C; ++c) out[r * C + c] = row[c] * inv * wp[c];
    }, C);
    return y;
}

inline Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
    detail::check_norm("layer_norm", x, weight, &bias);
    const std::int64_t C = x.shape().back(), R = C ? x.numel() / C : 0;
    if (same_device("layer_norm", x, weight, bias) == Device::Cuda) {
        const Tensor xc = x.to(DType::F32), w = weight.to(DType::F32), b = bias.to(DType::F32);
        Tensor y = Tensor::empty(x.shape(), DType::F32, Device::Cuda);  // (..., C)
        if (R) cuda::layer_norm({int(R), int(C), xc.data<float>(), w.data<float>(), b.data<float>(), y.data<float>(), eps});
        return y;
    }
    const Tensor xc = x.to(DType::F32), w = weight.to(DType::F32), b = bias.to(DType::F32);
    Tensor y = Tensor::empty(x.shape());  // (..., C)
    const float* in = xc.data<float>();
    const float* wp = w.data<float>();
    const float* bp = b.data<float>();
    float* out = y.data<float>();
    parallel_for(R, [&](std::int64_t r) {
        const float* row = in + r * C;
        float s = 0.f;
        for (std::int64_t c = 0; c < C; ++c) s += row[c];
        const float mu = s / float(C);
        float v = 0.f;
        for (std::int64_t c = 0; c < C; ++c) v += (row[c] - mu) * (row[c] - mu);
        const float inv = 1.f / std::sqrt(v / float(C) + eps);
        for (std::int64_t c = 0; c < C; ++c) out[r * C + c] = (row[c] - mu) * inv * wp[c] + bp[c];
    }, C);
    return y;
}

namespace ref {
inline Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
    const std::int64_t C = x.shape().back();
    Tensor flat = x.contiguous().reshape({-1, C});
    Tensor y = Tensor::empty(flat.shape());
    for (std::int64_t r = 0; r < flat.size(0); ++r) {
        double ss = 0;
        for (std::int64_t c = 0; c < C; ++c) ss += double(flat.at({r, c})) * flat.at({r, c});
        const double inv = 1.0 / std::sqrt(ss / double(C) + eps);
        for (std::int64_t c = 0; c < C; ++c) y.data<float>()[r * C + c] = float(flat.at({r, c}) * inv * weight.at({c}));
    }
    return y.reshape(x.shape());
}
inline Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
    const std::int64_t C = x.shape().back();
    Tensor flat = x.contiguous().reshape({-1, C});
    Tensor y = Tensor::empty(flat.shape());
    for (std::int64_t r = 0; r < flat.size(0); ++r) {
        double s = 0, v = 0;
        for (std::int64_t c = 0; c < C; ++c) s += flat.at({r, c});
        const double mu = s / double(C);
        for (std::int64_t c = 0; c < C; ++c) v += (flat.at({r, c}) - mu) * (flat.at({r, c}) - mu);
        const double inv = 1.0 / std::sqrt(v / double(C) + eps);
        for (std::int64_t c = 0; c < C; ++c)
            y.data<float>()[r * C + c] = float((flat.at({r, c}) - mu) * inv * weight.at({c}) + bias.at({c}));
    }
    return y.reshape(x.shape());
}
}  // namespace ref

}  // namespace vlmamba
