// Vectorised CPU selective scan (xsimd): across channels with the states in registers (ScanChannels),
// across states with a horizontal sum per step (ScanStates), and the single-step decode update.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#include <xsimd/xsimd.hpp>

#include "vlmamba/core/parallel.hpp"
#include "vlmamba/cpu/vec_math.hpp"
#include "vlmamba/ops/selective_scan.hpp"

// GCC 12.2 warns about the _mm512_undefined_ps() inside AVX-512 intrinsics once inlined here (GCC bug
// 105593, fixed in 12.3); the warning is spurious.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace vlmamba::cpu {

// ---------------------------------------------------------------------------------------------
// Declarations (the entry points are declared in vlmamba/ops/selective_scan.hpp)
// ---------------------------------------------------------------------------------------------
//   void selective_scan_channels(const ScanArgs&, int n_threads);
//   void selective_scan_states(const ScanArgs&, int n_threads);
//   void selective_state_update(const StateUpdateArgs&, int n_threads);

namespace scan_detail {
using Arch = xsimd::default_arch;
using Vf = xsimd::batch<float, Arch>;
inline constexpr int W = static_cast<int>(Vf::size);  // lanes: 16 with AVX-512, 8 with AVX2
inline constexpr float log2e = 1.44269504088896341f;
}  // namespace scan_detail

// ---------------------------------------------------------------------------------------------
// Implementations
// ---------------------------------------------------------------------------------------------

namespace scan_detail {

// Threads for `items` independent work items of `cost` flops each; 1 when too small to split.
inline int thread_count(int requested, std::int64_t items, std::int64_t cost) {
#ifdef _OPENMP
    int nt = requested > 0 ? requested : num_threads();
    if (omp_in_parallel() || items * cost < 65536) nt = 1;
    return static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(nt, items)));
#else
    (void)requested, (void)items, (void)cost;
    return 1;
#endif
}

// Runs f(i) for i in [0, n) on up to nt threads leased from the budget (core/parallel.hpp). Items are handed out one
// at a time: they are large (tens of microseconds), and a thread that shares its core with another process then takes
// fewer.
template <class F>
inline void parallel_items(std::int64_t n, int nt, F&& f) {
#ifdef _OPENMP
    const ThreadLease lease(nt);
    if (lease.count() > 1) {
#pragma omp parallel for num_threads(lease.count()) schedule(dynamic, 1)
        for (std::int64_t i = 0; i < n; ++i) f(i);
        return;
    }
#endif
    (void)nt;
    for (std::int64_t i = 0; i < n; ++i) f(i);
}

// Loads the first n <= W floats of p, zero in the other lanes.
inline Vf load_part(const float* p, int n) {
    if (n == W) return Vf::load_unaligned(p);
    alignas(64) float buf[W] = {};
    for (int i = 0; i < n; ++i) buf[i] = p[i];
    return Vf::load_aligned(buf);
}

// Stores the first n <= W lanes of v to p.
inline void store_part(float* p, Vf v, int n) {
    if (n == W) return v.store_unaligned(p);
    alignas(64) float buf[W];
    v.store_aligned(buf);
    for (int i = 0; i < n; ++i) p[i] = buf[i];
}

// Scans channels [c0, c0 + nc) of sequence b, nc <= W, one channel per lane. The NS states live in
// registers (NS = 0: the run-time d_state, up to 64) and the time loop is innermost.
template <int NS>
inline void scan_channel_block(const ScanArgs& a, int b, int c0, int nc) {
    constexpr int NMAX = NS > 0 ? NS : scan_max_state;
    const int N = NS > 0 ? NS : a.d_state;
    const int L = a.length, E = a.d_inner;
    const std::int64_t ldu = vlmamba::detail::scan_row_stride(a.ld_u, E);
    const std::int64_t ldd = vlmamba::detail::scan_row_stride(a.ld_delta, E);
    const std::int64_t ldz = vlmamba::detail::scan_row_stride(a.ld_z, E);
    const std::int64_t ldy = vlmamba::detail::scan_row_stride(a.ld_y, E);
    const std::int64_t ldbc = vlmamba::detail::scan_row_stride(a.ld_bc, N);
    const float* u = a.u + b * L * ldu + c0;                  // (L, nc) rows of stride ldu
    const float* dl = a.delta + b * L * ldd + c0;             // (L, nc)
    const float* z = a.z ? a.z + b * L * ldz + c0 : nullptr;  // (L, nc)
    const float* Bm = a.Bm + b * L * ldbc;                    // (L, N)
    const float* Cm = a.Cm + b * L * ldbc;                    // (L, N)
    float* y = a.y + b * L * ldy + c0;                        // (L, nc)
    float* hs = a.h ? a.h + (std::int64_t(b) * E + c0) * N : nullptr;  // (nc, N)

    // Transpose A (scaled by log2 e, so exp(dt A) = exp2(dt A2)) and h into one batch per state.
    Vf a2[NMAX], h[NMAX];
    alignas(64) float buf[W];
    for (int n = 0; n < N; ++n) {
        for (int l = 0; l < W; ++l) buf[l] = l < nc ? a.A[std::int64_t(c0 + l) * N + n] * log2e : 0.0f;
        a2[n] = Vf::load_aligned(buf);
        for (int l = 0; l < W; ++l) buf[l] = a.h_in && l < nc ? hs[std::int64_t(l) * N + n] : 0.0f;
        h[n] = Vf::load_aligned(buf);
    }
    const Vf bias = a.delta_bias ? load_part(a.delta_bias + c0, nc) : Vf(0.0f);  // (nc)
    const Vf dv = a.D ? load_part(a.D + c0, nc) : Vf(0.0f);                        // (nc)

    // Time in chunks of T steps: softplus and the gate (long latency, independent across t) run in
    // their own loops, so that only the recurrence over h is sequential.
    constexpr int T = 32;
    Vf dt_c[T], du_c[T], y_c[T];  // (T, nc) each
    for (int t0 = 0; t0 < L; t0 += T) {
        const int nt = std::min(T, L - t0);
        for (int i = 0; i < nt; ++i) {
            const int t = t0 + i;
            Vf dt = load_part(dl + t * ldd, nc) + bias;  // delta + delta_bias
            if (a.delta_softplus) dt = vec::softplus<Arch>(dt);
            dt_c[i] = dt;
            du_c[i] = dt * load_part(u + t * ldu, nc);   // delta u
        }
        for (int i = 0; i < nt; ++i) {
            const Vf dt = dt_c[i], du = du_c[i];
            const float* Bt = Bm + (t0 + i) * ldbc;  // (N)
            const float* Ct = Cm + (t0 + i) * ldbc;  // (N)
            Vf y0(0.0f), y1(0.0f), y2(0.0f), y3(0.0f);  // four chains for the C contraction
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 16
#endif
            for (int n = 0; n < N; ++n) {
                const Vf dA = vec::exp2<Arch>(dt * a2[n]);    // exp(delta A)
                h[n] = xsimd::fma(dA, h[n], du * Vf(Bt[n]));  // h = dA h + delta B u
                Vf& acc = (n & 3) == 0 ? y0 : (n & 3) == 1 ? y1 : (n & 3) == 2 ? y2 : y3;
                acc = xsimd::fma(h[n], Vf(Ct[n]), acc);       // y = sum_n h C
            }
            y_c[i] = (y0 + y1) + (y2 + y3);
        }
        for (int i = 0; i < nt; ++i) {
            const int t = t0 + i;
            Vf yt = xsimd::fma(dv, load_part(u + t * ldu, nc), y_c[i]);  // y + D u
            if (z) yt *= vec::silu<Arch>(load_part(z + t * ldz, nc));     // y silu(z)
            store_part(y + t * ldy, yt, nc);
        }
    }

    if (hs) {
        for (int n = 0; n < N; ++n) {
            h[n].store_aligned(buf);
            for (int l = 0; l < nc; ++l) hs[std::int64_t(l) * N + n] = buf[l];
        }
    }
}

// Scans channel c of sequence b with the states across lanes: NV batches per state row. Bp and Cp
// are B and C of this sequence packed to NV * W columns, zero padded.
template <int NV>
inline void scan_state_channel(const ScanArgs& a, int b, int c, const float* Bp, const float* Cp, int nv_rt) {
    constexpr int VMAX = NV > 0 ? NV : scan_max_state / W + 1;
    const int nv = NV > 0 ? NV : nv_rt;
    const int NP = nv * W;
    const int L = a.length, E = a.d_inner, N = a.d_state;
    const std::int64_t ldu = vlmamba::detail::scan_row_stride(a.ld_u, E);
    const std::int64_t ldd = vlmamba::detail::scan_row_stride(a.ld_delta, E);
    const std::int64_t ldz = vlmamba::detail::scan_row_stride(a.ld_z, E);
    const std::int64_t ldy = vlmamba::detail::scan_row_stride(a.ld_y, E);
    const float* u = a.u + b * L * ldu + c;
    const float* dl = a.delta + b * L * ldd + c;
    const float* z = a.z ? a.z + b * L * ldz + c : nullptr;
    float* y = a.y + b * L * ldy + c;
    float* hs = a.h ? a.h + (std::int64_t(b) * E + c) * N : nullptr;  // (N)
    const float* Ac = a.A + std::int64_t(c) * N;                      // (N)

    Vf a2[VMAX], h[VMAX];
    for (int v = 0; v < nv; ++v) {
        const int nn = std::min(W, N - v * W);
        a2[v] = nn > 0 ? load_part(Ac + v * W, nn) * Vf(log2e) : Vf(0.0f);
        h[v] = a.h_in && nn > 0 ? load_part(hs + v * W, nn) : Vf(0.0f);
    }
    const float bias = a.delta_bias ? a.delta_bias[c] : 0.0f;
    const float dc = a.D ? a.D[c] : 0.0f;
    for (int t = 0; t < L; ++t) {
        float dt = dl[t * ldd] + bias;
        if (a.delta_softplus) dt = ref::softplus(dt);
        const float ut = u[t * ldu];
        const Vf vdt(dt), vdu(dt * ut);
        Vf acc(0.0f);
        for (int v = 0; v < nv; ++v) {
            const Vf dA = vec::exp2<Arch>(vdt * a2[v]);
            h[v] = xsimd::fma(dA, h[v], vdu * Vf::load_unaligned(Bp + t * NP + v * W));
            acc = xsimd::fma(h[v], Vf::load_unaligned(Cp + t * NP + v * W), acc);
        }
        float yt = xsimd::hadd(acc) + dc * ut;
        if (z) yt *= ref::silu(z[t * ldz]);
        y[t * ldy] = yt;
    }
    if (hs) {
        for (int v = 0; v < nv; ++v) {
            const int nn = std::min(W, N - v * W);
            if (nn > 0) store_part(hs + v * W, h[v], nn);
        }
    }
}

}  // namespace scan_detail

inline void selective_scan_channels(const ScanArgs& a, int n_threads) {
    using namespace scan_detail;
    check(a);
    const int E = a.d_inner;
    const std::int64_t blocks = (E + W - 1) / W;
    const std::int64_t items = a.batch * blocks;
    const int nt = thread_count(n_threads, items, std::int64_t(a.length) * W * a.d_state * 20);
    parallel_items(items, nt, [&](std::int64_t i) {
        const int b = static_cast<int>(i / blocks);
        const int c0 = static_cast<int>(i % blocks) * W;
        const int nc = std::min(W, E - c0);
        switch (a.d_state) {  // the states stay in registers for these sizes
            case 4: return scan_channel_block<4>(a, b, c0, nc);
            case 8: return scan_channel_block<8>(a, b, c0, nc);
            case 16: return scan_channel_block<16>(a, b, c0, nc);
            case 32: return scan_channel_block<32>(a, b, c0, nc);
            case 64: return scan_channel_block<64>(a, b, c0, nc);
            default: return scan_channel_block<0>(a, b, c0, nc);
        }
    });
}

inline void selective_scan_states(const ScanArgs& a, int n_threads) {
    using namespace scan_detail;
    check(a);
    const int L = a.length, E = a.d_inner, N = a.d_state;
    const int nv = (N + W - 1) / W;
    const int NP = nv * W;
    const std::int64_t ldbc = vlmamba::detail::scan_row_stride(a.ld_bc, N);
    // Pack B and C to NP columns, zero padded: (B, L, NP) each.
    std::vector<float> Bp(std::size_t(a.batch) * L * NP, 0.0f), Cp(Bp.size(), 0.0f);
    for (std::int64_t r = 0; r < std::int64_t(a.batch) * L; ++r) {
        for (int n = 0; n < N; ++n) {
            Bp[r * NP + n] = a.Bm[r * ldbc + n];
            Cp[r * NP + n] = a.Cm[r * ldbc + n];
        }
    }
    const std::int64_t items = std::int64_t(a.batch) * E;
    const int nt = thread_count(n_threads, items, std::int64_t(L) * NP * 20);
    parallel_items(items, nt, [&](std::int64_t i) {
        const int b = static_cast<int>(i / E), c = static_cast<int>(i % E);
        const float* bp = Bp.data() + std::int64_t(b) * L * NP;  // (L, NP)
        const float* cp = Cp.data() + std::int64_t(b) * L * NP;  // (L, NP)
        switch (nv) {
            case 1: return scan_state_channel<1>(a, b, c, bp, cp, nv);
            case 2: return scan_state_channel<2>(a, b, c, bp, cp, nv);
            case 4: return scan_state_channel<4>(a, b, c, bp, cp, nv);
            default: return scan_state_channel<0>(a, b, c, bp, cp, nv);
        }
    });
}

// Channels in chunks of S: softplus(delta + bias) and silu(z) vectorised across channels first, then
// the states across lanes, one channel at a time (h (B, E, N) is contiguous along N).
inline void selective_state_update(const StateUpdateArgs& a, int n_threads) {
    using namespace scan_detail;
    check(a);
    constexpr int S = 256;
    const int E = a.d_inner, N = a.d_state;
    const int nv = (N + W - 1) / W;
    const std::int64_t ldx = vlmamba::detail::scan_row_stride(a.ld_x, E);
    const std::int64_t ldd = vlmamba::detail::scan_row_stride(a.ld_delta, E);
    const std::int64_t ldz = vlmamba::detail::scan_row_stride(a.ld_z, E);
    const std::int64_t ldy = vlmamba::detail::scan_row_stride(a.ld_y, E);
    const std::int64_t ldbc = vlmamba::detail::scan_row_stride(a.ld_bc, N);
    const std::int64_t chunks = (E + S - 1) / S;
    const std::int64_t items = std::int64_t(a.batch) * chunks;
    const int nt = thread_count(n_threads, items, std::int64_t(S) * N * 20);
    parallel_items(items, nt, [&](std::int64_t i) {
        const int b = static_cast<int>(i / chunks);
        const int c0 = static_cast<int>(i % chunks) * S, cn = std::min(S, E - c0);
        alignas(64) float dt_s[S], gate_s[S];  // (cn) each
        for (int c = 0; c < cn; c += W) {
            const int nc = std::min(W, cn - c);
            Vf dt = load_part(a.delta + b * ldd + c0 + c, nc);
            if (a.delta_bias) dt += load_part(a.delta_bias + c0 + c, nc);
            if (a.delta_softplus) dt = vec::softplus<Arch>(dt);
            dt.store_aligned(dt_s + c);
            if (a.z) vec::silu<Arch>(load_part(a.z + b * ldz + c0 + c, nc)).store_aligned(gate_s + c);
        }
        const float* Bm = a.Bm + b * ldbc;  // (N)
        const float* Cm = a.Cm + b * ldbc;  // (N)
        for (int j = 0; j < cn; ++j) {
            const int c = c0 + j;
            float* h = a.h + (std::int64_t(b) * E + c) * N;  // (N)
            const float* Ac = a.A + std::int64_t(c) * N;     // (N)
            const float xt = a.x[b * ldx + c];
            const Vf vdt(dt_s[j] * log2e), vdx(dt_s[j] * xt);
            Vf acc(0.0f);
            for (int v = 0; v < nv; ++v) {
                const int o = v * W, nn = std::min(W, N - o);
                const Vf dA = vec::exp2<Arch>(vdt * load_part(Ac + o, nn));               // exp(dt A)
                const Vf hv = xsimd::fma(dA, load_part(h + o, nn), vdx * load_part(Bm + o, nn));
                store_part(h + o, hv, nn);
                acc = xsimd::fma(hv, load_part(Cm + o, nn), acc);
            }
            float yt = xsimd::hadd(acc);
            if (a.D) yt += a.D[c] * xt;
            if (a.z) yt *= gate_s[j];
            a.y[b * ldy + c] = yt;
        }
    });
}

}  // namespace vlmamba::cpu

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
