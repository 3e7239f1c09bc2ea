// Bicubic resampling with antialias of a (H, W, C) grid: torch's F.interpolate(x, size, mode="bicubic",
// antialias=True, align_corners=False) on float32, as timm's resample_abs_pos_embed calls it (channels are
// independent, so the (H, W, C) layout of a position embedding computes the same values as torch's NCHW).
//
// Semantics of aten/src/ATen/native/cpu/UpSampleKernel.cpp (separable_upsample_generic_Nd_kernel_impl with
// HelperInterpCubic, antialias on), in float as torch computes them for float tensors:
//   scale   = float(in) / out;  support = 2 · scale when scale >= 1 (downsampling widens the filter), else 2
//   output i: center = scale · (i + 0.5); taps xmin = max(int(center − support + 0.5), 0) up to
//             min(int(center + support + 0.5), in); weight_j = keys((j + xmin − center + 0.5) / max(scale, 1)),
//             keys = Keys' cubic with a = −0.5; weights normalised by their sum
//   the W pass runs first (into a float32 (H, W_out, C) buffer), then the H pass; each output sums its taps in order.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "vlmamba/core/tensor.hpp"

namespace vlmamba {

// x (H, W, C) f32 -> (out_h, out_w, C). A dimension of unchanged size is copied, as torch skips its pass.
Tensor resize_bicubic_antialias(const Tensor& x, std::int64_t out_h, std::int64_t out_w);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {

// UpSampleKernel.cpp: HelperInterpCubic::aa_filter with use_keys_cubic (a = -0.5), in float.
inline float keys_cubic(float x) {
    constexpr float a = -0.5f;
    x = std::abs(x);
    if (x < 1.f) return ((a + 2.f) * x - (a + 3.f)) * x * x + 1.f;  // cubic_convolution1
    if (x < 2.f) return ((a * x - 5.f * a) * x + 8.f * a) * x - 4.f * a;  // cubic_convolution2
    return 0.f;
}

// The taps of one output position along a dimension (_compute_indices_min_size_weights_aa).
struct AaTaps {
    std::int64_t first = 0;
    std::vector<float> w;
};

inline std::vector<AaTaps> aa_taps(std::int64_t in, std::int64_t out) {
    const float scale = float(in) / float(out);                          // area_pixel_compute_scale<float>
    const float support = scale >= 1.f ? float(2.0 * double(scale)) : 2.f;  // (interp_size · 0.5) · scale
    const auto max_taps = std::int64_t(std::ceil(support)) * 2 + 1;
    const float invscale = scale >= 1.f ? float(1.0 / double(scale)) : 1.f;
    std::vector<AaTaps> taps(static_cast<std::size_t>(out));
    for (std::int64_t i = 0; i < out; ++i) {
        const float center = float(double(scale) * (double(i) + 0.5));
        const std::int64_t xmin = std::max(std::int64_t(double(center - support) + 0.5), std::int64_t(0));
        std::int64_t xsize = std::min(std::int64_t(double(center + support) + 0.5), in) - xmin;
        xsize = std::clamp(xsize, std::int64_t(0), max_taps);
        AaTaps& t = taps[std::size_t(i)];
        t.first = xmin;
        float total = 0.f;
        for (std::int64_t j = 0; j < xsize; ++j) {
            // (j + xmin - center + 0.5) * invscale: int64 - float in float, then double, then the filter's float
            const float w = keys_cubic(float((double(float(j + xmin) - center) + 0.5) * double(invscale)));
            t.w.push_back(w);
            total += w;
        }
        if (total != 0.f)
            for (float& w : t.w) w /= total;
    }
    return taps;
}

// One pass along axis 0 or 1 of a contiguous (A, B, C) tensor.
inline Tensor aa_pass(const Tensor& x, int axis, std::int64_t out) {
    const std::int64_t A = x.size(0), B = x.size(1), C = x.size(2);
    const std::int64_t in = axis == 0 ? A : B;
    const std::vector<AaTaps> taps = aa_taps(in, out);
    Tensor y = Tensor::empty(axis == 0 ? Shape{out, B, C} : Shape{A, out, C});
    const float* src = x.data<float>();
    float* dst = y.data<float>();
    const std::int64_t step = axis == 0 ? B * C : C;  // elements between neighbouring taps
    const std::int64_t rows = axis == 0 ? B * C : C, outer = axis == 0 ? 1 : A;
    for (std::int64_t o = 0; o < outer; ++o)
        for (std::int64_t i = 0; i < out; ++i) {
            const AaTaps& t = taps[std::size_t(i)];
            const float* s0 = src + o * B * C + t.first * step;
            float* d = dst + (axis == 0 ? i * B * C : (o * out + i) * C);
            for (std::int64_t r = 0; r < rows; ++r) {
                float acc = s0[r] * t.w[0];  // interpolate_aa_single_dim: the first tap, then the rest in order
                for (std::size_t j = 1; j < t.w.size(); ++j) acc += s0[r + std::int64_t(j) * step] * t.w[j];
                d[r] = acc;
            }
        }
    return y;
}

}  // namespace detail

inline Tensor resize_bicubic_antialias(const Tensor& x, std::int64_t out_h, std::int64_t out_w) {
    VLM_CHECK(x.ndim() == 3 && x.size(0) >= 1 && x.size(1) >= 1, "resize_bicubic_antialias", "input has shape ",
              shape_str(x.shape()), ", expected (H, W, C)");
    VLM_CHECK(out_h >= 1 && out_w >= 1, "resize_bicubic_antialias", "expected an output size >= (1, 1), got (",
              out_h, ", ", out_w, ")");
    Tensor y = x.to(DType::F32);                                    // (H, W, C) contiguous
    if (out_w != y.size(1)) y = detail::aa_pass(y, 1, out_w);       // (H, W', C)   horizontal first, as torch
    if (out_h != y.size(0)) y = detail::aa_pass(y, 0, out_h);       // (H', W', C)
    return y.raw() == x.raw() ? y.clone() : y;  // a copy, never a view of x
}

}  // namespace vlmamba
