// The Mamba-1 mixer (mamba_ssm modules/mamba_simple.py: Mamba.forward / Mamba.step; HF modeling_mamba.py:
// MambaMixer.slow_forward): in_proj, causal conv1d + SiLU, x_proj, dt_proj, selective scan with D and the z gate,
// out_proj. Prefill runs the whole sequence; step() advances B sequences by one token each. Both run on the device
// of the weights and inputs (the ops dispatch).
#pragma once
#include <string>

#include "vlmamba/layers/param.hpp"
#include "vlmamba/ops/conv.hpp"
#include "vlmamba/ops/elementwise.hpp"
#include "vlmamba/ops/gemm.hpp"
#include "vlmamba/ops/selective_scan.hpp"

namespace vlmamba {

struct MambaMixer {
    struct Config {
        int d_model, d_inner, d_state, d_conv, dt_rank;
        bool conv_bias = true;
    };
    Config cfg;
    Tensor in_proj_weight;   // (2E, D)
    Tensor conv1d_weight;    // (E, K)
    Tensor conv1d_bias;      // (E) or undefined
    Tensor x_proj_weight;    // (R + 2N, E)
    Tensor dt_proj_weight;   // (E, R)
    Tensor dt_proj_bias;     // (E)
    Tensor A;                // (E, N) = −exp(A_log), f32
    Tensor D;                // (E)
    Tensor out_proj_weight;  // (D, E)

    static MambaMixer load(const Config& c, const std::string& prefix, const ParamSource& src);

    // Copies of the weights on `device`, the large matrices (in_proj, x_proj, dt_proj, out_proj) in `weights`
    // (F32 or BF16); the small parameters stay f32.
    MambaMixer to(Device device, DType weights = DType::F32) const;
    // u (L, D) -> (L, D). When conv_state (E, K) and ssm_state (E, N) are given, the sequence continues from them
    // (zeros: a fresh sequence) and they receive the final states.
    Tensor forward(const Tensor& u, Tensor* conv_state = nullptr, Tensor* ssm_state = nullptr) const;
    // u (B, D) -> (B, D); conv_state (B, E, K) and ssm_state (B, E, N) advance by one token.
    Tensor step(const Tensor& u, Tensor& conv_state, Tensor& ssm_state) const;
};

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline MambaMixer MambaMixer::load(const Config& c, const std::string& p, const ParamSource& src) {
    const auto& fetch = src.fetch;
    const std::int64_t D_ = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv, R = c.dt_rank;
    MambaMixer m{c, {}, {}, {}, {}, {}, {}, {}, {}, {}};
    m.in_proj_weight = fetch(p + "in_proj.weight", {2 * E, D_});
    m.conv1d_weight = fetch(p + "conv1d.weight", {E, 1, K});
    if (c.conv_bias) m.conv1d_bias = fetch(p + "conv1d.bias", {E});
    m.x_proj_weight = fetch(p + "x_proj.weight", {R + 2 * N, E});
    m.dt_proj_weight = fetch(p + "dt_proj.weight", {E, R});
    m.dt_proj_bias = fetch(p + "dt_proj.bias", {E});
    Tensor A_log = fetch(p + "A_log", {E, N});
    m.D = fetch(p + "D", {E});
    m.out_proj_weight = fetch(p + "out_proj.weight", {D_, E});
    if (m.conv1d_weight.defined()) m.conv1d_weight = m.conv1d_weight.contiguous().reshape({E, K}).to(DType::F32);
    if (A_log.defined()) m.A = -exp(A_log);  // mamba_simple.py: A = -torch.exp(self.A_log.float())
    return m;
}

inline MambaMixer MambaMixer::to(Device device, DType weights) const {
    auto big = [&](const Tensor& t) { return t.to(weights).to(device); };
    auto small = [&](const Tensor& t) { return t.defined() ? t.to(DType::F32).to(device) : Tensor(); };
    return {cfg, big(in_proj_weight), small(conv1d_weight), small(conv1d_bias), big(x_proj_weight),
            big(dt_proj_weight), small(dt_proj_bias), small(A), small(D), big(out_proj_weight)};
}

inline Tensor MambaMixer::forward(const Tensor& u, Tensor* conv_state, Tensor* ssm_state) const {
    const std::int64_t L = u.size(0), E = cfg.d_inner, N = cfg.d_state, R = cfg.dt_rank;
    check_shape("mamba_mixer", "input", u, {L, cfg.d_model});
    if (ssm_state) check_shape("mamba_mixer", "ssm_state", *ssm_state, {E, N});
    const Device dev = same_device("mamba_mixer", u, in_proj_weight);
    Tensor xz = linear(u, in_proj_weight);                                    // (L, 2E)
    Tensor xc = causal_conv1d(xz.slice(1, 0, E), conv1d_weight, conv1d_bias, /*silu=*/true, conv_state);  // (L, E)
    Tensor x_dbl = linear(xc, x_proj_weight);                                 // (L, R + 2N)
    Tensor dt = linear(x_dbl.slice(1, 0, R), dt_proj_weight);                 // (L, E), bias added in the scan
    Tensor y = Tensor::empty({L, E}, DType::F32, dev);                        // (L, E)
    ScanArgs a{};
    a.batch = 1;
    a.length = int(L);
    a.d_inner = int(E);
    a.d_state = int(N);
    a.u = xc.data<float>();
    a.delta = dt.data<float>();
    a.A = A.data<float>();
    a.Bm = x_dbl.data<float>() + R;      // (L, N) rows of x_dbl
    a.Cm = x_dbl.data<float>() + R + N;  // (L, N) rows of x_dbl
    a.ld_bc = int(R + 2 * N);
    a.D = D.data<float>();
    a.z = xz.data<float>() + E;          // (L, E) right half of xz
    a.ld_z = int(2 * E);
    a.delta_bias = dt_proj_bias.data<float>();
    a.delta_softplus = true;
    a.h = ssm_state ? ssm_state->data<float>() : nullptr;
    a.h_in = ssm_state != nullptr;  // a fresh state is zeros
    a.y = y.data<float>();
    selective_scan(a, dev);
    return linear(y, out_proj_weight);  // (L, D)
}

inline Tensor MambaMixer::step(const Tensor& u, Tensor& conv_state, Tensor& ssm_state) const {
    const std::int64_t Bn = u.size(0), E = cfg.d_inner, N = cfg.d_state, R = cfg.dt_rank;
    check_shape("mamba_mixer.step", "input", u, {Bn, cfg.d_model});
    check_shape("mamba_mixer.step", "ssm_state", ssm_state, {Bn, E, N});
    const Device dev = same_device("mamba_mixer.step", u, in_proj_weight, ssm_state);
    Tensor xz = linear(u, in_proj_weight);  // (B, 2E)
    Tensor xc = causal_conv1d_update(conv_state, xz.slice(1, 0, E), conv1d_weight, conv1d_bias, true);  // (B, E)
    Tensor x_dbl = linear(xc, x_proj_weight);                                // (B, R + 2N)
    Tensor dt = linear(x_dbl.slice(1, 0, R), dt_proj_weight);                // (B, E)
    Tensor y = Tensor::empty({Bn, E}, DType::F32, dev);                      // (B, E)
    StateUpdateArgs a{};
    a.batch = int(Bn);
    a.d_inner = int(E);
    a.d_state = int(N);
    a.h = ssm_state.data<float>();
    a.x = xc.data<float>();
    a.delta = dt.data<float>();
    a.A = A.data<float>();
    a.Bm = x_dbl.data<float>() + R;      // (B, N) rows of x_dbl
    a.Cm = x_dbl.data<float>() + R + N;
    a.ld_bc = int(R + 2 * N);
    a.D = D.data<float>();
    a.z = xz.data<float>() + E;          // (B, E) right half of xz
    a.ld_z = int(2 * E);
    a.delta_bias = dt_proj_bias.data<float>();
    a.delta_softplus = true;
    a.y = y.data<float>();
    selective_state_update(a, dev);
    return linear(y, out_proj_weight);  // (B, D)
}

}  // namespace vlmamba
