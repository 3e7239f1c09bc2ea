// The prefill selective scan kernel, templated on the io type (float or bf16); instantiated per dtype in
// selective_scan_f32.cu and selective_scan_bf16.cu.
//
// One thread per (channel, group of SPT states), G threads per channel (G = next power of two of N / SPT); the
// state lives in registers. A block owns CPB channels of one sequence (G * CPB = 128 threads, or 256 when G = 32)
// and walks time in chunks of T steps with two shared-memory stages: while a chunk is scanned, the next chunk's
// u, Δ, z, B and C are already in flight into registers (4-channel accesses of u, Δ, z and 16-byte ones of B, C
// where the strides allow), and are staged with softplus applied once per element after the scan. Partial sums of
// y meet in shared memory; D, the gate and the 4-channel stores follow. The decay is exp2 of Δ · A · log2(e)
// (MUFU ex2). States per thread (SPT) trade registers per thread for warps: see scan_states_per_thread.
#pragma once
#include <type_traits>

#include "common.cuh"
#include "vlmamba/ops/scan_args.hpp"

namespace vlmamba::cuda::detail::v1 {

template <class T, int W>
struct alignas(sizeof(T) * W) Pack {
    T v[W];
};

__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
// softplus within 1e-6 relative: log1p(y) of y = e^x as a series below 0.1 (the fast log loses digits there),
// the fast log above.
__device__ __forceinline__ float softplus_scan(float x) {
    if (x > 20.0f) return x;
    const float y = __expf(x);
    if (y >= 0.1f) return __logf(1.0f + y);
    float p = 1.0f / 9.0f;  // y (1 - y/2 + y²/3 - ... + y⁸/9), Horner
#pragma unroll
    for (int k = 8; k >= 1; --k) p = fmaf(p, y, (k % 2 ? 1.0f : -1.0f) / float(k));
    return p * y;
}
__device__ __forceinline__ float silu_scan(float x) { return x * __frcp_rn(1.0f + __expf(-x)); }
__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class IO>
__device__ __forceinline__ IO from_f(float x) {
    if constexpr (std::is_same_v<IO, float>) return x;
    else return __float2bfloat16(x);
}

// Reads SPT consecutive floats of shared memory with the widest loads.
template <int SPT>
__device__ __forceinline__ void load_states(const float* p, float (&v)[SPT]) {
    if constexpr (SPT % 4 == 0) {
#pragma unroll
        for (int k = 0; k < SPT; k += 4) {
            const float4 q = *reinterpret_cast<const float4*>(p + k);
            v[k] = q.x, v[k + 1] = q.y, v[k + 2] = q.z, v[k + 3] = q.w;
        }
    } else if constexpr (SPT == 2) {
        const float2 q = *reinterpret_cast<const float2*>(p);
        v[0] = q.x, v[1] = q.y;
    } else {
        v[0] = *p;
    }
}

constexpr int scan_threads(int G) { return G >= 32 ? 256 : 128; }
constexpr int scan_cpb(int G) { return scan_threads(G) / G; }
// Shared bytes of a block for chunk length T: two stages of (Δ, Δu), B, C and one of partial y.
constexpr int scan_smem(int G, int SPT, int T) {
    return 2 * T * (scan_cpb(G) + 1) * 8 + 2 * 2 * T * G * SPT * 4 + T * (scan_threads(G) + 4) * 4;
}
constexpr int scan_chunk(int G, int SPT) { return scan_smem(G, SPT, 32) <= 46 * 1024 ? 32 : 16; }

template <class IO, int SPT, int G, bool VEC>
__global__ void __launch_bounds__(scan_threads(G)) selective_scan_kernel(ScanArgs a) {
    constexpr int NT = scan_threads(G), CPB = scan_cpb(G), T = scan_chunk(G, SPT);
    constexpr int NMAX = G * SPT;
    constexpr int VW = VEC ? 4 : 1;                                    // u, Δ, z, y: 4 channels per access
    constexpr int VB = VEC ? 16 / int(sizeof(IO)) : 1;                 // B, C: 16 bytes per access
    constexpr int CV = CPB / VW;                      // vectors per row of the channel tile
    constexpr int RSTEP = NT / CV;                    // rows covered by one pass of the block
    constexpr int IT_E = (T + RSTEP - 1) / RSTEP;     // passes over a (T, CPB) tile
    constexpr int IT_N = (T * NMAX / VB + NT - 1) / NT;  // passes over a (T, N) tile
    static_assert(CPB % VW == 0 && NT % CV == 0, "the channel tile must hold whole vectors");
    using P = Pack<IO, VW>;
    using PB = Pack<IO, VB>;

    // Rows are padded so that the staging stores and the reads of partial sums spread over the banks.
    __shared__ __align__(16) float2 s_dd[2][T][CPB + 1];  // (Δ, Δ·u) per step and channel
    __shared__ __align__(16) float s_b[2][T][NMAX];
    __shared__ __align__(16) float s_c[2][T][NMAX];
    __shared__ __align__(16) float s_y[T][NT + 4];        // partial y: [t][channel * G + group]

    const int L = a.length, E = a.d_inner, N = a.d_state;
    const int b = blockIdx.y;
    const int c0 = blockIdx.x * CPB;
    const int tid = threadIdx.x;
    const int cl = tid / G, g = tid % G;  // scan role: local channel, state group
    const int c = c0 + cl;
    const int trow = tid / CV, j0 = (tid % CV) * VW;  // load/store role: first row, first local channel
    const int cch = c0 + j0;

    const std::int64_t ldu = a.ld_u ? a.ld_u : E, ldd = a.ld_delta ? a.ld_delta : E;
    const std::int64_t ldz = a.ld_z ? a.ld_z : E, ldy = a.ld_y ? a.ld_y : E, ldbc = a.ld_bc ? a.ld_bc : N;
    const IO* __restrict__ u = reinterpret_cast<const IO*>(a.u) + b * L * ldu;
    const IO* __restrict__ dl = reinterpret_cast<const IO*>(a.delta) + b * L * ldd;
    const IO* __restrict__ z = a.z ? reinterpret_cast<const IO*>(a.z) + b * L * ldz : nullptr;
    const IO* __restrict__ Bm = reinterpret_cast<const IO*>(a.Bm) + b * L * ldbc;
    const IO* __restrict__ Cm = reinterpret_cast<const IO*>(a.Cm) + b * L * ldbc;
    IO* __restrict__ y = reinterpret_cast<IO*>(a.y) + b * L * ldy;
    const int NV = N / VB;  // vectors per B/C row

    constexpr float log2e = 1.4426950408889634f;
    float h[SPT], A2[SPT];
#pragma unroll
    for (int k = 0; k < SPT; ++k) {
        const int n = g * SPT + k;
        const bool ok = c < E && n < N;
        A2[k] = ok ? a.A[std::int64_t(c) * N + n] * log2e : 0.0f;
        h[k] = ok && a.h_in ? a.h[(std::int64_t(b) * E + c) * N + n] : 0.0f;
    }
    // per-channel constants of the load/store role
    bool vvalid[VW];
    float bias[VW], Dv[VW];
#pragma unroll
    for (int e = 0; e < VW; ++e) {
        vvalid[e] = cch + e < E;
        bias[e] = vvalid[e] && a.delta_bias ? a.delta_bias[cch + e] : 0.0f;
        Dv[e] = vvalid[e] && a.D ? a.D[cch + e] : 0.0f;
    }
    // states past N keep B = C = 0 in both stages
    for (int i = tid; i < 2 * T * NMAX; i += NT) {
        (&s_b[0][0][0])[i] = 0.0f;
        (&s_c[0][0][0])[i] = 0.0f;
    }

    P ru[IT_E], rd[IT_E], rz[IT_E];
    PB rb[IT_N], rc[IT_N];
    float cur_u[IT_E][VW], cur_z[IT_E][VW];

    auto load = [&](int t0) {
        const int nt = min(T, L - t0);
#pragma unroll
        for (int r = 0; r < IT_E; ++r) {
            const int t = trow + r * RSTEP;
            if (t < T && t < nt && vvalid[0]) {
                const std::int64_t tt = t0 + t;
                if constexpr (VW == 1) {
                    ru[r].v[0] = u[tt * ldu + cch];
                    rd[r].v[0] = dl[tt * ldd + cch];
                    if (z) rz[r].v[0] = z[tt * ldz + cch];
                } else {
                    ru[r] = *reinterpret_cast<const P*>(u + tt * ldu + cch);
                    rd[r] = *reinterpret_cast<const P*>(dl + tt * ldd + cch);
                    if (z) rz[r] = *reinterpret_cast<const P*>(z + tt * ldz + cch);
                }
            }
        }
#pragma unroll
        for (int r = 0; r < IT_N; ++r) {
            const int i = tid + r * NT;
            const int t = i / NV, n0 = (i % NV) * VB;
            if (i < T * NV && t < nt) {
                const std::int64_t off = std::int64_t(t0 + t) * ldbc + n0;
                rb[r] = *reinterpret_cast<const PB*>(Bm + off);
                rc[r] = *reinterpret_cast<const PB*>(Cm + off);
            }
        }
    };
    auto stage = [&](int t0, int s) {
        const int nt = min(T, L - t0);
#pragma unroll
        for (int r = 0; r < IT_E; ++r) {
            const int t = trow + r * RSTEP;
            if (t < T) {
                const bool tok = t < nt;
#pragma unroll
                for (int e = 0; e < VW; ++e) {
                    const bool ok = tok && vvalid[e];
                    float dt = 0.0f, uu = 0.0f;
                    if (ok) {  // padding steps get Δ = 0: the state passes through unchanged
                        uu = to_f(ru[r].v[e]);
                        dt = to_f(rd[r].v[e]) + bias[e];
                        if (a.delta_softplus) dt = softplus_scan(dt);
                    }
                    s_dd[s][t][j0 + e] = make_float2(dt, dt * uu);
                    cur_u[r][e] = uu;
                    cur_z[r][e] = ok && z ? to_f(rz[r].v[e]) : 0.0f;
                }
            }
        }
#pragma unroll
        for (int r = 0; r < IT_N; ++r) {
            const int i = tid + r * NT;
            const int t = i / NV, n0 = (i % NV) * VB;
            if (i < T * NV) {
                const bool ok = t < nt;
#pragma unroll
                for (int e = 0; e < VB; ++e) {
                    s_b[s][t][n0 + e] = ok ? to_f(rb[r].v[e]) : 0.0f;
                    s_c[s][t][n0 + e] = ok ? to_f(rc[r].v[e]) : 0.0f;
                }
            }
        }
    };

    __syncthreads();  // zero padding of s_b/s_c before the stage writes
    load(0);
    stage(0, 0);
    __syncthreads();
    for (int t0 = 0, s = 0; t0 < L; t0 += T, s ^= 1) {
        const bool more = t0 + T < L;
        if (more) load(t0 + T);  // in flight during the scan below

        // the recurrence: partial sums of y over this thread's states go to shared memory
#pragma unroll
        for (int t = 0; t < T; ++t) {
            const float2 d = s_dd[s][t][cl];
            float bv[SPT], cv[SPT];
            load_states<SPT>(&s_b[s][t][g * SPT], bv);
            load_states<SPT>(&s_c[s][t][g * SPT], cv);
            float yt = 0.0f;
#pragma unroll
            for (int k = 0; k < SPT; ++k) {
                h[k] = fmaf(exp2_approx(d.x * A2[k]), h[k], d.y * bv[k]);
                yt = fmaf(h[k], cv[k], yt);
            }
            s_y[t][cl * G + g] = yt;
        }
        __syncthreads();

        // D, gate and the store of this chunk
        const int nt = min(T, L - t0);
#pragma unroll
        for (int r = 0; r < IT_E; ++r) {
            const int t = trow + r * RSTEP;
            if (t < T && t < nt && vvalid[0]) {
                float acc[VW];  // D·u plus the G partial sums of each of this thread's VW channels
#pragma unroll
                for (int e = 0; e < VW; ++e) acc[e] = Dv[e] * cur_u[r][e];
                const float* py = &s_y[t][j0 * G];
                if constexpr ((VW * G) % 4 == 0) {
#pragma unroll
                    for (int q = 0; q < VW * G; q += 4) {
                        const float4 v = *reinterpret_cast<const float4*>(py + q);
                        acc[q / G] += v.x;
                        acc[(q + 1) / G] += v.y;
                        acc[(q + 2) / G] += v.z;
                        acc[(q + 3) / G] += v.w;
                    }
                } else {
#pragma unroll
                    for (int q = 0; q < VW * G; ++q) acc[q / G] += py[q];
                }
                P out;
#pragma unroll
                for (int e = 0; e < VW; ++e) {
                    if (z) acc[e] *= silu_scan(cur_z[r][e]);
                    out.v[e] = from_f<IO>(acc[e]);
                }
                IO* dst = y + std::int64_t(t0 + t) * ldy + cch;
                if constexpr (VW == 1) *dst = out.v[0];
                else *reinterpret_cast<P*>(dst) = out;
            }
        }
        if (more) stage(t0 + T, s ^ 1);
        __syncthreads();
    }
    if (a.h && c < E) {
#pragma unroll
        for (int k = 0; k < SPT; ++k) {
            const int n = g * SPT + k;
            if (n < N) a.h[(std::int64_t(b) * E + c) * N + n] = h[k];
        }
    }
}

constexpr int pow2_at_least(int x) {
    int p = 1;
    while (p < x) p *= 2;
    return p;
}

template <class IO, int SPT, int G, bool VEC>
void launch_scan_cfg(const ScanArgs& a, cudaStream_t s) {
    constexpr int CPB = scan_cpb(G);
    dim3 grid(unsigned((a.d_inner + CPB - 1) / CPB), unsigned(a.batch));
    selective_scan_kernel<IO, SPT, G, VEC><<<grid, scan_threads(G), 0, s>>>(a);
}

template <class IO, int SPT, bool VEC>
void launch_scan_spt(const ScanArgs& a, cudaStream_t s) {
    const int G = pow2_at_least((a.d_state + SPT - 1) / SPT);
    switch (G) {
        case 1: return launch_scan_cfg<IO, SPT, 1, VEC>(a, s);
        case 2: return launch_scan_cfg<IO, SPT, 2, VEC>(a, s);
        case 4: return launch_scan_cfg<IO, SPT, 4, VEC>(a, s);
        case 8: return launch_scan_cfg<IO, SPT, 8, VEC>(a, s);
        case 16: return launch_scan_cfg<IO, SPT, 16, VEC>(a, s);
        default:
            if constexpr (SPT == 2) return launch_scan_cfg<IO, SPT, 32, VEC>(a, s);
            else fail("selective_scan", "expected at most 16 state groups of ", SPT, ", got ", G);
    }
}

// True when the rows of u, Δ, z and y take 4-channel accesses and those of B and C 16-byte ones.
template <class IO>
bool scan_vectorisable(const ScanArgs& a) {
    constexpr int VB = 16 / sizeof(IO);
    const std::int64_t E = a.d_inner, N = a.d_state;
    auto al = [](const void* p, std::size_t n) { return p == nullptr || reinterpret_cast<std::uintptr_t>(p) % n == 0; };
    auto ld = [&](int v, std::int64_t dflt, int w) { return (v ? v : dflt) % w == 0; };
    const std::size_t ae = 4 * sizeof(IO);
    return E % 4 == 0 && N % VB == 0 && al(a.u, ae) && al(a.delta, ae) && al(a.z, ae) && al(a.y, ae) &&
           al(a.Bm, 16) && al(a.Cm, 16) && ld(a.ld_u, E, 4) && ld(a.ld_delta, E, 4) && ld(a.ld_z, E, 4) &&
           ld(a.ld_y, E, 4) && ld(a.ld_bc, N, VB);
}

// States per thread: 4 while the grid gives each SM sub-partition at least two warps (B = 8 at mamba-2.8b), else 2
// for twice the warps (B = 1; measured best on the H100), 1 only for tiny grids with N <= 16.
inline int scan_states_per_thread(const ScanArgs& a, int sms) {
    auto warps = [&](int spt) {
        return std::int64_t(a.batch) * a.d_inner * pow2_at_least((a.d_state + spt - 1) / spt) / 32;
    };
    if (warps(4) >= 8 * sms) return 4;
    if (a.d_state > 16 || warps(2) >= 8 * sms) return 2;
    return 1;
}

template <class IO>
void launch_scan(const ScanArgs& a, cudaStream_t s, int sms) {
    const bool vec = scan_vectorisable<IO>(a);
    switch (scan_states_per_thread(a, sms)) {
        case 4: return vec ? launch_scan_spt<IO, 4, true>(a, s) : launch_scan_spt<IO, 4, false>(a, s);
        case 2: return vec ? launch_scan_spt<IO, 2, true>(a, s) : launch_scan_spt<IO, 2, false>(a, s);
        default: return vec ? launch_scan_spt<IO, 1, true>(a, s) : launch_scan_spt<IO, 1, false>(a, s);
    }
}

// Declared here, defined by explicit instantiation in the per-dtype files.
extern template void launch_scan<float>(const ScanArgs&, cudaStream_t, int);
extern template void launch_scan<__nv_bfloat16>(const ScanArgs&, cudaStream_t, int);

}  // namespace vlmamba::cuda::detail::v1
