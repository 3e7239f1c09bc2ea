// Elementwise math as functors with a scalar and an xsimd batch form (Eigen's operator() + packetOp).
#pragma once
#include <cmath>
#include <xsimd/xsimd.hpp>

namespace vlmamba::fn {

using batch = xsimd::batch<float>;

struct Add { template <class T> T operator()(const T& a, const T& b) const { return a + b; } };
struct Sub { template <class T> T operator()(const T& a, const T& b) const { return a - b; } };
struct Mul { template <class T> T operator()(const T& a, const T& b) const { return a * b; } };
struct Div { template <class T> T operator()(const T& a, const T& b) const { return a / b; } };
struct Max { float operator()(float a, float b) const { return std::fmax(a, b); }
             batch operator()(const batch& a, const batch& b) const { return xsimd::max(a, b); } };

struct Neg { template <class T> T operator()(const T& x) const { return -x; } };
struct Exp {
    float operator()(float x) const { return std::exp(x); }
    batch operator()(const batch& x) const { return xsimd::exp(x); }
};
struct Sqrt {
    float operator()(float x) const { return std::sqrt(x); }
    batch operator()(const batch& x) const { return xsimd::sqrt(x); }
};
struct Sigmoid {
    float operator()(float x) const { return 1.f / (1.f + std::exp(-x)); }
    batch operator()(const batch& x) const { return batch(1.f) / (batch(1.f) + xsimd::exp(-x)); }
};
// x * sigmoid(x)
struct Silu {
    float operator()(float x) const { return x / (1.f + std::exp(-x)); }
    batch operator()(const batch& x) const { return x / (batch(1.f) + xsimd::exp(-x)); }
};
// PyTorch softplus with beta 1, threshold 20: x above 20 passes through.
struct Softplus {
    float operator()(float x) const { return x > 20.f ? x : std::log1p(std::exp(x)); }
    batch operator()(const batch& x) const {
        return xsimd::select(x > batch(20.f), x, xsimd::log1p(xsimd::exp(x)));
    }
};
// Exact GELU: 0.5 x (1 + erf(x / sqrt 2)).
struct Gelu {
    float operator()(float x) const { return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f)); }
    batch operator()(const batch& x) const {
        return batch(0.5f) * x * (batch(1.f) + xsimd::erf(x * batch(0.70710678118654752f)));
    }
};
// gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
struct GeluTanh {
    static constexpr float k = 0.7978845608028654f;
    float operator()(float x) const { return 0.5f * x * (1.f + std::tanh(k * (x + 0.044715f * x * x * x))); }
    batch operator()(const batch& x) const {
        return batch(0.5f) * x * (batch(1.f) + xsimd::tanh(batch(k) * (x + batch(0.044715f) * x * x * x)));
    }
};
// CLIP's quick_gelu: x * sigmoid(1.702 x).
struct QuickGelu {
    float operator()(float x) const { return x / (1.f + std::exp(-1.702f * x)); }
    batch operator()(const batch& x) const { return x / (batch(1.f) + xsimd::exp(batch(-1.702f) * x)); }
};

}  // namespace vlmamba::fn
