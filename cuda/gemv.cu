// Small-batch products y (m, n) = x (m, k) · Wᵀ for decode (m <= 8), with W (n, k) in f32 or bf16 and x, y in f32:
// weight-read bound, so each weight byte is read once with 16-byte streaming loads (no L1 allocation) while x
// comes through L1. A warp owns RPW rows and a slice of k; KW warps split k when there are few rows; warp shuffles
// and then shared memory add the partial dot products. Optionally the x rows are RMS-normalised on the fly (each
// block forms the row norms itself) and the result is added to y: the pre-norm and the residual add of a block.
// Launched with launch_pdl: the first weights go to L2 before the wait for the previous kernel.
// Also the read probe: a device read of a buffer, the floor that decode is measured against.
#include "pack.cuh"
#include "vlmamba/cuda/api.hpp"
#include "tuning.hpp"
#include "vlmamba/cuda/decode.hpp"

namespace vlmamba::cuda {
namespace detail {

constexpr int gemv_warps = 8;

// Writes y[m][r] (or adds it), then the fused conv update of channel r when asked (GemvArgs::conv_state).
__device__ __forceinline__ void gemv_store(const GemvArgs& a, int m, int r, float v, std::int64_t ldy) {
    float* py = a.y + m * ldy + r;
    *py = a.accumulate ? *py + v : v;
    if (a.conv_state && r < a.conv_e) {
        const int K = a.conv_k;
        float* st = a.conv_state + (std::int64_t(m) * a.conv_e + r) * K;
        const float* w = a.conv_w + std::int64_t(r) * K;
        float acc = a.conv_bias ? a.conv_bias[r] : 0.0f;
        for (int j = 0; j < K - 1; ++j) {
            st[j] = st[j + 1];
            acc = fmaf(st[j], w[j], acc);
        }
        st[K - 1] = *py;
        acc = fmaf(*py, w[K - 1], acc);
        a.conv_y[std::int64_t(m) * a.conv_e + r] = silu(acc);
    }
}

// VEC: rows of W and x start on 16-byte boundaries and k is a multiple of the vector width.
template <class W, int M, int RPW, bool VEC, int UNR>
__global__ void __launch_bounds__(gemv_warps * 32) gemv_kernel(GemvArgs a, int KW) {
    constexpr int VW = VEC ? 16 / int(sizeof(W)) : 1;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int groups = gemv_warps / KW;
    const int gi = warp / KW, kw = warp % KW;
    const int row0 = (blockIdx.x * groups + gi) * RPW;
    const std::int64_t ldx = a.ldx ? a.ldx : a.k, ldy = a.ldy ? a.ldy : a.n;
    const W* __restrict__ w = static_cast<const W*>(a.w);
    const float* __restrict__ x = a.x;

    float acc[RPW][M];
#pragma unroll
    for (int i = 0; i < RPW; ++i)
#pragma unroll
        for (int m = 0; m < M; ++m) acc[i][m] = 0.0f;
    bool rok[RPW];
#pragma unroll
    for (int i = 0; i < RPW; ++i) rok[i] = row0 + i < a.n;
    const int nvec = a.k / VW;

    // before the wait (launch_pdl): this thread's first weights into L2, while the previous kernel finishes
    // (2 vectors per row measured as good as 0, 4 or all: PDL's gain is the launch overlap, not this)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
        const int v = kw * 32 + lane + j * 32 * KW;
#pragma unroll
        for (int i = 0; i < RPW; ++i)
            if (rok[i] && v < nvec) prefetch_l2(w + std::int64_t(row0 + i) * a.k + std::int64_t(v) * VW);
    }
    pdl_wait();
    pdl_trigger();

    // the fused RMSNorm: 1 / rms of each x row, from the whole row, in every block
    const float* __restrict__ nw = a.norm_w;
    float inv[M];
#pragma unroll
    for (int m = 0; m < M; ++m) inv[m] = 1.0f;
    if (nw) {
        __shared__ float red[gemv_warps][M];
        float ss[M];
#pragma unroll
        for (int m = 0; m < M; ++m) ss[m] = 0.0f;
        for (int i = threadIdx.x; i < a.k; i += gemv_warps * 32)
#pragma unroll
            for (int m = 0; m < M; ++m) {
                const float v = x[m * ldx + i];
                ss[m] = fmaf(v, v, ss[m]);
            }
#pragma unroll
        for (int m = 0; m < M; ++m) {
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) ss[m] += __shfl_xor_sync(0xffffffffu, ss[m], off);
            if (lane == 0) red[warp][m] = ss[m];
        }
        __syncthreads();
#pragma unroll
        for (int m = 0; m < M; ++m) {
            float t = 0.0f;
#pragma unroll
            for (int q = 0; q < gemv_warps; ++q) t += red[q][m];
            inv[m] = rsqrtf(t / float(a.k) + a.norm_eps);
        }
    }

#pragma unroll(UNR)
    for (int v = kw * 32 + lane; v < nvec; v += 32 * KW) {
        float wf[RPW][VW];
#pragma unroll
        for (int i = 0; i < RPW; ++i) {
            const W* p = w + std::int64_t(row0 + i) * a.k + std::int64_t(v) * VW;
            if constexpr (VEC) {
                if (rok[i]) unpack(load_stream(p), wf[i]);
                else
#pragma unroll
                    for (int e = 0; e < VW; ++e) wf[i][e] = 0.0f;
            } else {
                wf[i][0] = rok[i] ? load_f(p) : 0.0f;
            }
        }
#pragma unroll
        for (int m = 0; m < M; ++m) {
            float xv[VW];
            const float* px = x + m * ldx + std::int64_t(v) * VW;
            if constexpr (VEC) {
#pragma unroll
                for (int e = 0; e < VW; e += 4) {
                    const float4 q = __ldg(reinterpret_cast<const float4*>(px + e));
                    xv[e] = q.x, xv[e + 1] = q.y, xv[e + 2] = q.z, xv[e + 3] = q.w;
                }
                if (nw) {
#pragma unroll
                    for (int e = 0; e < VW; e += 4) {
                        const float4 q = __ldg(reinterpret_cast<const float4*>(nw + std::int64_t(v) * VW + e));
                        xv[e] = xv[e] * inv[m] * q.x, xv[e + 1] = xv[e + 1] * inv[m] * q.y;
                        xv[e + 2] = xv[e + 2] * inv[m] * q.z, xv[e + 3] = xv[e + 3] * inv[m] * q.w;
                    }
                }
            } else {
                xv[0] = __ldg(px);
                if (nw) xv[0] = xv[0] * inv[m] * __ldg(nw + v);
            }
#pragma unroll
            for (int i = 0; i < RPW; ++i)
#pragma unroll
                for (int e = 0; e < VW; ++e) acc[i][m] = fmaf(wf[i][e], xv[e], acc[i][m]);
        }
    }
    // warp sums, then the KW warps of a row group
#pragma unroll
    for (int i = 0; i < RPW; ++i)
#pragma unroll
        for (int m = 0; m < M; ++m)
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) acc[i][m] += __shfl_xor_sync(0xffffffffu, acc[i][m], off);
    if (KW == 1) {
        if (lane == 0)
#pragma unroll
            for (int i = 0; i < RPW; ++i)
                if (rok[i])
#pragma unroll
                    for (int m = 0; m < M; ++m) gemv_store(a, m, row0 + i, acc[i][m], ldy);
        return;
    }
    __shared__ float part[gemv_warps][RPW * M];
    if (lane == 0)
#pragma unroll
        for (int i = 0; i < RPW; ++i)
#pragma unroll
            for (int m = 0; m < M; ++m) part[warp][i * M + m] = acc[i][m];
    __syncthreads();
    if (kw == 0 && lane < RPW * M) {
        const int i = lane / M, m = lane % M;
        float s = 0.0f;
        for (int q = 0; q < KW; ++q) s += part[warp + q][lane];
        if (row0 + i < a.n) gemv_store(a, m, row0 + i, s, ldy);
    }
}

template <class W, int M, int RPW, bool VEC, int UNR>
void launch_gemv_cfg(const GemvArgs& a, cudaStream_t s) {
    constexpr int VW = VEC ? 16 / int(sizeof(W)) : 1;
    const std::int64_t row_warps = (a.n + RPW - 1) / RPW;
    const int nvec = a.k / VW;
    // Split k over more warps while there are fewer than ~16 warps per SM and each still gets two passes.
    int KW = 1;
    while (KW < gemv_warps && row_warps * KW < 16LL * sm_count() && nvec >= 64 * KW * 2) KW *= 2;
    const int rows_per_block = gemv_warps / KW * RPW;
    const int blocks = int((a.n + rows_per_block - 1) / rows_per_block);
    launch_pdl(gemv_kernel<W, M, RPW, VEC, UNR>, blocks, gemv_warps * 32, s, a, KW);
}

template <class W, int M, bool VEC>
void launch_gemv(const GemvArgs& a, cudaStream_t s) {
    // rows per warp: more weight loads in flight at m = 1, each x load reused over RPW rows at larger m
    constexpr int RPW = M >= 4 ? 4 : 2;
    // few rows (x_proj: 192): one row per warp doubles the blocks of a latency-bound product
    if constexpr (M == 1)
        if (std::int64_t(a.n) * 8 < std::int64_t(sm_count()) * gemv_warps * 2)
            return launch_gemv_cfg<W, M, 1, VEC, 8>(a, s);
    launch_gemv_cfg<W, M, RPW, VEC, M == 1 ? 8 : 2>(a, s);
}

template <class W, bool VEC>
void dispatch_m(const GemvArgs& a, cudaStream_t s) {
    switch (a.m) {
        case 1: return launch_gemv<W, 1, VEC>(a, s);
        case 2: return launch_gemv<W, 2, VEC>(a, s);
        case 3: return launch_gemv<W, 3, VEC>(a, s);
        case 4: return launch_gemv<W, 4, VEC>(a, s);
        case 5: return launch_gemv<W, 5, VEC>(a, s);
        case 6: return launch_gemv<W, 6, VEC>(a, s);
        case 7: return launch_gemv<W, 7, VEC>(a, s);
        default: return launch_gemv<W, 8, VEC>(a, s);
    }
}

__global__ void read_probe_kernel(const uint4* p, std::int64_t n, std::uint32_t* sink) {
    std::uint32_t acc = 0;
    const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
    std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n; i += 4 * stride) {
        const uint4 a = load_stream(p + i), b = load_stream(p + i + stride), c = load_stream(p + i + 2 * stride),
                    d = load_stream(p + i + 3 * stride);
        acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
    }
    for (; i < n; i += stride) {
        const uint4 a = load_stream(p + i);
        acc ^= a.x ^ a.y ^ a.z ^ a.w;
    }
    if (acc == 0x9e3779b9u) *sink = acc;  // keeps the loads alive
}

}  // namespace detail

void gemv(const GemvArgs& a, Stream s) {
    VLM_CHECK(a.m >= 1 && a.m <= 8 && a.n >= 1 && a.k >= 1 && a.x && a.w && a.y, "gemv",
              "expected 1 <= m <= 8, n, k >= 1 and non-null operands, got (m, n, k) = (", a.m, ", ", a.n, ", ", a.k,
              ")");
    VLM_CHECK(a.w_dtype == DType::F32 || a.w_dtype == DType::BF16, "gemv", "expected F32 or BF16 weights, got ",
              dtype_name(a.w_dtype));
    VLM_CHECK(!a.conv_state || (a.conv_w && a.conv_y && a.conv_e >= 1 && a.conv_e <= a.n && a.conv_k >= 1 &&
                                a.conv_k <= 8 && !a.accumulate), "gemv",
              "expected with conv_state: conv_w, conv_y, 1 <= conv_e <= n, 1 <= conv_k <= 8 and no accumulate, got "
              "conv_e ", a.conv_e, ", conv_k ", a.conv_k);
    VLM_CHECK((a.ldx == 0 || a.ldx >= a.k) && (a.ldy == 0 || a.ldy >= a.n), "gemv",
              "expected ldx = 0 or >= k and ldy = 0 or >= n, got ldx ", a.ldx, ", ldy ", a.ldy);
    const int vw = a.w_dtype == DType::BF16 ? 8 : 4;
    const int ldx = a.ldx ? a.ldx : a.k;
    auto al = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
    const bool vec = a.k % vw == 0 && ldx % 4 == 0 && al(a.x) && al(a.w) && (!a.norm_w || al(a.norm_w));
    auto st = detail::stream(s);
    if (a.w_dtype == DType::BF16) vec ? detail::dispatch_m<__nv_bfloat16, true>(a, st)
                                      : detail::dispatch_m<__nv_bfloat16, false>(a, st);
    else vec ? detail::dispatch_m<float, true>(a, st) : detail::dispatch_m<float, false>(a, st);
    detail::check_launch("gemv");
}

void read_probe(const void* p, std::size_t bytes, std::uint32_t* sink, Stream s) {
    VLM_CHECK(reinterpret_cast<std::uintptr_t>(p) % 16 == 0 && bytes % 16 == 0, "read_probe",
              "expected a 16-byte aligned buffer of a multiple of 16 bytes, got ", bytes, " bytes");
    const std::int64_t n = std::int64_t(bytes / 16);
    detail::read_probe_kernel<<<sm_count() * 8, 256, 0, detail::stream(s)>>>(static_cast<const uint4*>(p), n, sink);
    detail::check_launch("read_probe");
}

}  // namespace vlmamba::cuda
