// Causal depthwise conv1d over time for prefill (PyTorch Conv1d, padding K-1, first L outputs), SiLU fused, and the
// decode conv state taken from the last K inputs.
#include "common.cuh"
#include "vlmamba/cuda/api.hpp"

namespace vlmamba::cuda {
namespace detail {

// One thread per (b, t, c): channels fastest, so loads of x rows are coalesced.
__global__ void conv1d_kernel(Conv1dArgs a) {
    const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const int L = a.length, E = a.d_inner, K = a.k;
    if (i >= std::int64_t(a.batch) * L * E) return;
    const int c = int(i % E);
    const std::int64_t bt = i / E;
    const int t = int(bt % L), b = int(bt / L);
    const std::int64_t ldx = a.ld_x ? a.ld_x : E;
    const float* x = a.x + std::int64_t(b) * L * ldx;
    const float* w = a.w + std::int64_t(c) * K;
    float acc = a.bias ? a.bias[c] : 0.0f;
    const float* before = a.state_in ? a.state_in + (std::int64_t(b) * E + c) * K : nullptr;  // x_{-K..-1}
    for (int j = 0; j < K; ++j) {
        const int tt = t - K + 1 + j;
        if (tt >= 0) acc += w[j] * x[tt * ldx + c];
        else if (before) acc += w[j] * before[K + tt];
    }
    a.y[i] = a.silu ? silu(acc) : acc;
    if (a.state && t == L - 1) {
        float* st = a.state + (std::int64_t(b) * E + c) * K;
        for (int j = 0; j < K; ++j) {
            const int tt = L - K + j;
            st[j] = tt >= 0 ? x[tt * ldx + c] : before ? before[K + tt] : 0.0f;
        }
    }
}

}  // namespace detail

void causal_conv1d(const Conv1dArgs& a, Stream s) {
    VLM_CHECK(a.batch >= 1 && a.length >= 1 && a.d_inner >= 1 && a.k >= 1 && a.k <= 8, "causal_conv1d",
              "expected B, L, E >= 1 and 1 <= K <= 8, got (B, L, E, K) = (", a.batch, ", ", a.length, ", ",
              a.d_inner, ", ", a.k, ")");
    const std::int64_t n = std::int64_t(a.batch) * a.length * a.d_inner;
    detail::conv1d_kernel<<<detail::blocks_for(n, 256), 256, 0, detail::stream(s)>>>(a);
    detail::check_launch("causal_conv1d");
}

}  // namespace vlmamba::cuda
