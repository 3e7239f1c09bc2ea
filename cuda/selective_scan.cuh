// The prefill selective scan kernel, templated on the io type (float or bf16); instantiated per dtype in
// selective_scan_f32.cu and selective_scan_bf16.cu.
//
// One thread per (channel, group of 4 states), G = ceil(N / 4) rounded up to a power of two threads per channel;
// the state lives in registers. A block owns CPB channels of one sequence and walks time in chunks of T steps:
// u, Δ (softplus applied once), z and the B/C rows of a chunk are staged in shared memory with coalesced loads,
// the G partial sums of a channel's y meet in shared memory, and y leaves through shared memory.
#pragma once
#include "common.cuh"
#include "vlmamba/ops/scan_args.hpp"

namespace vlmamba::cuda::detail {

constexpr int scan_chunk = 32;  // T
constexpr int scan_spt = 4;     // states per thread

template <class IO, int G, int CPB>
__global__ void __launch_bounds__(G * CPB) selective_scan_kernel(ScanArgs a) {
    constexpr int T = scan_chunk;
    constexpr int SPT = scan_spt;
    constexpr int NMAX = G * SPT;
    __shared__ float s_u[T][CPB], s_dt[T][CPB], s_z[T][CPB], s_y[T][G][CPB];
    __shared__ __align__(16) float s_b[T][NMAX], s_c[T][NMAX];

    const int L = a.length, E = a.d_inner, N = a.d_state;
    const int b = blockIdx.y;
    const int c0 = blockIdx.x * CPB;
    const int tid = threadIdx.x;
    const int cl = tid / G, g = tid % G;  // local channel, state group
    const int c = c0 + cl;
    const bool cvalid = c < E;

    const std::int64_t ldu = a.ld_u ? a.ld_u : E, ldd = a.ld_delta ? a.ld_delta : E;
    const std::int64_t ldz = a.ld_z ? a.ld_z : E, ldy = a.ld_y ? a.ld_y : E, ldbc = a.ld_bc ? a.ld_bc : N;
    const IO* u = reinterpret_cast<const IO*>(a.u) + b * L * ldu;
    const IO* dl = reinterpret_cast<const IO*>(a.delta) + b * L * ldd;
    const IO* z = a.z ? reinterpret_cast<const IO*>(a.z) + b * L * ldz : nullptr;
    const IO* Bm = reinterpret_cast<const IO*>(a.Bm) + b * L * ldbc;
    const IO* Cm = reinterpret_cast<const IO*>(a.Cm) + b * L * ldbc;
    IO* y = reinterpret_cast<IO*>(a.y) + b * L * ldy;

    constexpr float log2e = 1.4426950408889634f;
    float h[SPT], A2[SPT];
#pragma unroll
    for (int k = 0; k < SPT; ++k) {
        const int n = g * SPT + k;
        const bool ok = cvalid && n < N;
        A2[k] = ok ? a.A[std::int64_t(c) * N + n] * log2e : 0.0f;
        h[k] = ok && a.h_in ? a.h[(std::int64_t(b) * E + c) * N + n] : 0.0f;
    }

    for (int t0 = 0; t0 < L; t0 += T) {
        const int nt = min(T, L - t0);
        // stage the chunk: rows of CPB channels (coalesced), softplus once per element. The trip counts are
        // compile-time so the loads of a thread are all in flight together.
        constexpr int NT = G * CPB;
        constexpr int IT_E = (T * CPB + NT - 1) / NT, IT_N = (T * NMAX + NT - 1) / NT;
        float ru[IT_E], rd[IT_E], rz[IT_E], rb[IT_N], rc[IT_N];
#pragma unroll
        for (int r = 0; r < IT_E; ++r) {
            const int i = tid + r * NT, t = i / CPB, j = i % CPB, cc = c0 + j;
            ru[r] = rd[r] = rz[r] = 0.0f;
            if (i < T * CPB && t < nt && cc < E) {
                const std::int64_t tt = t0 + t;
                ru[r] = load_f(u + tt * ldu + cc);
                rd[r] = load_f(dl + tt * ldd + cc);
                if (z) rz[r] = load_f(z + tt * ldz + cc);
            }
        }
#pragma unroll
        for (int r = 0; r < IT_N; ++r) {
            const int i = tid + r * NT, t = i / NMAX, n = i % NMAX;
            const bool ok = i < T * NMAX && t < nt && n < N;
            rb[r] = ok ? load_f(Bm + std::int64_t(t0 + t) * ldbc + n) : 0.0f;
            rc[r] = ok ? load_f(Cm + std::int64_t(t0 + t) * ldbc + n) : 0.0f;
        }
#pragma unroll
        for (int r = 0; r < IT_E; ++r) {
            const int i = tid + r * NT, t = i / CPB, j = i % CPB, cc = c0 + j;
            if (i < T * CPB) {
                float dd = rd[r];
                if (t < nt && cc < E) {
                    dd += a.delta_bias ? a.delta_bias[cc] : 0.0f;
                    if (a.delta_softplus) dd = softplus(dd);
                }
                s_u[t][j] = ru[r];
                s_dt[t][j] = dd;
                s_z[t][j] = rz[r];
            }
        }
#pragma unroll
        for (int r = 0; r < IT_N; ++r) {
            const int i = tid + r * NT;
            if (i < T * NMAX) {
                s_b[i / NMAX][i % NMAX] = rb[r];
                s_c[i / NMAX][i % NMAX] = rc[r];
            }
        }
        __syncthreads();

        // Partial sums over this thread's states go to shared memory; the G partials are added at the store, so
        // no shuffle sits on the recurrence's critical path and steps can overlap.
#pragma unroll 8
        for (int t = 0; t < T; ++t) {
            if (t < nt) {
                const float dt = s_dt[t][cl];
                const float du = dt * s_u[t][cl];
                const float4 bb = *reinterpret_cast<const float4*>(&s_b[t][g * SPT]);
                const float4 cc = *reinterpret_cast<const float4*>(&s_c[t][g * SPT]);
                const float bv[4] = {bb.x, bb.y, bb.z, bb.w}, cv[4] = {cc.x, cc.y, cc.z, cc.w};
                float yt = 0.0f;
#pragma unroll
                for (int k = 0; k < SPT; ++k) {
                    h[k] = exp2f(dt * A2[k]) * h[k] + du * bv[k];
                    yt += h[k] * cv[k];
                }
                s_y[t][g][cl] = yt;
            }
        }
        __syncthreads();

        // D, gate and the coalesced store
        for (int i = tid; i < T * CPB; i += G * CPB) {
            const int t = i / CPB, j = i % CPB, cc = c0 + j;
            if (t < nt && cc < E) {
                float yt = (a.D ? a.D[cc] : 0.0f) * s_u[t][j];
#pragma unroll
                for (int q = 0; q < G; ++q) yt += s_y[t][q][j];
                if (z) yt *= silu(s_z[t][j]);
                store_f(y + std::int64_t(t0 + t) * ldy + cc, yt);
            }
        }
        __syncthreads();
    }
    if (a.h && cvalid) {
#pragma unroll
        for (int k = 0; k < SPT; ++k) {
            const int n = g * SPT + k;
            if (n < N) a.h[(std::int64_t(b) * E + c) * N + n] = h[k];
        }
    }
}

template <class IO, int G>
void launch_scan_g(const ScanArgs& a, cudaStream_t s, int sms) {
    // Pick channels per block so that the grid fills the GPU (>= 4 blocks per SM) with the widest rows possible.
    const std::int64_t work = std::int64_t(a.batch) * a.d_inner;
    auto launch = [&](auto cpb_tag) {
        constexpr int CPB = decltype(cpb_tag)::value;
        dim3 grid(unsigned((a.d_inner + CPB - 1) / CPB), unsigned(a.batch));
        selective_scan_kernel<IO, G, CPB><<<grid, G * CPB, 0, s>>>(a);
    };
    if (work / 32 >= 4 * sms)
        launch(std::integral_constant<int, 32>{});
    else if (work / 16 >= 4 * sms)
        launch(std::integral_constant<int, 16>{});
    else
        launch(std::integral_constant<int, 8>{});
}

template <class IO>
void launch_scan(const ScanArgs& a, cudaStream_t s, int sms) {
    const int groups = (a.d_state + scan_spt - 1) / scan_spt;
    if (groups <= 1) launch_scan_g<IO, 1>(a, s, sms);
    else if (groups <= 2) launch_scan_g<IO, 2>(a, s, sms);
    else if (groups <= 4) launch_scan_g<IO, 4>(a, s, sms);
    else if (groups <= 8) launch_scan_g<IO, 8>(a, s, sms);
    else launch_scan_g<IO, 16>(a, s, sms);
}

// Declared here, defined by explicit instantiation in the per-dtype files.
extern template void launch_scan<float>(const ScanArgs&, cudaStream_t, int);
extern template void launch_scan<__nv_bfloat16>(const ScanArgs&, cudaStream_t, int);

}  // namespace vlmamba::cuda::detail
