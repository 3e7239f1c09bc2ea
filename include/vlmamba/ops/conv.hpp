// Causal depthwise conv1d over time (Mamba), its single-step update, and SiLU fused on request.
#pragma once
#include <cstring>

#include "vlmamba/core/functors.hpp"
#include "vlmamba/core/parallel.hpp"
#include "vlmamba/core/tensor.hpp"
#include "vlmamba/cuda/api.hpp"

namespace vlmamba {

// y_t[c] = b[c] + Σ_j w[c, j] · x_{t−K+1+j}[c], x_{<0} = 0  (PyTorch Conv1d, padding K−1, first L outputs).
// x: (L, E) f32 with unit channel stride (any row stride); w: (E, K) or (E, 1, K); b: (E) or undefined.
// With state (E, K) f32: x_{<0} are its last K−1 inputs (oldest first; zeros: a fresh sequence), and it receives
// the last K inputs after x (SPEC §4.4).
Tensor causal_conv1d(const Tensor& x, const Tensor& w, const Tensor& b, bool silu, Tensor* state = nullptr);  // (L, E)

// One decode step for B sequences: shifts x (B, E) into state (B, E, K) (oldest first) and returns the conv output.
Tensor causal_conv1d_update(Tensor& state, const Tensor& x, const Tensor& w, const Tensor& b, bool silu);  // (B, E)

namespace ref {
Tensor causal_conv1d(const Tensor& x, const Tensor& w, const Tensor& b, bool silu);
}

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {
inline Tensor conv_weight_2d(const Tensor& w, std::int64_t E, const char* op) {
    Tensor w2 = w.ndim() == 3 && w.size(1) == 1 ? w.contiguous().reshape({w.size(0), w.size(2)}) : w;
    VLM_CHECK(w2.ndim() == 2 && w2.size(0) == E, op, "weight has shape ", shape_str(w.shape()),
              ", expected (", E, ", K) or (", E, ", 1, K)");
    return w2.to(DType::F32);
}
inline void check_conv_bias(const Tensor& b, std::int64_t E, const char* op) {
    if (b.defined())
        VLM_CHECK(b.ndim() == 1 && b.size(0) == E, op, "bias has shape ", shape_str(b.shape()), ", expected (", E, ",)");
}
}  // namespace detail

namespace detail {
// The GPU kernel reads the old state and writes the new one to another buffer, then the new one is copied back.
inline Tensor causal_conv1d_cuda(const Tensor& x, const Tensor& wt, const Tensor& b, bool silu, Tensor* state) {
    const std::int64_t L = x.size(0), E = x.size(1), K = wt.size(1);
    VLM_CHECK(K <= 8, "causal_conv1d", "on cuda, expected a kernel of at most 8 taps, got ", K);
    const Tensor xc = x.dtype() == DType::F32 && x.stride(1) == 1 ? x : x.contiguous().to(DType::F32);
    const Tensor bias = b.defined() ? b.to(DType::F32) : Tensor();
    Tensor y = Tensor::empty({L, E}, DType::F32, Device::Cuda);  // (L, E)
    Tensor next = state ? Tensor::empty({E, K}, DType::F32, Device::Cuda) : Tensor();
    cuda::Conv1dArgs a{1, int(L), int(E), int(K), xc.data<float>(), wt.data<float>(),
                       bias.defined() ? bias.data<float>() : nullptr, silu, y.data<float>(),
                       state ? next.data<float>() : nullptr, int(xc.stride(0))};
    a.state_in = state ? state->data<float>() : nullptr;
    cuda::causal_conv1d(a);
    if (state) copy_into(*state, next);
    return y;
}
}  // namespace detail

inline Tensor causal_conv1d(const Tensor& x, const Tensor& w, const Tensor& b, bool silu, Tensor* state) {
    constexpr const char* op = "causal_conv1d";
    VLM_CHECK(x.ndim() == 2, op, "x has shape ", shape_str(x.shape()), ", expected (L, E)");
    const std::int64_t L = x.size(0), E = x.size(1);
    const Tensor wt = detail::conv_weight_2d(w, E, op);  // (E, K)
    detail::check_conv_bias(b, E, op);
    const std::int64_t K = wt.size(1);
    if (state) {
        check_shape(op, "state", *state, {E, K});
        VLM_CHECK(state->dtype() == DType::F32 && state->is_contiguous(), op, "expected a contiguous F32 state");
    }
    if (same_device(op, x, wt, b, state ? *state : Tensor()) == Device::Cuda)
        return detail::causal_conv1d_cuda(x, wt, b, silu, state);
    if (state) {
        // Continue after the state: the conv sees [its last K-1 inputs; x], and the state keeps the last K inputs.
        Tensor xe = Tensor::empty({K - 1 + L, E});  // (K-1+L, E)
        float* pe = xe.data<float>();
        const float* sp = state->data<float>();
        for (std::int64_t j = 0; j + 1 < K; ++j)
            for (std::int64_t c = 0; c < E; ++c) pe[j * E + c] = sp[c * K + j + 1];
        Tensor tail = xe.slice(0, K - 1, K - 1 + L);
        copy_into(tail, x);
        float* so = state->data<float>();
        for (std::int64_t c = 0; c < E; ++c)
            for (std::int64_t j = 0; j < K; ++j) so[c * K + j] = pe[(L - 1 + j) * E + c];
        return causal_conv1d(xe, wt, b, silu).slice(0, K - 1, K - 1 + L).contiguous();
    }
    const Tensor xc = x.dtype() == DType::F32 && x.stride(1) == 1 ? x : x.contiguous().to(DType::F32);
    const std::int64_t ldx = xc.stride(0);
    // Transposed taps (K, E) so the inner loop runs over contiguous channels.
    Tensor wk = wt.transpose(0, 1).contiguous();  // (K, E)
    Tensor bias = b.defined() ? b.to(DType::F32) : Tensor::zeros({E});
    Tensor y = Tensor::empty({L, E});  // (L, E)
    const float* xp = xc.data<float>();
    const float* wp = wk.data<float>();
    const float* bp = bias.data<float>();
    float* yp = y.data<float>();
    using B = fn::batch;
    constexpr std::int64_t W = B::size;
    parallel_for(L, [&](std::int64_t t) {
        float* yr = yp + t * E;
        std::memcpy(yr, bp, std::size_t(E) * 4);
        for (std::int64_t j = 0; j < K; ++j) {
            const std::int64_t s = t - K + 1 + j;
            if (s < 0) continue;
            const float* xr = xp + s * ldx;
            const float* wr = wp + j * E;
            std::int64_t c = 0;
            for (; c + W <= E; c += W)
                xsimd::fma(B::load_unaligned(wr + c), B::load_unaligned(xr + c), B::load_unaligned(yr + c))
                    .store_unaligned(yr + c);
            for (; c < E; ++c) yr[c] += wr[c] * xr[c];
        }
        if (silu) {
            std::int64_t c = 0;
            for (; c + W <= E; c += W) fn::Silu{}(B::load_unaligned(yr + c)).store_unaligned(yr + c);
            for (; c < E; ++c) yr[c] = fn::Silu{}(yr[c]);
        }
    }, E * K);
    return y;
}

inline Tensor causal_conv1d_update(Tensor& state, const Tensor& x, const Tensor& w, const Tensor& b, bool silu) {
    constexpr const char* op = "causal_conv1d_update";
    VLM_CHECK(x.ndim() == 2, op, "x has shape ", shape_str(x.shape()), ", expected (B, E)");
    const std::int64_t Bn = x.size(0), E = x.size(1);
    const Tensor wt = detail::conv_weight_2d(w, E, op);  // (E, K)
    detail::check_conv_bias(b, E, op);
    const std::int64_t K = wt.size(1);
    check_shape(op, "state", state, {Bn, E, K});
    VLM_CHECK(state.dtype() == DType::F32 && state.is_contiguous(), op, "expected a contiguous F32 state");
    if (same_device(op, state, x, wt, b) == Device::Cuda) {
        VLM_CHECK(x.dtype() == DType::F32 && x.stride(1) == 1, op, "on cuda, expected F32 x with contiguous rows");
        const Tensor bias = b.defined() ? b.to(DType::F32) : Tensor();
        Tensor y = Tensor::empty({Bn, E}, DType::F32, Device::Cuda);  // (B, E)
        cuda::causal_conv1d_update({int(Bn), int(E), int(K), state.data<float>(), x.data<float>(), wt.data<float>(),
                                    bias.defined() ? bias.data<float>() : nullptr, silu, y.data<float>(),
                                    int(x.stride(0))});
        return y;
    }
    const Tensor xc = x.to(DType::F32);
    const Tensor bias = b.defined() ? b.to(DType::F32) : Tensor::zeros({E});
    Tensor y = Tensor::empty({Bn, E});  // (B, E)
    float* sp = state.data<float>();
    const float* wp = wt.data<float>();
    parallel_for(Bn * E, [&](std::int64_t i) {
        const std::int64_t c = i % E;
        float* s = sp + i * K;
        std::memmove(s, s + 1, std::size_t(K - 1) * 4);
        s[K - 1] = xc.data<float>()[i];
        float acc = bias.data<float>()[c];
        for (std::int64_t j = 0; j < K; ++j) acc += wp[c * K + j] * s[j];
        y.data<float>()[i] = silu ? fn::Silu{}(acc) : acc;
    }, K * 4);
    return y;
}

namespace ref {
inline Tensor causal_conv1d(const Tensor& x, const Tensor& w, const Tensor& b, bool silu) {
    const std::int64_t L = x.size(0), E = x.size(1);
    const Tensor wt = detail::conv_weight_2d(w, E, "ref::causal_conv1d");
    const std::int64_t K = wt.size(1);
    Tensor y = Tensor::empty({L, E});
    for (std::int64_t t = 0; t < L; ++t)
        for (std::int64_t c = 0; c < E; ++c) {
            double acc = b.defined() ? b.at({c}) : 0.0;
            for (std::int64_t j = 0; j < K; ++j) {
                const std::int64_t s = t - K + 1 + j;
                if (s >= 0) acc += double(wt.at({c, j})) * x.at({s, c});
            }
            const float v = float(acc);
            y.data<float>()[t * E + c] = silu ? v / (1.f + std::exp(-v)) : v;
        }
    return y;
}
}  // namespace ref

}  // namespace vlmamba
