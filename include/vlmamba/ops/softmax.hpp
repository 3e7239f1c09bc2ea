// Numerically stable softmax along the last axis.
#pragma once
#include <cmath>

#include "vlmamba/core/parallel.hpp"
#include "vlmamba/core/tensor.hpp"
#include "vlmamba/core/functors.hpp"

namespace vlmamba {

Tensor softmax(const Tensor& x);                    // (..., C) -> (..., C)
void softmax_rows(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld);  // in place, row stride ld

namespace ref {
Tensor softmax(const Tensor& x);
}

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline void softmax_rows(float* x, std::int64_t rows, std::int64_t cols, std::int64_t ld) {
    constexpr std::int64_t W = fn::batch::size;
    parallel_for(rows, [&](std::int64_t r) {
        float* row = x + r * ld;
        fn::batch vmax(-INFINITY);
        std::int64_t c = 0;
        for (; c + W <= cols; c += W) vmax = xsimd::max(vmax, fn::batch::load_unaligned(row + c));
        alignas(64) float lanes[W];
        vmax.store_aligned(lanes);
        float m = -INFINITY;
        for (float v : lanes) m = std::fmax(m, v);
        for (; c < cols; ++c) m = std::fmax(m, row[c]);
        fn::batch vsum(0.f), vm(m);
        c = 0;
        for (; c + W <= cols; c += W) {
            fn::batch e = xsimd::exp(fn::batch::load_unaligned(row + c) - vm);
            e.store_unaligned(row + c);
            vsum += e;
        }
        float s = xsimd::hadd(vsum);
        for (; c < cols; ++c) {
            row[c] = std::exp(row[c] - m);
            s += row[c];
        }
        const fn::batch inv(1.f / s);
        for (c = 0; c + W <= cols; c += W) (fn::batch::load_unaligned(row + c) * inv).store_unaligned(row + c);
        for (; c < cols; ++c) row[c] *= 1.f / s;
    }, cols * 8);
}

inline Tensor softmax(const Tensor& x) {
    VLM_CHECK(x.ndim() >= 1, "softmax", "expected rank >= 1, got shape ", shape_str(x.shape()));
    Tensor y = x.to(DType::F32).clone();  // (..., C)
    const std::int64_t C = x.shape().back();
    if (C) softmax_rows(y.data<float>(), y.numel() / C, C, C);
    return y;
}

namespace ref {
inline Tensor softmax(const Tensor& x) {
    const std::int64_t C = x.shape().back();
    Tensor flat = x.contiguous().reshape({-1, C});
    Tensor out = Tensor::empty(flat.shape());
    for (std::int64_t r = 0; r < flat.size(0); ++r) {
        double m = -INFINITY, s = 0;
        for (std::int64_t c = 0; c < C; ++c) m = std::fmax(m, double(flat.at({r, c})));
        for (std::int64_t c = 0; c < C; ++c) s += std::exp(double(flat.at({r, c})) - m);
        for (std::int64_t c = 0; c < C; ++c)
            out.data<float>()[r * C + c] = float(std::exp(double(flat.at({r, c})) - m) / s);
    }
    return out.reshape(x.shape());
}
}  // namespace ref

}  // namespace vlmamba
