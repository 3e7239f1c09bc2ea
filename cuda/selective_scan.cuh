// The prefill selective scan kernel, templated on the io type (float or bf16); instantiated per dtype in
// selective_scan_f32.cu and selective_scan_bf16.cu.
//
// Warp-specialised blocks of 2 × 64 threads. The 64 scan threads: each owns one channel and SPT states n = g,
// g + G, ... (G threads per channel, CPB = 64 / G channels per block), the state in registers; time goes in chunks
// of T = 32 steps through two shared-memory stages, and within a chunk in groups of 4 steps: every shared access of
// the recurrence is a float4 of 4 consecutive steps (Δ, Δ·u, B, C read; partial y written). The 64 helper threads
// meanwhile write the previous chunk's output (the G partial sums, D·u, the gate) and stage the next chunk
// (softplus once per element), whose global loads are in flight a whole chunk ahead. So the recurrence's warps do
// nothing else, and twice the warps hide each other's latency. Shared rows are padded against bank conflicts. The
// decay is exp2 of Δ · A · log2(e) (MUFU).
#pragma once
#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "common.cuh"
#include "vlmamba/core/scan_args.hpp"

namespace vlmamba::cuda::detail {

__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
// softplus within 1e-6 relative, without branches (both ways are computed and one is selected): log1p(y) of
// y = e^x as a series below 0.1 (the fast log loses digits there), the fast log above, x itself above 20.
__device__ __forceinline__ float softplus_scan(float x) {
    const float y = __expf(fminf(x, 20.0f));
    float p = -1.0f / 6.0f;  // y (1 - y/2 + y²/3 - ... - y⁵/6), Horner; the next term is under 2e-7 of it
#pragma unroll
    for (int k = 5; k >= 1; --k) p = fmaf(p, y, (k % 2 ? 1.0f : -1.0f) / float(k));
    const float r = y < 0.1f ? p * y : __logf(1.0f + y);
    return x > 20.0f ? x : r;
}
// x / (1 + e^-x) with the fast divide (2 ulp); tends to 0 for very negative x.
__device__ __forceinline__ float silu_scan(float x) { return __fdividef(x, 1.0f + __expf(-x)); }
__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class IO>
__device__ __forceinline__ IO from_f(float x) {
    if constexpr (std::is_same_v<IO, float>) return x;
    else return __float2bfloat16(x);
}
// 16 bytes of B or C: 4 floats or 8 bf16 (little endian: the low half is the even element).
template <class IO, int VB>
__device__ __forceinline__ void unpack_bc(const uint4& q, float (&f)[VB]) {
    const std::uint32_t w[4] = {q.x, q.y, q.z, q.w};
    if constexpr (std::is_same_v<IO, float>) {
#pragma unroll
        for (int i = 0; i < 4; ++i) f[i] = __uint_as_float(w[i]);
    } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) f[2 * i] = __uint_as_float(w[i] << 16), f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}
__device__ __forceinline__ float comp(const float4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }
__device__ __forceinline__ void add4(float4& a, const float4& b) { a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w; }

constexpr int scan_block = 64;  // threads of each role (scan, helper)
// Static shared memory of the kernel for chunks of t steps (the arrays declared in it).
constexpr int scan_smem(int G, int nmax, int t) {
    const int tq = t / 4, cpb = scan_block / G;
    return 16 * (2 * 2 * tq * cpb + 2 * 2 * tq * cpb + 2 * 2 * tq * (nmax + 1) + 2 * tq * cpb * ((G >= 4 ? G / 4 : G) + 1));
}
// Time steps per shared-memory stage: 32, fewer for small G (at most 2 pairs per thread), for wide scalar B/C rows
// (at most 8 loads of each per thread) and to stay within 48 KB of static shared memory.
constexpr int scan_chunk(int G, int nmax, int vb, int nt = scan_block) {
    int t = G >= 4 ? 32 : 8 * G;
    while (t > 8 && (t * (nmax / vb > 0 ? nmax / vb : 1) > 8 * nt || scan_smem(G, nmax, t) > 46 * 1024)) t /= 2;
    return t;
}

// The kernel. Block = 2 · scan_threads threads in two roles (warp specialisation):
//  - scan warps (the first scan_threads threads): the recurrence of chunk k from shared stage k % 2, partial sums
//    of y to s_y[k % 2];
//  - helper warps (the rest): meanwhile the output of chunk k - 1 (the G partial sums, D, the gate, the store) and
//    the staging of chunk k + 1 (softplus once per element, Δ·u, B and C), then the global loads of chunk k + 2.
// One block barrier per chunk separates the iterations. VBC: rows of B and C take 16-byte loads.
template <class IO, int SPT, int G, bool VBC>
__global__ void __launch_bounds__(2 * scan_block, 5) selective_scan_kernel(ScanArgs a) {
    constexpr int NT = scan_block, CPB = NT / G, NMAX = G * SPT;
    constexpr int VB = VBC ? 16 / int(sizeof(IO)) : 1;           // B, C values per load
    constexpr int T = scan_chunk(G, NMAX, VB, NT), TQ = T / 4;
    constexpr int PAIRS = CPB * TQ, IT = (PAIRS + NT - 1) / NT;  // (channel, 4-step group) pairs per helper
    constexpr int IT_BC = (T * (NMAX / VB > 0 ? NMAX / VB : 1) + NT - 1) / NT;
    static_assert(NT % CPB == 0, "a helper keeps one channel across its pairs");

    __shared__ float4 s_dt[2][TQ][CPB];          // Δ after bias and softplus, 4 steps per float4
    __shared__ float4 s_du[2][TQ][CPB];          // Δ · u
    __shared__ float4 s_uz[2][2][TQ][CPB];       // u and z of the chunk, for its output
    __shared__ float4 s_bc[2][2][TQ][NMAX + 1];  // B, C [t][n]; one float4 of padding per row against bank conflicts
    // partial y: with G >= 4 the scan lanes first add over quads of state groups (a transposing butterfly), so each
    // (channel, 4 steps) has G / 4 partial float4s instead of G
    constexpr int Q = G >= 4 ? G / 4 : G;
    __shared__ float4 s_y[2][TQ][CPB][Q + 1];
    auto& s_b = s_bc[0];
    auto& s_c = s_bc[1];
    auto barrier = [] { asm volatile("bar.sync 1, %0;" ::"n"(2 * NT) : "memory"); };

    const int L = a.length, E = a.d_inner, N = a.d_state;
    const int b = blockIdx.y;
    const int c0 = blockIdx.x * CPB;
    const int nch = (L + T - 1) / T;
    const bool scan_role = threadIdx.x < NT;
    for (int i = threadIdx.x; i < 4 * TQ * (NMAX + 1); i += 2 * NT)  // states past N keep B = C = 0
        (&s_bc[0][0][0][0])[i] = make_float4(0.f, 0.f, 0.f, 0.f);
    barrier();

    if (scan_role) {
        const int tid = threadIdx.x;
        const int cl = tid / G, g = tid % G;  // local channel, state group
        const int c = c0 + cl;
        constexpr float log2e = 1.4426950408889634f;
        float h[SPT], A2[SPT];
#pragma unroll
        for (int k = 0; k < SPT; ++k) {
            const int n = g + G * k;
            const bool ok = c < E && n < N;
            A2[k] = ok ? a.A[std::int64_t(c) * N + n] * log2e : 0.0f;
            h[k] = ok && a.h_in ? a.h[(std::int64_t(b) * E + c) * N + n] : 0.0f;
        }
        barrier();  // chunk 0 staged
        for (int k = 0; k <= nch; ++k) {
            if (k < nch) {
                const int s = k & 1;
                // 4 steps per shared access; the next group's loads before this group's arithmetic
                float4 dt4n = s_dt[s][0][cl], du4n = s_du[s][0][cl], bqn[SPT], cqn[SPT];
#pragma unroll
                for (int q = 0; q < SPT; ++q) bqn[q] = s_b[s][0][g + G * q], cqn[q] = s_c[s][0][g + G * q];
#pragma unroll
                for (int tq = 0; tq < TQ; ++tq) {
                    const float4 dt4 = dt4n, du4 = du4n;
                    float4 bq[SPT], cq[SPT];
#pragma unroll
                    for (int q = 0; q < SPT; ++q) bq[q] = bqn[q], cq[q] = cqn[q];
                    if (tq + 1 < TQ) {
                        dt4n = s_dt[s][tq + 1][cl], du4n = s_du[s][tq + 1][cl];
#pragma unroll
                        for (int q = 0; q < SPT; ++q)
                            bqn[q] = s_b[s][tq + 1][g + G * q], cqn[q] = s_c[s][tq + 1][g + G * q];
                    }
                    float dA[4][SPT], dB[4][SPT];  // decays and inputs first (independent of h), then the chains
#pragma unroll
                    for (int i = 0; i < 4; ++i)
#pragma unroll
                        for (int q = 0; q < SPT; ++q) {
                            dA[i][q] = exp2_approx(comp(dt4, i) * A2[q]);
                            dB[i][q] = comp(du4, i) * comp(bq[q], i);
                        }
                    float yv[4];
#pragma unroll
                    for (int i = 0; i < 4; ++i) {
                        float acc = 0.0f;
#pragma unroll
                        for (int q = 0; q < SPT; ++q) {
                            h[q] = fmaf(dA[i][q], h[q], dB[i][q]);
                            acc = fmaf(h[q], comp(cq[q], i), acc);
                        }
                        yv[i] = acc;
                    }
                    if constexpr (G >= 4) {
                        // lanes g, g^1, g^2, g^3 (one quad) end with one step each, summed over the quad
                        const bool b0 = g & 1, b1 = g & 2;
                        const float r0 = __shfl_xor_sync(0xffffffffu, b0 ? yv[0] : yv[2], 1);
                        const float r1 = __shfl_xor_sync(0xffffffffu, b0 ? yv[1] : yv[3], 1);
                        const float k0 = (b0 ? yv[2] : yv[0]) + r0, k1 = (b0 ? yv[3] : yv[1]) + r1;
                        const float r2 = __shfl_xor_sync(0xffffffffu, b1 ? k0 : k1, 2);
                        reinterpret_cast<float*>(&s_y[s][tq][cl][g >> 2])[2 * b0 + (b1 ? 1 : 0)] = (b1 ? k1 : k0) + r2;
                    } else {
                        s_y[s][tq][cl][g] = make_float4(yv[0], yv[1], yv[2], yv[3]);
                    }
                }
            }
            barrier();
        }
        if (a.h && c < E) {
#pragma unroll
            for (int q = 0; q < SPT; ++q) {
                const int n = g + G * q;
                if (n < N) a.h[(std::int64_t(b) * E + c) * N + n] = h[q];
            }
        }
        return;
    }

    // ---- helper role -----------------------------------------------------------------------------------------
    const int tid = threadIdx.x - NT;
    const int pc = tid % CPB;  // local channel (the same for all of the thread's pairs)
    const int pch = c0 + pc;
    const bool pvalid = pch < E;
    // offsets within a sequence are 32-bit (the launcher checks L · stride < 2^31); the batch offset is 64-bit
    const int ldu = a.ld_u ? a.ld_u : E, ldd = a.ld_delta ? a.ld_delta : E;
    const int ldz = a.ld_z ? a.ld_z : E, ldy = a.ld_y ? a.ld_y : E, ldbc = a.ld_bc ? a.ld_bc : N;
    const std::int64_t bL = std::int64_t(b) * L;
    const IO* __restrict__ u = reinterpret_cast<const IO*>(a.u) + bL * ldu;
    const IO* __restrict__ dl = reinterpret_cast<const IO*>(a.delta) + bL * ldd;
    const bool has_z = a.z != nullptr;
    const IO* __restrict__ z = has_z ? reinterpret_cast<const IO*>(a.z) + bL * ldz : nullptr;
    const IO* __restrict__ Bm = reinterpret_cast<const IO*>(a.Bm) + bL * ldbc;
    const IO* __restrict__ Cm = reinterpret_cast<const IO*>(a.Cm) + bL * ldbc;
    IO* __restrict__ y = reinterpret_cast<IO*>(a.y) + bL * ldy;
    const int NV = (N + VB - 1) / VB;  // loads per B/C row (VB divides N when VBC)
    const float bias = pvalid && a.delta_bias ? a.delta_bias[pch] : 0.0f;
    const float Dv = pvalid && a.D ? a.D[pch] : 0.0f;

    IO ru[IT][4], rd[IT][4], rz[IT][4];
    using RawBC = std::conditional_t<VBC, uint4, IO>;  // B, C stay packed until staged
    RawBC rb[IT_BC], rc[IT_BC];
    // Per-thread pointers to the next rows, advanced by one chunk per load / store (no index arithmetic per element)
    const IO* pu[IT];
    const IO* pd[IT];
    const IO* pz[IT];
    IO* py[IT];
#pragma unroll
    for (int r = 0; r < IT; ++r) {
        const int row = 4 * ((tid + r * NT) / CPB);
        pu[r] = u + row * ldu + pch;
        pd[r] = dl + row * ldd + pch;
        pz[r] = has_z ? z + row * ldz + pch : nullptr;
        py[r] = y + row * ldy + pch;
    }
    const IO* pbm[IT_BC];
    const IO* pcm[IT_BC];
    float* sb[IT_BC];  // this thread's B/C staging slot in stage 0 (stage 1 is one stage further)
#pragma unroll
    for (int r = 0; r < IT_BC; ++r) {
        const int i = tid + r * NT, t = i % T, nv = i / T;
        pbm[r] = Bm + t * ldbc + nv * VB;
        pcm[r] = Cm + t * ldbc + nv * VB;
        sb[r] = reinterpret_cast<float*>(&s_b[0][t / 4][0]) + t % 4 + 4 * nv * VB;
    }
    constexpr int SB_STAGE = TQ * (NMAX + 1) * 4;  // floats per stage of s_b / s_c
    constexpr int SC_OFF = 2 * SB_STAGE;           // s_c follows s_b

    // A chunk is full when all its steps and all the block's channels exist: no per-element checks then.
    const bool block_full = c0 + CPB <= E;
    auto full_chunk = [&](int t0) { return block_full && t0 + T <= L; };
    auto load_impl = [&](int t0, auto full) {
        constexpr bool F = decltype(full)::value;
#pragma unroll
        for (int r = 0; r < IT; ++r) {
            const int p = tid + r * NT, t = t0 + 4 * (p / CPB);
            const IO* qu = pu[r];
            const IO* qd = pd[r];
            const IO* qz = pz[r];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                if (F ? p < PAIRS : p < PAIRS && pvalid && t + i < L) {
                    ru[r][i] = *qu;
                    rd[r][i] = *qd;
                    if (has_z) rz[r][i] = *qz;
                }
                qu += ldu, qd += ldd;
                if (has_z) qz += ldz;
            }
            pu[r] += T * ldu, pd[r] += T * ldd;
            if (has_z) pz[r] += T * ldz;
        }
#pragma unroll
        for (int r = 0; r < IT_BC; ++r) {
            const int i = tid + r * NT, t = i % T, nv = i / T;
            if (nv < NV && (F || t0 + t < L)) {
                if constexpr (VBC) {
                    rb[r] = __ldg(reinterpret_cast<const uint4*>(pbm[r]));
                    rc[r] = __ldg(reinterpret_cast<const uint4*>(pcm[r]));
                } else {
                    rb[r] = *pbm[r];
                    rc[r] = *pcm[r];
                }
            }
            pbm[r] += T * ldbc, pcm[r] += T * ldbc;
        }
    };
    auto stage_impl = [&](int t0, int s, auto full) {
        constexpr bool F = decltype(full)::value;
#pragma unroll
        for (int r = 0; r < IT; ++r) {
            const int p = tid + r * NT, tq = p / CPB;
            if (p < PAIRS) {
                float dt[4], du[4], uu[4], zz[4];
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    // padding steps get Δ = 0: the state passes through unchanged
                    const bool ok = F || (pvalid && t0 + 4 * tq + i < L);
                    uu[i] = ok ? to_f(ru[r][i]) : 0.0f;
                    float d = to_f(rd[r][i]) + bias;
                    if (a.delta_softplus) d = softplus_scan(d);
                    d = ok ? d : 0.0f;
                    dt[i] = d, du[i] = d * uu[i];
                    zz[i] = ok && has_z ? to_f(rz[r][i]) : 0.0f;
                }
                s_dt[s][tq][pc] = make_float4(dt[0], dt[1], dt[2], dt[3]);
                s_du[s][tq][pc] = make_float4(du[0], du[1], du[2], du[3]);
                s_uz[s][0][tq][pc] = make_float4(uu[0], uu[1], uu[2], uu[3]);
                s_uz[s][1][tq][pc] = make_float4(zz[0], zz[1], zz[2], zz[3]);
            }
        }
#pragma unroll
        for (int r = 0; r < IT_BC; ++r) {
            const int i = tid + r * NT, t = i % T, nv = i / T;
            if (nv < NV) {
                const bool ok = F || t0 + t < L;
                float* qb = sb[r] + s * SB_STAGE;
                float fb[VB], fc[VB];
                if constexpr (VBC) {
                    unpack_bc<IO>(rb[r], fb);
                    unpack_bc<IO>(rc[r], fc);
                } else {
                    fb[0] = to_f(rb[r]), fc[0] = to_f(rc[r]);
                }
#pragma unroll
                for (int e = 0; e < VB; ++e) {
                    if (VBC || nv * VB + e < N) {
                        qb[4 * e] = ok ? fb[e] : 0.0f;
                        qb[SC_OFF + 4 * e] = ok ? fc[e] : 0.0f;
                    }
                }
            }
        }
    };
    // the G partial sums, D and the gate of each (channel, 4 steps) pair, and the store of the chunk
    auto store_impl = [&](int t0, int s, auto full) {
        constexpr bool F = decltype(full)::value;
#pragma unroll
        for (int r = 0; r < IT; ++r) {
            const int p = tid + r * NT, tq = p / CPB;
            if (p < PAIRS && (F || pvalid)) {
                const float4 u4 = s_uz[s][0][tq][pc], z4 = s_uz[s][1][tq][pc];
                float4 acc = make_float4(Dv * u4.x, Dv * u4.y, Dv * u4.z, Dv * u4.w);
#pragma unroll
                for (int q = 0; q < Q; ++q) add4(acc, s_y[s][tq][pc][q]);
                IO* qy = py[r];
#pragma unroll
                for (int i = 0; i < 4; ++i, qy += ldy) {
                    if (F || t0 + 4 * tq + i < L) {
                        float v = comp(acc, i);
                        if (has_z) v *= silu_scan(comp(z4, i));
                        *qy = from_f<IO>(v);
                    }
                }
            }
            py[r] += T * ldy;
        }
    };
    auto load = [&](int t0) {
        if (full_chunk(t0)) load_impl(t0, std::true_type{});
        else load_impl(t0, std::false_type{});
    };
    auto stage = [&](int t0, int s) {
        if (full_chunk(t0)) stage_impl(t0, s, std::true_type{});
        else stage_impl(t0, s, std::false_type{});
    };

    load(0);
    stage(0, 0);
    if (nch > 1) load(T);
    barrier();  // chunk 0 staged
    for (int k = 0; k <= nch; ++k) {
        if (k >= 1) {  // output of chunk k - 1 (its u, z and partial sums are in stage (k - 1) % 2)
            const int t0 = (k - 1) * T, s = (k - 1) & 1;
            if (full_chunk(t0)) store_impl(t0, s, std::true_type{});
            else store_impl(t0, s, std::false_type{});
        }
        if (k + 1 < nch) {
            stage((k + 1) * T, (k + 1) & 1);     // into the stage chunk k - 1 used: its output came first
            if (k + 2 < nch) load((k + 2) * T);  // in flight until the next iteration's staging
        }
        barrier();
    }
}

constexpr int pow2_at_least(int x) {
    int p = 1;
    while (p < x) p *= 2;
    return p;
}

template <class IO, int SPT, int G, bool VBC>
void launch_scan_cfg(const ScanArgs& a, cudaStream_t s) {
    constexpr int CPB = scan_block / G;
    dim3 grid(unsigned((a.d_inner + CPB - 1) / CPB), unsigned(a.batch));
    selective_scan_kernel<IO, SPT, G, VBC><<<grid, 2 * scan_block, 0, s>>>(a);
}

template <class IO, int SPT, bool VBC>
void launch_scan_spt(const ScanArgs& a, cudaStream_t s) {
    const int G = pow2_at_least((a.d_state + SPT - 1) / SPT);
    switch (G) {
        case 1: return launch_scan_cfg<IO, SPT, 1, VBC>(a, s);
        case 2: return launch_scan_cfg<IO, SPT, 2, VBC>(a, s);
        case 4: return launch_scan_cfg<IO, SPT, 4, VBC>(a, s);
        case 8: return launch_scan_cfg<IO, SPT, 8, VBC>(a, s);
        case 16: return launch_scan_cfg<IO, SPT, 16, VBC>(a, s);
        default:
            if constexpr (SPT == 2) return launch_scan_cfg<IO, SPT, 32, VBC>(a, s);
            else fail("selective_scan", "expected at most 16 state groups of ", SPT, ", got ", G);
    }
}

// True when the rows of B and C take 16-byte loads.
template <class IO>
bool scan_bc_vectorisable(const ScanArgs& a) {
    constexpr int VB = 16 / sizeof(IO);
    auto al = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
    return a.d_state % VB == 0 && al(a.Bm) && al(a.Cm) && (a.ld_bc ? a.ld_bc : a.d_state) % VB == 0;
}

// States per thread: 4 for f32 when the grid has enough warps to hide latency with them (B >= 2 at mamba-2.8b), else
// 2, 1 only for tiny grids with N <= 16; set_scan_states_per_thread() overrides (cuda/api.cu).
int scan_states_per_thread(const ScanArgs& a, int sms, int io_bytes);

template <class IO>
void launch_scan(const ScanArgs& a, cudaStream_t s, int sms) {
    const std::int64_t ld = std::max({a.ld_u ? a.ld_u : a.d_inner, a.ld_delta ? a.ld_delta : a.d_inner,
                                      a.ld_z ? a.ld_z : a.d_inner, a.ld_y ? a.ld_y : a.d_inner,
                                      a.ld_bc ? a.ld_bc : a.d_state});
    VLM_CHECK((std::int64_t(a.length) + 64) * ld < (std::int64_t(1) << 31), "selective_scan",
              "expected length · row stride < 2^31 elements per sequence, got ", a.length, " · ", ld);
    const bool vec = scan_bc_vectorisable<IO>(a);
    switch (scan_states_per_thread(a, sms, int(sizeof(IO)))) {
        case 4: return vec ? launch_scan_spt<IO, 4, true>(a, s) : launch_scan_spt<IO, 4, false>(a, s);
        case 2: return vec ? launch_scan_spt<IO, 2, true>(a, s) : launch_scan_spt<IO, 2, false>(a, s);
        default: return vec ? launch_scan_spt<IO, 1, true>(a, s) : launch_scan_spt<IO, 1, false>(a, s);
    }
}

// Declared here, defined by explicit instantiation in the per-dtype files.
extern template void launch_scan<float>(const ScanArgs&, cudaStream_t, int);
extern template void launch_scan<__nv_bfloat16>(const ScanArgs&, cudaStream_t, int);

}  // namespace vlmamba::cuda::detail
