// Matrix products on row-major views through Eigen maps: matmul (A·B), linear (x·Wᵀ + b), batched bmm.
// bf16/f16 weights are widened in registers (decode: gemv) or a panel at a time (prompts), never as a whole matrix.
// On CUDA, linear runs through cuBLAS (f32, tf32 when allowed, or bf16 weights with bf16-rounded activations).
#pragma once
#include <Eigen/Core>
#include <atomic>
#include <vector>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "vlmamba/core/functors.hpp"
#include "vlmamba/core/parallel.hpp"
#include "vlmamba/core/tensor.hpp"
#include "vlmamba/cuda/api.hpp"

namespace vlmamba {

Tensor matmul(const Tensor& a, const Tensor& b);                    // (M, K)·(K, N) -> (M, N); also (B, M, K)·(B, K, N)
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = {});  // (..., K)·(N, K)ᵀ + (N) -> (..., N)
void linear_into(Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias = {});  // y: (..., N) contiguous f32

// CUDA f32 products on tf32 tensor cores (off by default, as torch.backends.cuda.matmul.allow_tf32).
void set_cuda_tf32(bool on);
bool cuda_tf32();

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

// Rows of x up to which linear() reads each weight row once for all of them (gemv); beyond, a GEMM.
constexpr std::int64_t kGemvMaxRows = 16;

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

#if defined(__F16C__)
constexpr bool kHasF16C = true;
#else
constexpr bool kHasF16C = false;
#endif

// Widens B::size bf16 or f16 values at p to an f32 batch: AVX-512 or AVX2 (+F16C) in registers, else one by one.
template <DType T>
inline fn::batch widen(const std::uint16_t* p) {
    using B = fn::batch;
#if defined(__AVX512F__)
    if constexpr (B::size == 16) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        if constexpr (T == DType::BF16) return B(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
        else return B(_mm512_cvtph_ps(h));
    }
#endif
#if defined(__AVX2__)
    if constexpr (B::size == 8 && (T == DType::BF16 || kHasF16C)) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        if constexpr (T == DType::BF16) return B(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
#if defined(__F16C__)
        else return B(_mm256_cvtph_ps(h));
#endif
    }
#endif
    alignas(64) float f[B::size];
    for (std::size_t i = 0; i < B::size; ++i) f[i] = T == DType::BF16 ? bf16_to_f32(p[i]) : f16_to_f32(p[i]);
    return B::load_aligned(f);
}

// Weight rows in their stored dtype: widen(k) gives a batch of row elements from k, at(k) one element.
template <DType T>
struct HalfRow {
    const std::uint16_t* r;
    fn::batch widen(std::int64_t k) const { return detail::widen<T>(r + k); }
    float at(std::int64_t k) const { return T == DType::BF16 ? bf16_to_f32(r[k]) : f16_to_f32(r[k]); }
};
struct F32Row {
    const float* r;
    fn::batch widen(std::int64_t k) const { return fn::batch::load_unaligned(r + k); }
    float at(std::int64_t k) const { return r[k]; }
};

// y[m, n] = x[m] · row for MB rows of x: the row is widened once per k step and used MB times.
template <int MB, class Row>
inline void dot_rows(float* y, std::int64_t ldy, const float* x, std::int64_t ldx, const Row& row, std::int64_t K) {
    using B = fn::batch;
    constexpr std::int64_t Wd = B::size;
    B acc[MB];
    for (int j = 0; j < MB; ++j) acc[j] = B(0.f);
    std::int64_t k = 0;
    for (; k + Wd <= K; k += Wd) {
        const B w = row.widen(k);
        for (int j = 0; j < MB; ++j) acc[j] = xsimd::fma(w, B::load_unaligned(x + j * ldx + k), acc[j]);
    }
    for (int j = 0; j < MB; ++j) {
        float s = xsimd::hadd(acc[j]);
        for (std::int64_t kk = k; kk < K; ++kk) s += row.at(kk) * x[j * ldx + kk];
        y[j * ldy] = s;
    }
}

// y (M, N) = x (M, K) · W (N, K)ᵀ for small M (decode, short prompts): threads split the rows of W, each row read
// from memory once for all M rows of x. W is contiguous f32, bf16 or f16 (widened in registers).
template <class MakeRow>
inline void gemv_rows_as(float* y, const float* x, std::int64_t M, std::int64_t ldx, std::int64_t N, std::int64_t K,
                         MakeRow make_row) {
    constexpr std::int64_t kRowsPerTask = 16;
    parallel_for((N + kRowsPerTask - 1) / kRowsPerTask, [&](std::int64_t task) {
        const std::int64_t n1 = std::min(N, (task + 1) * kRowsPerTask);
        for (std::int64_t n = task * kRowsPerTask; n < n1; ++n) {
            const auto row = make_row(n);
            std::int64_t m = 0;
            for (; m + 4 <= M; m += 4) dot_rows<4>(y + m * N + n, N, x + m * ldx, ldx, row, K);
            switch (M - m) {
                case 3: dot_rows<3>(y + m * N + n, N, x + m * ldx, ldx, row, K); break;
                case 2: dot_rows<2>(y + m * N + n, N, x + m * ldx, ldx, row, K); break;
                case 1: dot_rows<1>(y + m * N + n, N, x + m * ldx, ldx, row, K); break;
                default: break;
            }
        }
    }, kRowsPerTask * K * M);
}

inline void gemv_rows(float* y, const float* x, std::int64_t M, std::int64_t ldx, const Tensor& w) {
    const std::int64_t N = w.size(0), K = w.size(1);
    const auto* h = w.data<std::uint16_t>();
    switch (w.dtype()) {
        case DType::BF16: return gemv_rows_as(y, x, M, ldx, N, K, [&](std::int64_t n) { return HalfRow<DType::BF16>{h + n * K}; });
        case DType::F16: return gemv_rows_as(y, x, M, ldx, N, K, [&](std::int64_t n) { return HalfRow<DType::F16>{h + n * K}; });
        default: return gemv_rows_as(y, x, M, ldx, N, K, [&](std::int64_t n) { return F32Row{w.data<float>() + n * K}; });
    }
}

// y (M, N) = x (M, K) · W (N, K)ᵀ for bf16/f16 W and many rows of x (prompts): threads take panels of kPanel rows
// of W, widen each panel once into an f32 buffer of their own and multiply it with Eigen (serial inside the
// region). Never widens the whole matrix.
template <DType T>
inline void gemm_half_panels(float* y, const float* x, std::int64_t M, std::int64_t ldx, const std::uint16_t* w,
                             std::int64_t N, std::int64_t K) {
    constexpr std::int64_t kPanel = 128;
    using B = fn::batch;
    constexpr std::int64_t Wd = B::size;
    const RowMap X(x, M, K, Eigen::OuterStride<>(ldx));  // (M, K)
    parallel_for((N + kPanel - 1) / kPanel, [&](std::int64_t p) {
        thread_local std::vector<float> panel;
        const std::int64_t n0 = p * kPanel, nb = std::min(kPanel, N - n0);
        panel.resize(std::size_t(nb * K));
        for (std::int64_t n = 0; n < nb; ++n) {
            const HalfRow<T> row{w + (n0 + n) * K};
            float* dst = panel.data() + n * K;
            std::int64_t k = 0;
            for (; k + Wd <= K; k += Wd) row.widen(k).store_unaligned(dst + k);
            for (; k < K; ++k) dst[k] = row.at(k);
        }
        const RowMap P(panel.data(), nb, K, Eigen::OuterStride<>(K));  // (nb, K) f32
        OutMap out(y + n0, M, nb, Eigen::OuterStride<>(N));            // (M, nb) inside (M, N)
        out.noalias() = X * P.transpose();
    }, kPanel * K * M);
}

inline std::atomic<bool>& cuda_tf32_flag() {
    static std::atomic<bool> on{false};
    return on;
}

// y (M, N) contiguous f32 = x2 (M, K) · wᵀ (+ bias) on the GPU; x2 rows contiguous.
inline void linear_cuda(Tensor& y, const Tensor& x2, const Tensor& w, const Tensor& bias) {
    constexpr const char* op = "linear";
    same_device(op, y, x2, w, bias);
    const std::int64_t M = x2.size(0), K = x2.size(1), N = w.size(0);
    VLM_CHECK(w.is_contiguous() && (w.dtype() == DType::F32 || w.dtype() == DType::BF16), op,
              "on cuda, expected a contiguous F32 or BF16 weight, got ", dtype_name(w.dtype()), " strides ",
              shape_str(w.strides()));
    Tensor x = x2.stride(1) == 1 && x2.stride(0) >= K ? x2 : x2.contiguous();
    if (x.dtype() != w.dtype()) x = x.to(w.dtype());  // bf16 weights multiply bf16-rounded activations
    cuda::GemmArgs g{int(M), int(N), int(K), x.raw(), w.raw(), y.raw(), w.dtype(), DType::F32,
                     cuda_tf32_flag().load(), 1.0f, 0.0f, int(x.stride(0)), 0, 0};
    cuda::gemm(g);
    if (bias.defined()) {
        const Tensor b = bias.to(DType::F32);
        cuda::bias_act(y.data<float>(), b.data<float>(), M, int(N), cuda::Activation::None);
    }
}

inline void matmul_2d(float* y, std::int64_t ldy, const Tensor& a, const Tensor& b) {
    OutMap out(y, a.size(0), b.size(1), Eigen::OuterStride<>(ldy));
    const ScopedOmpThreads team;  // Eigen sizes its team from this thread's OpenMP setting: a lease of the budget
    with_matrix(a, [&](const auto& A) { with_matrix(b, [&](const auto& B) { out.noalias() = A * B; }); });
}
}  // namespace detail

inline Tensor matmul(const Tensor& a, const Tensor& b) {
    require_cpu("matmul", a);
    require_cpu("matmul", b);
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
    if (same_device("linear", x2, y, w, bias) == Device::Cuda) return detail::linear_cuda(y, x2, w, bias);
    const bool half = w.dtype() == DType::BF16 || w.dtype() == DType::F16;
    const bool direct = (half || w.dtype() == DType::F32) && w.is_contiguous() && x2.dtype() == DType::F32 &&
                        x2.stride(1) == 1 && x2.stride(0) >= K;
    if (direct && M <= detail::kGemvMaxRows)
        detail::gemv_rows(y.data<float>(), x2.data<float>(), M, x2.stride(0), w);
    else if (direct && w.dtype() == DType::BF16)
        detail::gemm_half_panels<DType::BF16>(y.data<float>(), x2.data<float>(), M, x2.stride(0),
                                             w.data<std::uint16_t>(), N, K);
    else if (direct && w.dtype() == DType::F16)
        detail::gemm_half_panels<DType::F16>(y.data<float>(), x2.data<float>(), M, x2.stride(0),
                                            w.data<std::uint16_t>(), N, K);
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
    Tensor y = Tensor::empty(ys, DType::F32, x.device());  // (..., N)
    linear_into(y, x, w, bias);
    return y;
}

inline void set_cuda_tf32(bool on) { detail::cuda_tf32_flag() = on; }
inline bool cuda_tf32() { return detail::cuda_tf32_flag().load(); }

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
