// Multi-head self-attention without a mask (the ViT encoders'): for each head h,
//   out[:, h] = softmax(q_h · k_hᵀ · scale) · v_h
// (transformers modeling_clip.py / modeling_siglip.py: eager_attention_forward, no mask, no dropout).
// The CPU path splits the work into (head, query block) tiles spread over threads: per tile, Eigen GEMMs on strided
// views for q kᵀ and p v, an in-place exp between them, and the 1/Σ of the softmax applied to the (block, head_dim)
// output instead of the (block, N) probabilities. The CUDA path: two strided-batched cuBLAS products around a row
// softmax, over (heads, Nq, Nk) scores.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include <Eigen/Core>

#include "vlmamba/core/functors.hpp"
#include "vlmamba/core/parallel.hpp"
#include "vlmamba/core/tensor.hpp"
#include "vlmamba/cuda/api.hpp"
#include "vlmamba/ops/gemm.hpp"

namespace vlmamba {

// q: (Nq, C), k and v: (Nk, C), C = heads · head_dim; any row stride (e.g. column slices of one (N, 3C) qkv
// buffer). Returns the heads concatenated, (Nq, C) f32.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale);
// As attention(), into `out`: (Nq, C) f32 with unit column stride (any row stride).
void attention_into(Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale);

namespace ref {
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale);
}

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {
// Tile sizes. Eigen packs operands into a stack buffer up to 128 KiB and mallocs above it, and a malloc/free of that
// size per call can make glibc grow and trim the heap on every GEMM (measured: 5 instead of 95 GFLOP/s). Chunking
// the keys keeps every packed panel, (chunk × head_dim) and (block × chunk), under that limit.
inline constexpr std::int64_t kAttentionQueryBlock = 64;
inline std::int64_t attention_key_chunk(std::int64_t head_dim) {
    const std::int64_t c = 30720 / std::max(head_dim, kAttentionQueryBlock);
    return std::max<std::int64_t>(16, std::min<std::int64_t>(256, c / 16 * 16));
}

inline void check_attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads) {
    constexpr const char* op = "attention";
    VLM_CHECK(q.ndim() == 2 && k.ndim() == 2 && v.ndim() == 2, op, "expected q, k, v of rank 2 (N, C), got ",
              shape_str(q.shape()), ", ", shape_str(k.shape()), ", ", shape_str(v.shape()));
    const std::int64_t C = q.size(1);
    VLM_CHECK(k.size(1) == C && v.size(1) == C && k.size(0) == v.size(0), op,
              "expected q (Nq, C), k and v (Nk, C), got ", shape_str(q.shape()), ", ", shape_str(k.shape()), ", ",
              shape_str(v.shape()));
    VLM_CHECK(heads > 0 && C % heads == 0, op, "expected heads dividing C = ", C, ", got heads = ", heads);
    VLM_CHECK(k.size(0) > 0 || q.size(0) == 0, op, "expected at least one key, got k ", shape_str(k.shape()));
}

// f32 with unit column stride, as Eigen maps need; copies otherwise.
inline Tensor attention_operand(const Tensor& t) {
    return t.dtype() == DType::F32 && (t.stride(1) == 1 || t.size(1) <= 1) && t.stride(0) >= t.size(1)
               ? t
               : t.to(DType::F32);
}

// row[j] = exp(row[j] − max(row)); returns 1 / Σ row (the normalisation is applied to the output instead).
inline float exp_shifted_row(float* row, std::int64_t n) {
    using B = fn::batch;
    constexpr std::int64_t W = B::size;
    B vmax(-INFINITY);
    std::int64_t c = 0;
    for (; c + W <= n; c += W) vmax = xsimd::max(vmax, B::load_unaligned(row + c));
    alignas(64) float lanes[W];
    vmax.store_aligned(lanes);
    float m = -INFINITY;
    for (std::int64_t i = 0; i < W; ++i) m = std::fmax(m, lanes[i]);
    for (; c < n; ++c) m = std::fmax(m, row[c]);
    const B bm(m);
    B vsum(0.f);
    for (c = 0; c + W <= n; c += W) {
        const B e = xsimd::exp(B::load_unaligned(row + c) - bm);
        e.store_unaligned(row + c);
        vsum += e;
    }
    float s = xsimd::hadd(vsum);
    for (; c < n; ++c) s += (row[c] = std::exp(row[c] - m));
    return 1.f / s;
}
}  // namespace detail

namespace detail {
inline void attention_cuda(Tensor& out, const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, int heads,
                           float scale) {
    auto rows = [](const Tensor& t) { return t.dtype() == DType::F32 && t.stride(1) == 1 ? t : t.contiguous().to(DType::F32); };
    const Tensor q = rows(q_in), k = rows(k_in), v = rows(v_in);
    const int Nq = int(q.size(0)), Nk = int(k.size(0)), C = int(q.size(1)), D = C / heads;
    const bool tf32 = cuda_tf32();
    Tensor scores = Tensor::empty({heads, Nq, Nk}, DType::F32, Device::Cuda);  // (H, Nq, Nk)
    // scores[h] = q_h k_hᵀ, q_h and k_h the head's D columns
    cuda::gemm_batched({Nq, Nk, D, q.raw(), k.raw(), scores.raw(), DType::F32, DType::F32, tf32, 1.0f, 0.0f,
                        int(q.stride(0)), int(k.stride(0)), Nk},
                       {heads, D, D, std::int64_t(Nq) * Nk, true});
    cuda::softmax_rows(scores.data<float>(), std::int64_t(heads) * Nq, Nk, scale);
    // out[:, h] = p_h v_h
    cuda::gemm_batched({Nq, D, Nk, scores.raw(), v.raw(), out.raw(), DType::F32, DType::F32, tf32, 1.0f, 0.0f, Nk,
                        int(v.stride(0)), int(out.stride(0))},
                       {heads, std::int64_t(Nq) * Nk, D, D, false});
}
}  // namespace detail

inline void attention_into(Tensor& out, const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, int heads,
                           float scale) {
    detail::check_attention(q_in, k_in, v_in, heads);
    const std::int64_t Nq = q_in.size(0), Nk = k_in.size(0), C = q_in.size(1), D = C / heads;
    VLM_CHECK(out.shape() == q_in.shape() && out.dtype() == DType::F32 && (out.stride(1) == 1 || C <= 1),
              "attention", "expected an F32 output ", shape_str(q_in.shape()), " with unit column stride, got ",
              dtype_name(out.dtype()), " ", shape_str(out.shape()), " strides ", shape_str(out.strides()));
    if (Nq == 0 || C == 0) return;
    if (same_device("attention", out, q_in, k_in, v_in) == Device::Cuda)
        return detail::attention_cuda(out, q_in, k_in, v_in, heads, scale);
    const Tensor q = detail::attention_operand(q_in), k = detail::attention_operand(k_in),
                 v = detail::attention_operand(v_in);
    using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using CMap = Eigen::Map<const RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
    using MMap = Eigen::Map<RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
    const std::int64_t Bq = detail::kAttentionQueryBlock, nblk = (Nq + Bq - 1) / Bq;
    const std::int64_t KC = detail::attention_key_chunk(D);
    const float* qp = q.data<float>();
    const float* kp = k.data<float>();
    const float* vp = v.data<float>();
    float* op = out.data<float>();
    const std::int64_t ldq = q.stride(0), ldk = k.stride(0), ldv = v.stride(0), ldo = out.stride(0);
    // One tile = one head × one block of queries.
    parallel_for(heads * nblk, [&](std::int64_t task) {
        thread_local std::vector<float> scores, inv_sum;
        const std::int64_t h = task / nblk, r0 = (task % nblk) * Bq, b = std::min(Bq, Nq - r0);
        if (std::int64_t(scores.size()) < b * Nk) scores.resize(std::size_t(b * Nk));
        if (std::int64_t(inv_sum.size()) < b) inv_sum.resize(std::size_t(b));
        CMap qh(qp + r0 * ldq + h * D, b, D, Eigen::OuterStride<>(ldq));           // (b, D)
        MMap o(op + r0 * ldo + h * D, b, D, Eigen::OuterStride<>(ldo));            // (b, D) inside (Nq, C)
        for (std::int64_t j0 = 0; j0 < Nk; j0 += KC) {                             // s = q kᵀ · scale
            const std::int64_t n = std::min(KC, Nk - j0);
            CMap kh(kp + j0 * ldk + h * D, n, D, Eigen::OuterStride<>(ldk));       // (n, D)
            MMap s(scores.data() + j0, b, n, Eigen::OuterStride<>(Nk));           // (b, n)
            s.noalias() = scale * (qh * kh.transpose());
        }
        for (std::int64_t i = 0; i < b; ++i) inv_sum[i] = detail::exp_shifted_row(scores.data() + i * Nk, Nk);
        for (std::int64_t j0 = 0; j0 < Nk; j0 += KC) {                             // o = exp(s) v
            const std::int64_t n = std::min(KC, Nk - j0);
            CMap p(scores.data() + j0, b, n, Eigen::OuterStride<>(Nk));           // (b, n)
            CMap vh(vp + j0 * ldv + h * D, n, D, Eigen::OuterStride<>(ldv));       // (n, D)
            if (j0 == 0) o.noalias() = p * vh;
            else o.noalias() += p * vh;
        }
        for (std::int64_t i = 0; i < b; ++i) o.row(i) *= inv_sum[i];              // softmax normalisation
    }, 4 * Bq * Nk * D);
}

inline Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale) {
    detail::check_attention(q, k, v, heads);
    Tensor out = Tensor::empty({q.size(0), q.size(1)}, DType::F32, q.device());  // (Nq, C)
    attention_into(out, q, k, v, heads, scale);
    return out;
}

namespace ref {
inline Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale) {
    detail::check_attention(q, k, v, heads);
    const std::int64_t Nq = q.size(0), Nk = k.size(0), C = q.size(1), D = C / heads;
    Tensor out = Tensor::zeros({Nq, C});  // (Nq, C)
    std::vector<double> p(static_cast<std::size_t>(Nk));
    for (int h = 0; h < heads; ++h)
        for (std::int64_t i = 0; i < Nq; ++i) {
            double m = -INFINITY, sum = 0;
            for (std::int64_t j = 0; j < Nk; ++j) {
                double dot = 0;
                for (std::int64_t d = 0; d < D; ++d) dot += double(q.at({i, h * D + d})) * k.at({j, h * D + d});
                p[j] = dot * scale;
                m = std::fmax(m, p[j]);
            }
            for (std::int64_t j = 0; j < Nk; ++j) sum += (p[j] = std::exp(p[j] - m));
            for (std::int64_t d = 0; d < D; ++d) {
                double acc = 0;
                for (std::int64_t j = 0; j < Nk; ++j) acc += p[j] * v.at({j, h * D + d});
                out.data<float>()[i * C + h * D + d] = float(acc / sum);
            }
        }
    return out;
}
}  // namespace ref

}  // namespace vlmamba
