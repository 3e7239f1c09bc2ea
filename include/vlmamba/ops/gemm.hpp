// Matrix products on row-major views through Eigen maps: matmul (A·B), linear (x·Wᵀ + b), batched bmm.
// Non-f32 operands (bf16/f16 weights) are converted to f32 on the fly.
#pragma once
#include <Eigen/Core>
#include <bit>

#include "vlmamba/core/parallel.hpp"
#include "vlmamba/core/tensor.hpp"
#include "vlmamba/ops/functors.hpp"

namespace vlmamba {

Tensor matmul(const Tensor& a, const Tensor& b);                    // (M, K)·(K, N) -> (M, N); also (B, M, K)·(B, K, N)
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = {});  // (..., K)·(N, K)ᵀ + (N) -> (..., N)
void linear_into(Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias = {});  // y: (..., N) contiguous f32

namespace ref {
Tensor matmul(const Tensor& a, const Tensor& b);
}

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMap = Eigen::Map<const RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
using ColMap = Eigen::Map<const Eigen::MatrixXf, Eigen::Unaligned, Eigen::OuterStride<>>;
using OutMap = Eigen::Map<RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;

// Calls f with an Eigen expression of the 2-D f32 tensor t (a row- or column-major map, or a copy).
template <class F>
void with_matrix(const Tensor& t, F&& f) {
    if (t.dtype() == DType::F32 && t.stride(1) == 1 && t.stride(0) >= t.size(1)) {
        f(RowMap(t.data<float>(), t.size(0), t.size(1), Eigen::OuterStride<>(t.stride(0))));
    } else if (t.dtype() == DType::F32 && t.stride(0) == 1 && t.stride(1) >= t.size(0)) {
        f(ColMap(t.data<float>(), t.size(0), t.size(1), Eigen::OuterStride<>(t.stride(1))));
    } else {
        Tensor c = t.to(DType::F32);
        f(RowMap(c.data<float>(), c.size(0), c.size(1), Eigen::OuterStride<>(c.size(1))));
    }
}

// y (M, N) = x (M, K) · W (N, K)ᵀ for small M (decode): threads split the rows of W, each read once from memory.
// W is contiguous f32 or bf16 (converted in registers).
inline void gemv_rows(float* y, const float* x, std::int64_t M, std::int64_t ldx, const Tensor& w) {
    const std::int64_t N = w.size(0), K = w.size(1);
    using B = fn::batch;
    constexpr std::int64_t Wd = B::size;
    const bool bf16 = w.dtype() == DType::BF16;
    const float* wf = bf16 ? nullptr : w.data<float>();
    const std::uint16_t* wb = bf16 ? w.data<std::uint16_t>() : nullptr;
    constexpr std::int64_t kRowsPerTask = 16;
    parallel_for((N + kRowsPerTask - 1) / kRowsPerTask, [&](std::int64_t task) {
        const std::int64_t n1 = std::min(N, (task + 1) * kRowsPerTask);
        for (std::int64_t n = task * kRowsPerTask; n < n1; ++n) {
            for (std::int64_t m = 0; m < M; ++m) {
                const float* xr = x + m * ldx;
                B acc(0.f);
                std::int64_t k = 0;
                if (bf16) {
                    const std::uint16_t* wr = wb + n * K;
                    for (; k + Wd <= K; k += Wd) {
                        alignas(64) float wk[Wd];
                        for (std::int64_t i = 0; i < Wd; ++i) wk[i] = std::bit_cast<float>(std::uint32_t(wr[k + i]) << 16);
                        acc = xsimd::fma(B::load_aligned(wk), B::load_unaligned(xr + k), acc);
                    }
                    float s = xsimd::hadd(acc);
                    for (; k < K; ++k) s += bf16_to_f32(wr[k]) * xr[k];
                    y[m * N + n] = s;
                } else {
                    const float* wr = wf + n * K;
                    for (; k + Wd <= K; k += Wd) acc = xsimd::fma(B::load_unaligned(wr + k), B::load_unaligned(xr + k), acc);
                    float s = xsimd::hadd(acc);
                    for (; k < K; ++k) s += wr[k] * xr[k];
                    y[m * N + n] = s;
                }
            }
        }
    }, kRowsPerTask * K * M);
}

inline void matmul_2d(float* y, std::int64_t ldy, const Tensor& a, const Tensor& b) {
    OutMap out(y, a.size(0), b.size(1), Eigen::OuterStride<>(ldy));
    with_matrix(a, [&](const auto& A) { with_matrix(b, [&](const auto& B) { out.noalias() = A * B; }); });
}
}  // namespace detail

inline Tensor matmul(const Tensor& a, const Tensor& b) {
    if (a.ndim() == 3 && b.ndim() == 3) {
        VLM_CHECK(a.size(0) == b.size(0) && a.size(2) == b.size(1), "matmul",
                  "expected (B, M, K)·(B, K, N), got ", shape_str(a.shape()), "·", shape_str(b.shape()));
        Tensor y = Tensor::empty({a.size(0), a.size(1), b.size(2)});  // (B, M, N)
        for (std::int64_t i = 0; i < a.size(0); ++i)
            detail::matmul_2d(y.data<float>() + i * a.size(1) * b.size(2), b.size(2), a.select(0, i), b.select(0, i));
        return y;
    }
    VLM_CHECK(a.ndim() == 2 && b.ndim() == 2 && a.size(1) == b.size(0), "matmul",
              "expected (M, K)·(K, N), got ", shape_str(a.shape()), "·", shape_str(b.shape()));
    Tensor y = Tensor::empty({a.size(0), b.size(1)});  // (M, N)
    detail::matmul_2d(y.data<float>(), b.size(1), a, b);
    return y;
}

inline void linear_into(Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias) {
    VLM_CHECK(w.ndim() == 2 && x.ndim() >= 1 && x.shape().back() == w.size(1), "linear",
              "expected x (..., K) and weight (N, K), got x ", shape_str(x.shape()), " and weight ",
              shape_str(w.shape()));
    const std::int64_t K = w.size(1), N = w.size(0);
    Shape ys = x.shape();
    ys.back() = N;
    VLM_CHECK(y.shape() == ys && y.dtype() == DType::F32 && y.is_contiguous(), "linear",
              "expected output (contiguous F32) ", shape_str(ys), ", got ", shape_str(y.shape()));
    if (bias.defined())
        VLM_CHECK(bias.ndim() == 1 && bias.size(0) == N, "linear", "expected bias (", N, ",), got ",
                  shape_str(bias.shape()));
    const Tensor x2 = x.ndim() == 2 ? x : x.contiguous().reshape({-1, K});  // (M, K)
    const std::int64_t M = x2.size(0);
    if (M == 0 || N == 0) return;
    const bool rows_ok = (w.dtype() == DType::F32 || w.dtype() == DType::BF16) && w.is_contiguous();
    if (M <= 4 && rows_ok && x2.dtype() == DType::F32 && x2.stride(1) == 1)
        detail::gemv_rows(y.data<float>(), x2.data<float>(), M, x2.stride(0), w);
    else
        detail::matmul_2d(y.data<float>(), N, x2, w.transpose(0, 1));
    if (bias.defined()) {
        const Tensor b = bias.to(DType::F32);
        const float* bp = b.data<float>();
        float* yp = y.data<float>();
        parallel_for(M, [&](std::int64_t m) {
            for (std::int64_t n = 0; n < N; ++n) yp[m * N + n] += bp[n];
        }, N);
    }
}

inline Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
    VLM_CHECK(w.ndim() == 2 && x.ndim() >= 1, "linear", "expected x (..., K) and weight (N, K), got x ",
              shape_str(x.shape()), " and weight ", shape_str(w.shape()));
    Shape ys = x.shape();
    ys.back() = w.size(0);
    Tensor y = Tensor::empty(ys);  // (..., N)
    linear_into(y, x, w, bias);
    return y;
}

namespace ref {
inline Tensor matmul(const Tensor& a, const Tensor& b) {
    VLM_CHECK(a.ndim() == 2 && b.ndim() == 2 && a.size(1) == b.size(0), "ref::matmul",
              "expected (M, K)·(K, N), got ", shape_str(a.shape()), "·", shape_str(b.shape()));
    Tensor y = Tensor::empty({a.size(0), b.size(1)});
    for (std::int64_t i = 0; i < a.size(0); ++i)
        for (std::int64_t j = 0; j < b.size(1); ++j) {
            double acc = 0;
            for (std::int64_t k = 0; k < a.size(1); ++k) acc += double(a.at({i, k})) * b.at({k, j});
            y.data<float>()[i * b.size(1) + j] = float(acc);
        }
    return y;
}
}  // namespace ref

}  // namespace vlmamba
