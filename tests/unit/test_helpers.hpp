// Shared test helpers: seeded random tensors and vectors, relative-error metrics, a scratch directory, whole-file
// bytes and error messages. One definition each: the unit tests build as unity batches, where file-local helpers
// of the same name collide.
#pragma once
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "vlmamba/core/error.hpp"
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

// n floats uniform in [lo, hi) drawn from g.
inline std::vector<float> uniform(std::mt19937& g, std::size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

// Same dtype, shape and bytes.
inline bool same_bytes(const Tensor& a, const Tensor& b) {
    if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
    const Tensor x = a.contiguous(), y = b.contiguous();
    return x.nbytes() == 0 || std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0;
}

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
    REQUIRE(a.shape() == b.shape());
    const Tensor x = a.to(DType::F32), y = b.to(DType::F32);
    double m = 0;
    for (std::int64_t i = 0; i < x.numel(); ++i)
        m = std::fmax(m, std::fabs(double(x.data<float>()[i]) - y.data<float>()[i]));
    return m;
}

// What f throws as vlmamba::Error, or "" when it does not throw.
inline std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        static std::atomic<int> counter{0};
        path = std::filesystem::temp_directory_path() /
               ("vlmamba_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        std::filesystem::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

inline std::vector<std::uint8_t> read_bytes(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

inline void write_bytes(const std::filesystem::path& p, const std::vector<std::uint8_t>& b) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

inline void write_bytes(const std::filesystem::path& p, std::string_view s) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(s.data(), std::streamsize(s.size()));
}

}  // namespace vlmamba::test
