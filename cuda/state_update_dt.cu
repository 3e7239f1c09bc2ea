// The decode step of the SSM with dt_proj fused in: each channel's G threads form Δ = dt_x · W_dt[c] themselves
// (16-byte weight loads, a shuffle sum), then softplus, the state update, the C readout, D and the SiLU gate, as
// in decode.cu. This removes the dt_proj product and its launch from every layer of the decode step.
#include "pack.cuh"
#include "vlmamba/cuda/decode.hpp"

namespace vlmamba::cuda {
namespace detail {

template <int G, class W, bool VEC>
__global__ void state_update_dt_kernel(DtStateUpdateArgs d) {
    constexpr int SPT = 4;
    constexpr int VW = VEC ? 16 / int(sizeof(W)) : 1;
    const StateUpdateArgs& a = d.s;
    const int E = a.d_inner, N = a.d_state, R = d.dt_rank;
    const std::int64_t gid = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const std::int64_t ch = gid / G;
    const int g = int(gid % G);
    const bool valid = ch < std::int64_t(a.batch) * E;
    const int b = valid ? int(ch / E) : 0, c = valid ? int(ch % E) : 0;
    const std::int64_t ldx = a.ld_x ? a.ld_x : E, ldz = a.ld_z ? a.ld_z : E, ldy = a.ld_y ? a.ld_y : E;
    const std::int64_t ldbc = a.ld_bc ? a.ld_bc : N, lddx = d.ld_dt_x ? d.ld_dt_x : R;

    // Δ = dt_x[b] · W_dt[c], split over the G threads of the channel
    float dt = 0.0f;
    if (valid) {
        const float* xr = d.dt_x + b * lddx;
        const W* wr = static_cast<const W*>(d.dt_w) + std::int64_t(c) * R;
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
        dt += a.delta_bias ? a.delta_bias[c] : 0.0f;
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

template <class W, bool VEC>
void launch_state_update_dt(const DtStateUpdateArgs& d, int G, cudaStream_t s) {
    const std::int64_t threads = std::int64_t(d.s.batch) * d.s.d_inner * G;
    const int bs = 256, nb = blocks_for(threads, bs);
    switch (G) {
        case 1: state_update_dt_kernel<1, W, VEC><<<nb, bs, 0, s>>>(d); break;
        case 2: state_update_dt_kernel<2, W, VEC><<<nb, bs, 0, s>>>(d); break;
        case 4: state_update_dt_kernel<4, W, VEC><<<nb, bs, 0, s>>>(d); break;
        case 8: state_update_dt_kernel<8, W, VEC><<<nb, bs, 0, s>>>(d); break;
        default: state_update_dt_kernel<16, W, VEC><<<nb, bs, 0, s>>>(d); break;
    }
}

}  // namespace detail

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
    const int groups = (a.d_state + 3) / 4;
    const int G = groups <= 1 ? 1 : groups <= 2 ? 2 : groups <= 4 ? 4 : groups <= 8 ? 8 : 16;
    const int vw = d.dt_w_dtype == DType::BF16 ? 8 : 4;
    const int lddx = d.ld_dt_x ? d.ld_dt_x : d.dt_rank;
    auto al = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
    const bool vec = d.dt_rank % vw == 0 && lddx % 4 == 0 && al(d.dt_x) && al(d.dt_w);
    auto st = detail::stream(s);
    if (d.dt_w_dtype == DType::BF16)
        vec ? detail::launch_state_update_dt<__nv_bfloat16, true>(d, G, st)
            : detail::launch_state_update_dt<__nv_bfloat16, false>(d, G, st);
    else
        vec ? detail::launch_state_update_dt<float, true>(d, G, st) : detail::launch_state_update_dt<float, false>(d, G, st);
    detail::check_launch(op);
}

}  // namespace vlmamba::cuda
