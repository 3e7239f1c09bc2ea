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
// a + b (same shape) as a new contiguous f32 tensor.
Tensor add(const Tensor& a, const Tensor& b);
// y = gelu(y) (erf) in place; y contiguous f32.
void gelu_(Tensor& y);
// y (rows, C) *= silu(z) with z (rows, C) of unit column stride (any row stride); y contiguous f32.
void mul_silu_(Tensor& y, const Tensor& z);

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

inline Tensor add(const Tensor& a, const Tensor& b) {
    check_shape("add", "b", b, a.shape());
    if (same_device("add", a, b) == Device::Cpu) return eval(a + b);
    Tensor y = a.to(DType::F32).clone();
    add_(y, b);
    return y;
}

inline void gelu_(Tensor& y) {
    VLM_CHECK(y.dtype() == DType::F32 && y.is_contiguous(), "gelu", "expected a contiguous F32 tensor");
    if (!y.is_cuda()) return assign(y, gelu(y));
    const std::int64_t C = y.ndim() ? y.shape().back() : 1;
    cuda::bias_act(y.data<float>(), nullptr, C ? y.numel() / C : 0, int(C), cuda::Activation::Gelu);
}

inline void mul_silu_(Tensor& y, const Tensor& z) {
    constexpr const char* op = "mul_silu";
    VLM_CHECK(y.ndim() == 2 && y.dtype() == DType::F32 && y.is_contiguous(), op, "expected a contiguous F32 (rows, C)");
    check_shape(op, "z", z, y.shape());
    VLM_CHECK(z.dtype() == DType::F32 && z.stride(1) == 1, op, "expected F32 z with unit column stride");
    const std::int64_t R = y.size(0), C = y.size(1), ldz = z.stride(0);
    if (same_device(op, y, z) == Device::Cuda) return cuda::mul_silu(y.data<float>(), z.data<float>(), ldz, R, int(C));
    const float* zp = z.data<float>();
    float* yp = y.data<float>();
    using B = fn::batch;
    constexpr std::int64_t Wv = B::size;
    parallel_for(R, [&](std::int64_t r) {
        float* yr = yp + r * C;
        const float* zr = zp + r * ldz;
        std::int64_t c = 0;
        for (; c + Wv <= C; c += Wv) (B::load_unaligned(yr + c) * fn::Silu{}(B::load_unaligned(zr + c))).store_unaligned(yr + c);
        for (; c < C; ++c) yr[c] *= fn::Silu{}(zr[c]);
    }, C * 4);
}

}  // namespace vlmamba
