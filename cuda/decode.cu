// The decode-step kernels of the SSM: the conv state update, and the state update with dt_proj optionally fused
// in. All are launched with launch_pdl: before pdl_wait() they read only weights and their own state.
#include "pack.cuh"
#include "vlmamba/cuda/api.hpp"
#include "vlmamba/cuda/decode.hpp"

namespace vlmamba::cuda {
namespace detail {

// One thread per (sequence, channel): shifts x into the state and writes the conv output.
__global__ void conv_update_kernel(ConvUpdateArgs a) {
    const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const bool valid = i < std::int64_t(a.batch) * a.d_inner;
    const int E = a.d_inner, K = a.k;
    const int b = valid ? int(i / E) : 0, c = valid ? int(i % E) : 0;
    float st[8], w[8];
    float acc = 0.0f;
    if (valid) {
#pragma unroll
        for (int j = 0; j < 8; ++j)
            if (j < K) st[j] = a.state[i * K + j], w[j] = a.w[std::int64_t(c) * K + j];
        acc = a.bias ? a.bias[c] : 0.0f;
    }
    pdl_wait();
    pdl_trigger();
    if (!valid) return;
    const float xn = a.x[b * std::int64_t(a.ld_x ? a.ld_x : E) + c];
#pragma unroll
    for (int j = 0; j < 7; ++j)
        if (j < K - 1) {
            st[j] = st[j + 1];
            acc = fmaf(st[j], w[j], acc);
            a.state[i * K + j] = st[j];
        }
    a.state[i * K + K - 1] = xn;
#pragma unroll
    for (int j = 0; j < 8; ++j)
        if (j == K - 1) acc = fmaf(xn, w[j], acc);
    a.y[i] = a.silu ? silu(acc) : acc;
}

// G threads per (sequence, channel), SPT states each. With dt_w, each channel's G threads first form
// Δ = dt_x · W_dt[c] themselves (16-byte weight loads, a shuffle sum); without, Δ is read. Then softplus, the
// state update, the C readout, D and the SiLU gate (mamba_ssm selective_state_update).
template <int G, int SPT, class W, bool VEC>
__global__ void state_update_kernel(DtStateUpdateArgs d) {
    constexpr int VW = VEC ? 16 / int(sizeof(W)) : 1;
    const StateUpdateArgs& a = d.s;
    const int E = a.d_inner, N = a.d_state, R = d.dt_rank;
    const std::int64_t gid = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const std::int64_t ch = gid / G;
    const int g = int(gid % G);
    const bool valid = ch < std::int64_t(a.batch) * E;
    const int b = valid ? int(ch / E) : 0, c = valid ? int(ch % E) : 0;
    const std::int64_t ldx = a.ld_x ? a.ld_x : E, ldz = a.ld_z ? a.ld_z : E, ldy = a.ld_y ? a.ld_y : E;
    const std::int64_t ldd = a.ld_delta ? a.ld_delta : E;
    const std::int64_t ldbc = a.ld_bc ? a.ld_bc : N, lddx = d.ld_dt_x ? d.ld_dt_x : R;
    const W* wr = d.dt_w ? static_cast<const W*>(d.dt_w) + std::int64_t(c) * R : nullptr;

    // before the wait: this thread's weights and state
    float hv[SPT], Av[SPT];
    float* h = a.h + (std::int64_t(b) * E + c) * N;
#pragma unroll
    for (int k = 0; k < SPT; ++k) {
        const int n = g * SPT + k;
        const bool ok = valid && n < N;
        hv[k] = ok ? h[n] : 0.0f;
        Av[k] = ok ? a.A[std::int64_t(c) * N + n] : 0.0f;
    }
    const float bias = valid && a.delta_bias ? a.delta_bias[c] : 0.0f;
    const float Dc = valid && a.D ? a.D[c] : 0.0f;
    if (valid && wr)
        for (int r0 = g * VW; r0 < R; r0 += G * VW) prefetch_l2(wr + r0);
    pdl_wait();
    pdl_trigger();

    float dt = 0.0f;
    if (valid && wr) {  // Δ = dt_x[b] · W_dt[c], split over the G threads of the channel
        const float* xr = d.dt_x + b * lddx;
        if constexpr (VEC) {
            for (int r0 = g * VW; r0 < R; r0 += G * VW) {
                float wf[VW];
                unpack(load_stream(wr + r0), wf);
#pragma unroll
                for (int e = 0; e < VW; e += 4) {
                    const float4 q = __ldg(reinterpret_cast<const float4*>(xr + r0 + e));
                    dt = fmaf(wf[e], q.x, fmaf(wf[e + 1], q.y, fmaf(wf[e + 2], q.z, fmaf(wf[e + 3], q.w, dt))));
                }
            }
        } else {
            for (int r = g; r < R; r += G) dt = fmaf(load_f(wr + r), xr[r], dt);
        }
    }
#pragma unroll
    for (int off = 1; off < G; off <<= 1) dt += __shfl_xor_sync(0xffffffffu, dt, off);

    float yt = 0.0f, xt = 0.0f;
    if (valid) {
        if (!wr) dt = a.delta[b * ldd + c];
        dt += bias;
        if (a.delta_softplus) dt = softplus(dt);
        xt = a.x[b * ldx + c];
        const float dx = dt * xt;
#pragma unroll
        for (int k = 0; k < SPT; ++k) {
            const int n = g * SPT + k;
            if (n < N) {
                const float hn = __expf(dt * Av[k]) * hv[k] + dx * a.Bm[b * ldbc + n];
                h[n] = hn;
                yt += hn * a.Cm[b * ldbc + n];
            }
        }
    }
#pragma unroll
    for (int off = 1; off < G; off <<= 1) yt += __shfl_xor_sync(0xffffffffu, yt, off);
    if (valid && g == 0) {
        yt += Dc * xt;
        if (a.z) yt *= silu(a.z[b * ldz + c]);
        a.y[b * ldy + c] = yt;
    }
}

template <class W, bool VEC>
void launch_state_update(const DtStateUpdateArgs& d, cudaStream_t s) {
    // 2 states per thread while that gives at most 16 threads per channel (more warps for a latency-bound step),
    // else 4
    const int N = d.s.d_state;
    const int spt = N <= 32 ? 2 : 4;
    const int groups = (N + spt - 1) / spt;
    const int G = groups <= 1 ? 1 : groups <= 2 ? 2 : groups <= 4 ? 4 : groups <= 8 ? 8 : 16;
    const std::int64_t threads = std::int64_t(d.s.batch) * d.s.d_inner * G;
    const int bs = 256, nb = blocks_for(threads, bs);
    if (spt == 4) return launch_pdl(state_update_kernel<16, 4, W, VEC>, nb, bs, s, d);
    switch (G) {
        case 1: return launch_pdl(state_update_kernel<1, 2, W, VEC>, nb, bs, s, d);
        case 2: return launch_pdl(state_update_kernel<2, 2, W, VEC>, nb, bs, s, d);
        case 4: return launch_pdl(state_update_kernel<4, 2, W, VEC>, nb, bs, s, d);
        case 8: return launch_pdl(state_update_kernel<8, 2, W, VEC>, nb, bs, s, d);
        default: return launch_pdl(state_update_kernel<16, 2, W, VEC>, nb, bs, s, d);
    }
}

}  // namespace detail

void selective_state_update(const StateUpdateArgs& a, Stream s) {
    check(a);
    detail::launch_state_update<float, false>({a, nullptr, nullptr, DType::F32, 0, 0}, detail::stream(s));
    detail::check_launch("selective_state_update");
}

void selective_state_update_dt(const DtStateUpdateArgs& d, Stream s) {
    constexpr const char* op = "selective_state_update_dt";
    const StateUpdateArgs& a = d.s;
    VLM_CHECK(a.batch >= 1 && a.d_inner >= 1 && a.d_state >= 1 && a.d_state <= scan_max_state && d.dt_rank >= 1, op,
              "expected B, E, R >= 1 and 1 <= N <= ", scan_max_state, ", got (B, E, N, R) = (", a.batch, ", ",
              a.d_inner, ", ", a.d_state, ", ", d.dt_rank, ")");
    VLM_CHECK(a.h && a.x && a.A && a.Bm && a.Cm && a.y && d.dt_x && d.dt_w, op,
              "expected non-null h, x, A, Bm, Cm, y, dt_x and dt_w, got a null pointer");
    VLM_CHECK(d.dt_w_dtype == DType::F32 || d.dt_w_dtype == DType::BF16, op, "expected F32 or BF16 dt_w, got ",
              dtype_name(d.dt_w_dtype));
    VLM_CHECK(d.ld_dt_x == 0 || d.ld_dt_x >= d.dt_rank, op, "expected ld_dt_x = 0 or >= dt_rank = ", d.dt_rank,
              ", got ", d.ld_dt_x);
    const int vw = d.dt_w_dtype == DType::BF16 ? 8 : 4;
    const int lddx = d.ld_dt_x ? d.ld_dt_x : d.dt_rank;
    auto al = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
    const bool vec = d.dt_rank % vw == 0 && lddx % 4 == 0 && al(d.dt_x) && al(d.dt_w);
    auto st = detail::stream(s);
    if (d.dt_w_dtype == DType::BF16)
        vec ? detail::launch_state_update<__nv_bfloat16, true>(d, st)
            : detail::launch_state_update<__nv_bfloat16, false>(d, st);
    else
        vec ? detail::launch_state_update<float, true>(d, st) : detail::launch_state_update<float, false>(d, st);
    detail::check_launch(op);
}

void causal_conv1d_update(const ConvUpdateArgs& a, Stream s) {
    VLM_CHECK(a.batch >= 1 && a.d_inner >= 1 && a.k >= 1 && a.k <= 8, "causal_conv1d_update",
              "expected B, E >= 1 and 1 <= K <= 8, got (B, E, K) = (", a.batch, ", ", a.d_inner, ", ", a.k, ")");
    const std::int64_t n = std::int64_t(a.batch) * a.d_inner;
    detail::launch_pdl(detail::conv_update_kernel, detail::blocks_for(n, 256), 256, detail::stream(s), a);
    detail::check_launch("causal_conv1d_update");
}

}  // namespace vlmamba::cuda
