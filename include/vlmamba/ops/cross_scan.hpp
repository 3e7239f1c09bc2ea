// 2-D cross-scan and cross-merge (VMamba CrossScan / CrossMerge, SPEC §2.3 steps 3 and 5): an H×W token grid,
// stored row-major as (L, C) with L = H·W, unfolds into K sequences, one copy per direction, and K sequence
// outputs sum back onto the grid. The directions come from a scan policy type (layers/scan_policies.hpp).
#pragma once
#include <algorithm>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "vlmamba/core/parallel.hpp"
#include "vlmamba/core/tensor.hpp"
#include "vlmamba/cuda/api.hpp"
#include "vlmamba/core/functors.hpp"

namespace vlmamba {

// ---------------------------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------------------------

// A scan policy: K directions, a name, and the grid position of each sequence position. grid_index(k, t, H, W)
// returns the row-major index p = h·W + w that direction k visits at step t; for each k it must be a bijection of
// [0, H·W) (scan_order checks this).
template <class P>
concept ScanPolicy = requires(int k, std::int64_t t, std::int64_t H, std::int64_t W) {
    typename std::integral_constant<int, P::K>;  // K is a compile-time constant
    { P::name } -> std::convertible_to<std::string_view>;
    { P::grid_index(k, t, H, W) } -> std::convertible_to<std::int64_t>;
} && (P::K >= 1);

// A policy evaluated on one grid: both directions of the permutation, per scan direction.
struct ScanOrder {
    std::string name;
    int K = 0;
    std::int64_t H = 0, W = 0;
    std::vector<std::int64_t> grid;  // (K, L): grid index visited by direction k at step t
    std::vector<std::int64_t> seq;   // (K, L): step at which direction k visits grid index p

    std::int64_t length() const { return H * W; }
    const std::int64_t* to_grid(int k) const { return grid.data() + k * length(); }
    const std::int64_t* to_seq(int k) const { return seq.data() + k * length(); }
};

// Evaluates policy P on an H×W grid; throws if a direction is not a permutation of the grid.
template <ScanPolicy P>
ScanOrder scan_order(std::int64_t H, std::int64_t W);

// Unfolds x (L, C) (f32, unit column stride, any row stride) into the K direction sequences.
Tensor cross_scan(const Tensor& x, const ScanOrder& order);    // (L, C) -> (K, L, C)
// Sums the K direction outputs (each in its own sequence order) back at their grid positions.
Tensor cross_merge(const Tensor& ys, const ScanOrder& order);  // (K, L, C) -> (L, C)

// Direction k takes column block k of src (L, K·Q): out[k, t] = src[grid(k, t), k·Q : (k+1)·Q] (a row-wise
// projection of all K directions run once on the grid, then unfolded).
Tensor cross_scan_blocks(const Tensor& src, const ScanOrder& order);  // (L, K·Q) -> (K, L, Q)

// Row gather for one direction: dst[t, :C] = src[grid(k, t), :C]. Row strides in elements. Used to unfold a
// column block of a wider matrix (e.g. one direction's part of a stacked projection).
void cross_scan_rows(float* dst, std::int64_t ld_dst, const float* src, std::int64_t ld_src, std::int64_t C,
                     const ScanOrder& order, int k);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

template <ScanPolicy P>
ScanOrder scan_order(std::int64_t H, std::int64_t W) {
    constexpr const char* op = "cross_scan";
    VLM_CHECK(H >= 1 && W >= 1, op, "expected a grid of at least 1×1, got (", H, ", ", W, ")");
    ScanOrder o;
    o.name = std::string(std::string_view(P::name));
    o.K = P::K;
    o.H = H;
    o.W = W;
    const std::int64_t L = H * W;
    o.grid.resize(std::size_t(P::K * L));
    o.seq.assign(std::size_t(P::K * L), -1);
    for (int k = 0; k < P::K; ++k) {
        std::int64_t* g = o.grid.data() + k * L;
        std::int64_t* s = o.seq.data() + k * L;
        for (std::int64_t t = 0; t < L; ++t) {
            const std::int64_t p = std::int64_t(P::grid_index(k, t, H, W));
            VLM_CHECK(p >= 0 && p < L, op, "policy '", o.name, "' direction ", k, " maps step ", t,
                      " to grid index ", p, ", expected [0, ", L, ") for grid (", H, ", ", W, ")");
            VLM_CHECK(s[p] < 0, op, "policy '", o.name, "' direction ", k, " visits grid index ", p, " twice (steps ",
                      s[p], " and ", t, "), expected a permutation of the grid (", H, ", ", W, ")");
            g[t] = p;
            s[p] = t;
        }
    }
    return o;
}

inline void cross_scan_rows(float* dst, std::int64_t ld_dst, const float* src, std::int64_t ld_src, std::int64_t C,
                            const ScanOrder& order, int k) {
    const std::int64_t* g = order.to_grid(k);
    parallel_for(order.length(), [&](std::int64_t t) {
        std::memcpy(dst + t * ld_dst, src + g[t] * ld_src, std::size_t(C) * sizeof(float));
    }, C);
}

namespace detail {
// The order's (K, L) index table on the device.
inline Tensor device_index(const std::vector<std::int64_t>& v) {
    Tensor t = Tensor::empty({std::int64_t(v.size())}, DType::I64);
    std::copy(v.begin(), v.end(), t.data<std::int64_t>());
    return t.to(Device::Cuda);
}
}  // namespace detail

inline Tensor cross_scan(const Tensor& x, const ScanOrder& order) {
    constexpr const char* op = "cross_scan";
    const std::int64_t L = order.length();
    VLM_CHECK(x.ndim() == 2 && x.size(0) == L, op, "x has shape ", shape_str(x.shape()), ", expected (H·W, C) with H·W = ",
              L, " for grid (", order.H, ", ", order.W, ")");
    const Tensor xc = x.dtype() == DType::F32 && x.stride(1) == 1 ? x : x.contiguous().to(DType::F32);
    const std::int64_t C = xc.size(1);
    Tensor out = Tensor::empty({order.K, L, C}, DType::F32, x.device());  // (K, L, C)
    if (x.is_cuda()) {  // all K directions in one gather: out row k·L + t = x row grid[k·L + t]
        const Tensor idx = detail::device_index(order.grid);
        cuda::gather_rows(out.data<float>(), C, xc.data<float>(), xc.stride(0), idx.data<std::int64_t>(), order.K * L,
                          int(C));
        return out;
    }
    for (int k = 0; k < order.K; ++k)
        cross_scan_rows(out.data<float>() + k * L * C, C, xc.data<float>(), xc.stride(0), C, order, k);
    return out;
}

inline Tensor cross_scan_blocks(const Tensor& src, const ScanOrder& order) {
    const std::int64_t L = order.length(), K = order.K;
    VLM_CHECK(src.ndim() == 2 && src.size(0) == L && src.size(1) % K == 0 && src.dtype() == DType::F32 &&
                  src.stride(1) == 1,
              "cross_scan", "expected f32 (H·W, K·Q) with H·W = ", L, " and K = ", K, ", got ",
              shape_str(src.shape()));
    const std::int64_t Q = src.size(1) / K;
    Tensor out = Tensor::empty({K, L, Q}, DType::F32, src.device());  // (K, L, Q)
    const Tensor idx = src.is_cuda() ? detail::device_index(order.grid) : Tensor();
    for (int k = 0; k < K; ++k) {
        float* dst = out.data<float>() + k * L * Q;
        const float* from = src.data<float>() + k * Q;
        if (src.is_cuda())
            cuda::gather_rows(dst, Q, from, src.stride(0), idx.data<std::int64_t>() + k * L, L, int(Q));
        else
            cross_scan_rows(dst, Q, from, src.stride(0), Q, order, k);
    }
    return out;
}

inline Tensor cross_merge(const Tensor& ys, const ScanOrder& order) {
    constexpr const char* op = "cross_merge";
    const std::int64_t L = order.length();
    VLM_CHECK(ys.ndim() == 3 && ys.size(0) == order.K && ys.size(1) == L, op, "ys has shape ",
              shape_str(ys.shape()), ", expected (K, H·W, C) with K = ", order.K, ", H·W = ", L);
    const Tensor yc = ys.to(DType::F32);  // contiguous
    const std::int64_t C = yc.size(2);
    if (ys.is_cuda()) {
        Tensor out = Tensor::empty({L, C}, DType::F32, Device::Cuda);  // (L, C)
        const Tensor seq = detail::device_index(order.seq);
        cuda::merge_rows(out.data<float>(), yc.data<float>(), seq.data<std::int64_t>(), order.K, L, int(C));
        return out;
    }
    Tensor out = Tensor::empty({L, C});  // (L, C)
    const float* yp = yc.data<float>();
    float* op_ = out.data<float>();
    using B = fn::batch;
    constexpr std::int64_t Wv = B::size;
    parallel_for(L, [&](std::int64_t p) {
        // CrossMerge: each direction's step that visited p contributes its row.
        float* o = op_ + p * C;
        std::memcpy(o, yp + order.to_seq(0)[p] * C, std::size_t(C) * sizeof(float));
        for (int k = 1; k < order.K; ++k) {
            const float* r = yp + (k * L + order.to_seq(k)[p]) * C;
            std::int64_t c = 0;
            for (; c + Wv <= C; c += Wv) (B::load_unaligned(o + c) + B::load_unaligned(r + c)).store_unaligned(o + c);
            for (; c < C; ++c) o[c] += r[c];
        }
    }, C * order.K);
    return out;
}

}  // namespace vlmamba
