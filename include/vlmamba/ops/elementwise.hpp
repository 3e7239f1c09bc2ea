// Fused elementwise math: include this to write `Tensor y = a * silu(z) + x * D;` (host tensors), and the named
// in-place ops that layers written for both devices use.
#pragma once
#include "vlmamba/core/assign.hpp"
#include "vlmamba/core/expr.hpp"
#include "vlmamba/core/functors.hpp"
#include "vlmamba/cuda/api.hpp"

namespace vlmamba {

// y += x (same shape; y contiguous f32), on either device.
void add_(Tensor& y, const Tensor& x);
// y (rows, C) += x (rows, C) · g (C): a residual scaled per channel (timm's LayerScale).
void add_scaled_(Tensor& y, const Tensor& x, const Tensor& g);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline void add_(Tensor& y, const Tensor& x) {
    check_shape("add", "x", x, y.shape());
    if (same_device("add", y, x) == Device::Cpu) return assign(y, y + x);
    VLM_CHECK(y.dtype() == DType::F32 && y.is_contiguous(), "add", "expected a contiguous F32 output");
    const Tensor xc = x.to(DType::F32);  // contiguous
    cuda::add(y.data<float>(), y.data<float>(), xc.data<float>(), y.numel());
}

inline void add_scaled_(Tensor& y, const Tensor& x, const Tensor& g) {
    check_shape("add_scaled", "x", x, y.shape());
    check_shape("add_scaled", "scale", g, {y.shape().back()});
    if (same_device("add_scaled", y, x, g) == Device::Cpu) return assign(y, y + x * g);
    VLM_CHECK(y.dtype() == DType::F32 && y.is_contiguous(), "add_scaled", "expected a contiguous F32 output");
    const Tensor xc = x.to(DType::F32), gc = g.to(DType::F32);
    const std::int64_t C = y.shape().back();
    cuda::add_scaled(y.data<float>(), xc.data<float>(), gc.data<float>(), C ? y.numel() / C : 0, int(C));
}

}  // namespace vlmamba
