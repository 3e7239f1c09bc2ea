// Reductions along the last axis: sum, mean, max. Inputs of any float dtype and strides.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>

#include "vlmamba/core/parallel.hpp"
#include "vlmamba/core/tensor.hpp"

namespace vlmamba {

Tensor sum(const Tensor& x);   // (..., C) -> (...)
Tensor mean(const Tensor& x);  // (..., C) -> (...)
Tensor max(const Tensor& x);   // (..., C) -> (...)

namespace ref {
Tensor sum(const Tensor& x);
}

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {
template <class F>
Tensor reduce_last(const char* op, const Tensor& x, float init, F&& f, bool mean) {
    VLM_CHECK(x.ndim() >= 1, op, "expected a tensor of rank >= 1, got shape ", shape_str(x.shape()));
    const Tensor xc = x.to(DType::F32);  // (..., C)
    const std::int64_t C = x.shape().back(), R = C ? x.numel() / C : 0;
    Shape os(x.shape().begin(), x.shape().end() - 1);
    Tensor out = Tensor::empty(os);  // (...)
    const float* in = xc.data<float>();
    float* o = out.data<float>();
    if (C == 0) std::fill_n(o, out.numel(), init);
    parallel_for(R, [&](std::int64_t r) {
        const float* row = in + r * C;
        float acc = init;
        for (std::int64_t c = 0; c < C; ++c) acc = f(acc, row[c]);
        o[r] = mean ? acc / float(C) : acc;
    }, C);
    return out;
}
}  // namespace detail

inline Tensor sum(const Tensor& x) {
    return detail::reduce_last("sum", x, 0.f, [](float a, float b) { return a + b; }, false);
}
inline Tensor mean(const Tensor& x) {
    return detail::reduce_last("mean", x, 0.f, [](float a, float b) { return a + b; }, true);
}
inline Tensor max(const Tensor& x) {
    return detail::reduce_last("max", x, -std::numeric_limits<float>::infinity(),
                               [](float a, float b) { return std::fmax(a, b); }, false);
}

namespace ref {
inline Tensor sum(const Tensor& x) {
    const std::int64_t C = x.shape().back();
    Shape os(x.shape().begin(), x.shape().end() - 1);
    Tensor out = Tensor::zeros(os);
    Tensor flat = x.contiguous().reshape({-1, C});
    for (std::int64_t r = 0; r < flat.size(0); ++r) {
        double acc = 0;
        for (std::int64_t c = 0; c < C; ++c) acc += flat.at({r, c});
        out.data<float>()[r] = float(acc);
    }
    return out;
}
}  // namespace ref

}  // namespace vlmamba
