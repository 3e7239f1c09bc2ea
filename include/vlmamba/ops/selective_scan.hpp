// Selective scan (Mamba-1 S6, SPEC §4.3) and its single-step decode update (SPEC §4.4):
// POD argument structs, the variant tags, the scalar reference and the dispatch.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "vlmamba/core/device.hpp"
#include "vlmamba/core/error.hpp"
#include "vlmamba/core/scan_args.hpp"
#include "vlmamba/cuda/api.hpp"

namespace vlmamba {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

template <class V>
concept ScanVariant =
    std::is_same_v<V, ScanRef> || std::is_same_v<V, ScanStates> || std::is_same_v<V, ScanChannels>;

// Runs the scan; n_threads = 0 uses the OpenMP default. Writes y and, if a.h, the final state.
template <ScanVariant V = ScanChannels>
void selective_scan(const ScanArgs& a, int n_threads = 0);

// One decode step: h = exp(dt A) h + (dt x) B, y = h C + D x, y *= silu(z).
template <ScanVariant V = ScanChannels>
void selective_state_update(const StateUpdateArgs& a, int n_threads = 0);

// On the device whose memory the pointers of `a` are in: the CPU kernels above or the CUDA box (f32).
void selective_scan(const ScanArgs& a, Device device);
void selective_state_update(const StateUpdateArgs& a, Device device);

namespace ref {
inline float softplus(float x);
inline float silu(float x);
inline void selective_scan(const ScanArgs& a);
inline void selective_state_update(const StateUpdateArgs& a);
}  // namespace ref

namespace cpu {  // defined in vlmamba/cpu/selective_scan.hpp
inline void selective_scan_states(const ScanArgs& a, int n_threads);
inline void selective_scan_channels(const ScanArgs& a, int n_threads);
inline void selective_state_update(const StateUpdateArgs& a, int n_threads);
}  // namespace cpu

// ---------------------------------------------------------------------------------------------
// Implementations
// ---------------------------------------------------------------------------------------------

namespace detail {
inline std::int64_t scan_row_stride(int ld, int contiguous) { return ld != 0 ? ld : contiguous; }
}  // namespace detail


namespace ref {

// torch.nn.functional.softplus with beta 1, threshold 20.
inline float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

// Mirrors mamba_ssm selective_scan_interface.py: selective_scan_ref, channel by channel.
inline void selective_scan(const ScanArgs& a) {
    check(a);
    const int L = a.length, E = a.d_inner, N = a.d_state;
    const std::int64_t ldu = detail::scan_row_stride(a.ld_u, E), ldd = detail::scan_row_stride(a.ld_delta, E);
    const std::int64_t ldz = detail::scan_row_stride(a.ld_z, E), ldy = detail::scan_row_stride(a.ld_y, E);
    const std::int64_t ldbc = detail::scan_row_stride(a.ld_bc, N);
    float h[scan_max_state];
    for (int b = 0; b < a.batch; ++b) {
        const float* u = a.u + b * L * ldu;          // (L, E)
        const float* dl = a.delta + b * L * ldd;     // (L, E)
        const float* z = a.z ? a.z + b * L * ldz : nullptr;
        const float* Bm = a.Bm + b * L * ldbc;       // (L, N)
        const float* Cm = a.Cm + b * L * ldbc;       // (L, N)
        float* y = a.y + b * L * ldy;                // (L, E)
        for (int c = 0; c < E; ++c) {
            float* hs = a.h ? a.h + (std::int64_t(b) * E + c) * N : nullptr;  // (N)
            for (int n = 0; n < N; ++n) h[n] = a.h_in ? hs[n] : 0.0f;
            const float* Ac = a.A + std::int64_t(c) * N;                   // (N)
            for (int t = 0; t < L; ++t) {
                float dt = dl[t * ldd + c] + (a.delta_bias ? a.delta_bias[c] : 0.0f);
                if (a.delta_softplus) dt = softplus(dt);
                const float ut = u[t * ldu + c];
                const float du = dt * ut;
                float yt = 0.0f;
                for (int n = 0; n < N; ++n) {
                    // x = deltaA * x + deltaB_u;  y = einsum(x, C)
                    h[n] = std::exp(dt * Ac[n]) * h[n] + du * Bm[t * ldbc + n];
                    yt += h[n] * Cm[t * ldbc + n];
                }
                if (a.D) yt += a.D[c] * ut;                 // out = y + u * D
                if (z) yt *= silu(z[t * ldz + c]);          // out = out * silu(z)
                y[t * ldy + c] = yt;
            }
            if (hs)
                for (int n = 0; n < N; ++n) hs[n] = h[n];
        }
    }
}

// Mirrors mamba_ssm selective_state_update_ref; same arithmetic, in the same order, as one step
// of ref::selective_scan.
inline void selective_state_update(const StateUpdateArgs& a) {
    check(a);
    const int E = a.d_inner, N = a.d_state;
    const std::int64_t ldx = detail::scan_row_stride(a.ld_x, E), ldd = detail::scan_row_stride(a.ld_delta, E);
    const std::int64_t ldz = detail::scan_row_stride(a.ld_z, E), ldy = detail::scan_row_stride(a.ld_y, E);
    const std::int64_t ldbc = detail::scan_row_stride(a.ld_bc, N);
    for (int b = 0; b < a.batch; ++b) {
        const float* Bm = a.Bm + b * ldbc;  // (N)
        const float* Cm = a.Cm + b * ldbc;  // (N)
        for (int c = 0; c < E; ++c) {
            float* h = a.h + (std::int64_t(b) * E + c) * N;  // (N)
            const float* Ac = a.A + std::int64_t(c) * N;     // (N)
            float dt = a.delta[b * ldd + c] + (a.delta_bias ? a.delta_bias[c] : 0.0f);
            if (a.delta_softplus) dt = softplus(dt);
            const float xt = a.x[b * ldx + c];
            const float dx = dt * xt;
            float yt = 0.0f;
            for (int n = 0; n < N; ++n) {
                h[n] = std::exp(dt * Ac[n]) * h[n] + dx * Bm[n];
                yt += h[n] * Cm[n];
            }
            if (a.D) yt += a.D[c] * xt;
            if (a.z) yt *= silu(a.z[b * ldz + c]);
            a.y[b * ldy + c] = yt;
        }
    }
}

}  // namespace ref

namespace detail {
// The sequences of a with their own A, D and delta_bias, one at a time (the CPU kernels share one set).
inline ScanArgs scan_item(const ScanArgs& a, int b) {
    const std::int64_t L = a.length, E = a.d_inner, N = a.d_state;
    auto row = [](int ld, std::int64_t contiguous) { return ld ? std::int64_t(ld) : contiguous; };
    ScanArgs s = a;
    s.batch = 1;
    s.u += b * L * row(a.ld_u, E);
    s.delta += b * L * row(a.ld_delta, E);
    if (s.z) s.z += b * L * row(a.ld_z, E);
    s.y += b * L * row(a.ld_y, E);
    s.Bm += b * L * row(a.ld_bc, N);
    s.Cm += b * L * row(a.ld_bc, N);
    s.A += b * a.stride_A;
    if (s.D) s.D += b * a.stride_D;
    if (s.delta_bias) s.delta_bias += b * a.stride_bias;
    if (s.h) s.h += b * E * N;
    s.stride_A = s.stride_D = s.stride_bias = 0;
    return s;
}
}  // namespace detail

template <ScanVariant V>
void selective_scan(const ScanArgs& a, int n_threads) {
    if (a.stride_A || a.stride_D || a.stride_bias) {
        check(a);
        for (int b = 0; b < a.batch; ++b) selective_scan<V>(detail::scan_item(a, b), n_threads);
        return;
    }
    if constexpr (std::is_same_v<V, ScanRef>) {
        (void)n_threads;
        ref::selective_scan(a);
    } else if constexpr (std::is_same_v<V, ScanStates>) {
        cpu::selective_scan_states(a, n_threads);
    } else {
        cpu::selective_scan_channels(a, n_threads);
    }
}

template <ScanVariant V>
void selective_state_update(const StateUpdateArgs& a, int n_threads) {
    if constexpr (std::is_same_v<V, ScanRef>) {
        (void)n_threads;
        ref::selective_state_update(a);
    } else {
        cpu::selective_state_update(a, n_threads);  // one vectorised kernel (across d_state)
    }
}

inline void selective_scan(const ScanArgs& a, Device device) {
    if (device == Device::Cpu) return selective_scan(a);
    if (!(a.stride_A || a.stride_D || a.stride_bias)) return cuda::selective_scan(a, DType::F32);
    check(a);  // the GPU kernel shares one A, D and bias per launch: one launch per sequence
    for (int b = 0; b < a.batch; ++b) cuda::selective_scan(detail::scan_item(a, b), DType::F32);
}

inline void selective_state_update(const StateUpdateArgs& a, Device device) {
    if (device == Device::Cuda) cuda::selective_state_update(a);
    else selective_state_update(a);
}

}  // namespace vlmamba

#include "vlmamba/cpu/selective_scan.hpp"
