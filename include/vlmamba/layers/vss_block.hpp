// The VSS module of VL-Mamba's connector, design A (SPEC §2.3): VMamba's SS2D (vmamba.py: SS2D.forward and
// SS2D.forward_corev0 / cross_selective_scan) over an H×W token grid, with the scan directions given by a policy
// type (layers/scan_policies.hpp):
//   [x, z] = in_proj(X);  x = SiLU(DWConv(x));  y_k = scan_k(unfold_k(x));  y = Σ_k fold_k(y_k)
//   out = out_proj(LayerNorm(y) ⊙ SiLU(z))
// Per direction k: own x_proj / dt_proj / A / D; no z gate inside the scan. The residual belongs to the connector.
#pragma once
#include <cmath>
#include <string>

#include "vlmamba/core/parallel.hpp"
#include "vlmamba/layers/param.hpp"
#include "vlmamba/layers/scan_policies.hpp"
#include "vlmamba/ops/cross_scan.hpp"
#include "vlmamba/ops/elementwise.hpp"
#include "vlmamba/ops/gemm.hpp"
#include "vlmamba/ops/norm.hpp"
#include "vlmamba/ops/selective_scan.hpp"

namespace vlmamba {

// ---------------------------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------------------------

// Intermediates of one VssBlock forward, for golden tests.
struct VssTrace {
    Tensor scan_out;  // (K, L, D_i) each direction's scan output, in that direction's own sequence order
    Tensor merged;    // (L, D_i)    the un-permuted sum of the directions, before out_norm
};

// Depthwise k×k conv2d over a row-major H×W grid with zero padding k/2 ("same"), bias, then SiLU if asked.
// x: (H·W, C) f32 with unit column stride (any row stride); w: (C, 1, k, k) or (C, k, k); b: (C). k odd.
Tensor depthwise_conv2d(const Tensor& x, std::int64_t H, std::int64_t W, const Tensor& w, const Tensor& b,
                        bool silu);  // -> (H·W, C)

template <ScanPolicy Scan>
struct VssBlock {
    static constexpr int K = Scan::K;

    struct Config {
        int d_model = 0;  // C, the token width
        int d_inner = 0;  // D_i = expand·C
        int d_state = 16;
        int d_conv = 3;
        int dt_rank = 0;  // R
        float norm_eps = 1e-5f;
        // D_i = expand·width; dt_rank <= 0 means "auto" = ceil(width / 16).
        static Config make(int width, int d_state = 16, int expand = 2, int d_conv = 3, int dt_rank = 0);
    };
    Config cfg;
    Tensor in_proj_weight;                   // (2·D_i, C)
    Tensor conv2d_weight;                    // (D_i, 1, k, k)
    Tensor conv2d_bias;                      // (D_i)
    Tensor x_proj_weight;                    // (K, R + 2N, D_i)
    Tensor dt_projs_weight;                  // (K, D_i, R)
    Tensor dt_projs_bias;                    // (K, D_i)
    Tensor A;                                // (K·D_i, N) = −exp(A_logs), rows direction-major
    Tensor Ds;                               // (K·D_i)
    Tensor out_norm_weight, out_norm_bias;   // (D_i)
    Tensor out_proj_weight;                  // (C, D_i)

    // `prefix` ends with "vss." (e.g. "mm_projector.vss."). Missing or mis-shaped tensors are recorded by `src`.
    static VssBlock load(const Config& c, const std::string& prefix, const ParamSource& src);
    VssBlock to(Device d) const {
        auto f = [&](const Tensor& t) { return t.defined() ? t.to(DType::F32).to(d) : Tensor(); };
        return {cfg, f(in_proj_weight), f(conv2d_weight), f(conv2d_bias), f(x_proj_weight), f(dt_projs_weight),
                f(dt_projs_bias), f(A), f(Ds), f(out_norm_weight), f(out_norm_bias), f(out_proj_weight)};
    }

    // x (H·W, C) tokens of an H×W grid in row-major order -> (H·W, C). `trace`, if given, receives intermediates.
    Tensor forward(const Tensor& x, int H, int W, VssTrace* trace = nullptr) const;
};

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline Tensor depthwise_conv2d(const Tensor& x, std::int64_t H, std::int64_t W, const Tensor& w, const Tensor& b,
                               bool silu) {
    constexpr const char* op = "depthwise_conv2d";
    VLM_CHECK(x.ndim() == 2 && x.size(0) == H * W, op, "x has shape ", shape_str(x.shape()),
              ", expected (H·W, C) with H·W = ", H * W, " for grid (", H, ", ", W, ")");
    const std::int64_t C = x.size(1);
    const std::int64_t k = w.ndim() >= 2 ? w.size(-1) : 0;
    VLM_CHECK((w.ndim() == 4 && w.shape() == Shape{C, 1, k, k}) || (w.ndim() == 3 && w.shape() == Shape{C, k, k}), op,
              "weight has shape ", shape_str(w.shape()), ", expected (", C, ", 1, k, k)");
    VLM_CHECK(k % 2 == 1, op, "expected an odd kernel size, got ", k);
    check_shape(op, "bias", b, {C});
    const Tensor xc = x.dtype() == DType::F32 && x.stride(1) == 1 ? x : x.contiguous().to(DType::F32);
    const Tensor bias = b.to(DType::F32);
    if (same_device(op, x, w, b) == Device::Cuda) {
        const Tensor taps = w.contiguous().reshape({C, k * k}).to(Device::Cpu).transpose(0, 1).contiguous()
                                .to(DType::F32).to(Device::Cuda);  // (k·k, C), small
        Tensor y = Tensor::empty({H * W, C}, DType::F32, Device::Cuda);  // (H·W, C)
        cuda::depthwise_conv2d({int(H), int(W), int(C), int(k), xc.data<float>(), taps.data<float>(),
                                bias.data<float>(), silu, y.data<float>(), xc.stride(0)});
        return y;
    }
    const Tensor taps = w.contiguous().reshape({C, k * k}).transpose(0, 1).contiguous().to(DType::F32);  // (k·k, C)
    Tensor y = Tensor::empty({H * W, C});  // (H·W, C)
    const float* xp = xc.data<float>();
    const float* tp = taps.data<float>();
    const float* bp = bias.data<float>();
    float* yp = y.data<float>();
    const std::int64_t ldx = xc.stride(0), pad = k / 2;
    using B = fn::batch;
    constexpr std::int64_t Wv = B::size;
    // One output token per item; channels are the vector axis (SS2D.forward: self.conv2d, then self.act).
    parallel_for(H * W, [&](std::int64_t p) {
        const std::int64_t h = p / W, wq = p % W;
        float* yr = yp + p * C;
        std::memcpy(yr, bp, std::size_t(C) * sizeof(float));
        for (std::int64_t i = 0; i < k; ++i) {
            const std::int64_t hs = h + i - pad;
            if (hs < 0 || hs >= H) continue;
            for (std::int64_t j = 0; j < k; ++j) {
                const std::int64_t ws = wq + j - pad;
                if (ws < 0 || ws >= W) continue;
                const float* xr = xp + (hs * W + ws) * ldx;
                const float* tr = tp + (i * k + j) * C;
                std::int64_t c = 0;
                for (; c + Wv <= C; c += Wv)
                    xsimd::fma(B::load_unaligned(tr + c), B::load_unaligned(xr + c), B::load_unaligned(yr + c))
                        .store_unaligned(yr + c);
                for (; c < C; ++c) yr[c] += tr[c] * xr[c];
            }
        }
        if (silu) {
            std::int64_t c = 0;
            for (; c + Wv <= C; c += Wv) fn::Silu{}(B::load_unaligned(yr + c)).store_unaligned(yr + c);
            for (; c < C; ++c) yr[c] = fn::Silu{}(yr[c]);
        }
    }, C * k * k);
    return y;
}

template <ScanPolicy Scan>
typename VssBlock<Scan>::Config VssBlock<Scan>::Config::make(int width, int d_state, int expand, int d_conv,
                                                             int dt_rank) {
    Config c;
    c.d_model = width;
    c.d_inner = expand * width;
    c.d_state = d_state;
    c.d_conv = d_conv;
    c.dt_rank = dt_rank > 0 ? dt_rank : (width + 15) / 16;  // VMamba: math.ceil(d_model / 16)
    return c;
}

template <ScanPolicy Scan>
VssBlock<Scan> VssBlock<Scan>::load(const Config& c, const std::string& p, const ParamSource& src) {
    constexpr const char* op = "vss";
    VLM_CHECK(c.d_model >= 1 && c.d_inner >= 1 && c.dt_rank >= 1, op,
              "expected d_model, d_inner, dt_rank >= 1, got (", c.d_model, ", ", c.d_inner, ", ", c.dt_rank, ")");
    VLM_CHECK(c.d_state >= 1 && c.d_state <= scan_max_state, op, "expected d_state in [1, ", scan_max_state,
              "], got ", c.d_state);
    VLM_CHECK(c.d_conv >= 1 && c.d_conv % 2 == 1, op, "expected an odd d_conv, got ", c.d_conv);
    const std::int64_t C = c.d_model, E = c.d_inner, N = c.d_state, R = c.dt_rank, k = c.d_conv;
    const auto& fetch = src.fetch;
    VssBlock m;
    m.cfg = c;
    m.in_proj_weight = fetch(p + "in_proj.weight", {2 * E, C});
    m.conv2d_weight = fetch(p + "conv2d.weight", {E, 1, k, k});
    m.conv2d_bias = fetch(p + "conv2d.bias", {E});
    m.x_proj_weight = fetch(p + "x_proj_weight", {K, R + 2 * N, E});
    m.dt_projs_weight = fetch(p + "dt_projs_weight", {K, E, R});
    m.dt_projs_bias = fetch(p + "dt_projs_bias", {K, E});
    const Tensor A_logs = fetch(p + "A_logs", {K * E, N});
    m.Ds = fetch(p + "Ds", {K * E});
    m.out_norm_weight = fetch(p + "out_norm.weight", {E});
    m.out_norm_bias = fetch(p + "out_norm.bias", {E});
    m.out_proj_weight = fetch(p + "out_proj.weight", {C, E});
    // The scan reads these through raw pointers: keep them contiguous f32.
    for (Tensor* t : {&m.x_proj_weight, &m.dt_projs_weight, &m.dt_projs_bias, &m.Ds})
        if (t->defined()) *t = t->to(DType::F32);
    if (A_logs.defined()) m.A = -exp(A_logs);  // SS2D.forward_core: As = -torch.exp(self.A_logs.float())
    return m;
}

template <ScanPolicy Scan>
Tensor VssBlock<Scan>::forward(const Tensor& x, int H, int W, VssTrace* trace) const {
    constexpr const char* op = "vss";
    VLM_CHECK(H >= 1 && W >= 1, op, "expected a grid of at least (1, 1), got (", H, ", ", W, ")");
    const std::int64_t L = std::int64_t(H) * W;
    VLM_CHECK(x.ndim() == 2, op, "x has shape ", shape_str(x.shape()), ", expected (H·W, C) = (", L, ", ",
              cfg.d_model, ")");
    VLM_CHECK(x.size(0) == L, op, "expected H·W = ", L, " tokens for grid (", H, ", ", W, "), got ", x.size(0));
    check_shape(op, "x", x, {L, cfg.d_model});
    const std::int64_t E = cfg.d_inner, N = cfg.d_state, R = cfg.dt_rank, Q = R + 2 * N;

    // SS2D.forward: xz = self.in_proj(x); x, z = xz.chunk(2, dim=-1)
    const Tensor xz = linear(x, in_proj_weight);                                      // (L, 2E)
    // SS2D.forward: x = self.act(self.conv2d(x)), channels-first in VMamba, channels-last here
    const Tensor xc = depthwise_conv2d(xz.slice(1, 0, E), H, W, conv2d_weight, conv2d_bias, true);  // (L, E)

    // CrossScan.forward: one copy of the grid per direction, each in its own visiting order
    const ScanOrder order = scan_order<Scan>(H, W);
    const Tensor xs = cross_scan(xc, order);                                          // (K, L, E)

    // forward_corev0: x_dbl = einsum(xs, x_proj_weight). A row-wise projection commutes with the row permutation,
    // so all K projections run as one GEMM on the grid, and only the narrow result is unfolded.
    const Tensor x_dbl_grid = linear(xc, x_proj_weight.reshape({K * Q, E}));          // (L, K·Q)
    const Tensor x_dbl = cross_scan_blocks(x_dbl_grid, order);                        // (K, L, Q) = [dt_low, B, C]

    // forward_corev0: dts = einsum(dts, dt_projs_weight); the bias and softplus happen inside the scan
    Tensor dts = Tensor::empty({K, L, E}, DType::F32, x.device());                    // (K, L, E)
    for (int k = 0; k < K; ++k) {
        Tensor dk = dts.select(0, k);                                                 // (L, E)
        linear_into(dk, x_dbl.select(0, k).slice(1, 0, R), dt_projs_weight.select(0, k));
    }

    // forward_corev0: selective_scan(xs, dts, As, Bs, Cs, Ds, z=None, delta_bias, delta_softplus=True): the K
    // directions as K sequences of one scan, each with its own A, D and dt bias.
    Tensor ys = Tensor::empty({K, L, E}, DType::F32, x.device());                     // (K, L, E)
    ScanArgs a{};
    a.batch = K;
    a.length = int(L);
    a.d_inner = int(E);
    a.d_state = int(N);
    a.u = xs.data<float>();
    a.delta = dts.data<float>();
    a.A = A.data<float>();
    a.Bm = x_dbl.data<float>() + R;      // (K, L, N) rows of stride Q
    a.Cm = x_dbl.data<float>() + R + N;  // (K, L, N) rows of stride Q
    a.ld_bc = int(Q);
    a.D = Ds.data<float>();
    a.delta_bias = dt_projs_bias.data<float>();
    a.delta_softplus = true;
    a.y = ys.data<float>();
    a.stride_A = E * N;
    a.stride_D = a.stride_bias = E;
    selective_scan(a, x.device());

    // CrossMerge.forward: back to grid positions, summed over directions
    const Tensor merged = cross_merge(ys, order);                                     // (L, E)

    // forward_corev0: y = self.out_norm(y); SS2D.forward: y = y * F.silu(z)
    Tensor yg = layer_norm(merged, out_norm_weight, out_norm_bias, cfg.norm_eps);    // (L, E)
    mul_silu_(yg, xz.slice(1, E, 2 * E));
    if (trace) *trace = VssTrace{ys, merged};
    // SS2D.forward: out = self.out_proj(y)
    return linear(yg, out_proj_weight);                                               // (L, C)
}

}  // namespace vlmamba
