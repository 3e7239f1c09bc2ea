// Shared test helpers: seeded random tensors and relative-error metrics.
#pragma once
#include <cmath>
#include <random>
#include <vector>

#include "vlmamba/core/tensor.hpp"

namespace vlmamba {
class Model;
}

namespace vlmamba::test {

// The bundled model (zoo/shapes-vlmamba), loaded once per test binary (defined in test_session.cpp).
const Model& bundled_model();

inline Tensor randn(Shape shape, std::uint32_t seed, float scale = 1.f) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> d(0.f, scale);
    Tensor t = Tensor::empty(std::move(shape));
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(gen);
    return t;
}

// max |a − b| / max |b| over all elements (any strides, any float dtype).
inline double rel_err(const Tensor& a, const Tensor& b) {
    REQUIRE(a.shape() == b.shape());
    const Tensor x = a.to(DType::F32), y = b.to(DType::F32);
    double num = 0, den = 0;
    for (std::int64_t i = 0; i < x.numel(); ++i) {
        num = std::fmax(num, std::fabs(double(x.data<float>()[i]) - y.data<float>()[i]));
        den = std::fmax(den, std::fabs(double(y.data<float>()[i])));
    }
    return den > 0 ? num / den : num;
}

// An I64 fixture tensor (token ids) as int32 ids.
inline std::vector<std::int32_t> ids_of(const Tensor& t) {
    REQUIRE(t.dtype() == DType::I64);
    std::vector<std::int32_t> v;
    for (std::int64_t i = 0; i < t.numel(); ++i) v.push_back(std::int32_t(t.data<std::int64_t>()[i]));
    return v;
}

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
    REQUIRE(a.shape() == b.shape());
    const Tensor x = a.to(DType::F32), y = b.to(DType::F32);
    double m = 0;
    for (std::int64_t i = 0; i < x.numel(); ++i)
        m = std::fmax(m, std::fabs(double(x.data<float>()[i]) - y.data<float>()[i]));
    return m;
}

}  // namespace vlmamba::test
