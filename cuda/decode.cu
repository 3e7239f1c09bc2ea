// The fused decode step for a batch: softplus(Δ + bias), state update, C readout, D skip and SiLU gate in one
// kernel, and the conv update (shift, conv, bias, SiLU) in another.
#include "common.cuh"
#include "vlmamba/cuda/api.hpp"

namespace vlmamba::cuda {
namespace detail {

// One thread per (sequence, channel, group of 4 states); G threads per channel combine y with shuffles.
template <int G>
__global__ void state_update_kernel(StateUpdateArgs a) {
    constexpr int SPT = 4;
    const int E = a.d_inner, N = a.d_state;
    const std::int64_t gid = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const std::int64_t ch = gid / G;
    const int g = int(gid % G);
    const bool valid = ch < std::int64_t(a.batch) * E;
    const int b = valid ? int(ch / E) : 0, c = valid ? int(ch % E) : 0;
    const std::int64_t ldx = a.ld_x ? a.ld_x : E, ldd = a.ld_delta ? a.ld_delta : E;
    const std::int64_t ldz = a.ld_z ? a.ld_z : E, ldy = a.ld_y ? a.ld_y : E, ldbc = a.ld_bc ? a.ld_bc : N;
    float yt = 0.0f, xt = 0.0f;
    if (valid) {
        float dt = a.delta[b * ldd + c] + (a.delta_bias ? a.delta_bias[c] : 0.0f);
        if (a.delta_softplus) dt = softplus(dt);
        xt = a.x[b * ldx + c];
        const float dx = dt * xt;
        float* h = a.h + (std::int64_t(b) * E + c) * N;
        const float* Ac = a.A + std::int64_t(c) * N;
#pragma unroll
        for (int k = 0; k < SPT; ++k) {
            const int n = g * SPT + k;
            if (n < N) {
                const float hn = expf(dt * Ac[n]) * h[n] + dx * a.Bm[b * ldbc + n];
                h[n] = hn;
                yt += hn * a.Cm[b * ldbc + n];
            }
        }
    }
#pragma unroll
    for (int off = 1; off < G; off <<= 1) yt += __shfl_xor_sync(0xffffffffu, yt, off);
    if (valid && g == 0) {
        if (a.D) yt += a.D[c] * xt;
        if (a.z) yt *= silu(a.z[b * ldz + c]);
        a.y[b * ldy + c] = yt;
    }
}

__global__ void conv_update_kernel(ConvUpdateArgs a) {
    const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= std::int64_t(a.batch) * a.d_inner) return;
    const int E = a.d_inner, K = a.k;
    const int b = int(i / E), c = int(i % E);
    const std::int64_t ldx = a.ld_x ? a.ld_x : E;
    float* st = a.state + i * K;
    const float* w = a.w + std::int64_t(c) * K;
    float acc = a.bias ? a.bias[c] : 0.0f;
    for (int j = 0; j < K - 1; ++j) {
        st[j] = st[j + 1];
        acc += st[j] * w[j];
    }
    const float xn = a.x[b * ldx + c];
    st[K - 1] = xn;
    acc += xn * w[K - 1];
    a.y[i] = a.silu ? silu(acc) : acc;
}

}  // namespace detail

void selective_state_update(const StateUpdateArgs& a, Stream s) {
    check(a);
    const int groups = (a.d_state + 3) / 4;
    const int G = groups <= 1 ? 1 : groups <= 2 ? 2 : groups <= 4 ? 4 : groups <= 8 ? 8 : 16;
    const std::int64_t threads = std::int64_t(a.batch) * a.d_inner * G;
    const int bs = 256, nb = detail::blocks_for(threads, bs);
    auto st = detail::stream(s);
    switch (G) {
        case 1: detail::state_update_kernel<1><<<nb, bs, 0, st>>>(a); break;
        case 2: detail::state_update_kernel<2><<<nb, bs, 0, st>>>(a); break;
        case 4: detail::state_update_kernel<4><<<nb, bs, 0, st>>>(a); break;
        case 8: detail::state_update_kernel<8><<<nb, bs, 0, st>>>(a); break;
        default: detail::state_update_kernel<16><<<nb, bs, 0, st>>>(a); break;
    }
    detail::check_launch("selective_state_update");
}

void causal_conv1d_update(const ConvUpdateArgs& a, Stream s) {
    VLM_CHECK(a.batch >= 1 && a.d_inner >= 1 && a.k >= 1 && a.k <= 8, "causal_conv1d_update",
              "expected B, E >= 1 and 1 <= K <= 8, got (B, E, K) = (", a.batch, ", ", a.d_inner, ", ", a.k, ")");
    const std::int64_t n = std::int64_t(a.batch) * a.d_inner;
    detail::conv_update_kernel<<<detail::blocks_for(n, 256), 256, 0, detail::stream(s)>>>(a);
    detail::check_launch("causal_conv1d_update");
}

}  // namespace vlmamba::cuda
