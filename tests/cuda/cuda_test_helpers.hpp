// Helpers shared by the CUDA test TUs: the GPU skip and a typed device buffer with host round trips (random inputs:
// test::uniform in ../unit/test_helpers.hpp).
#pragma once
#include <doctest/doctest.h>

#include <cstddef>
#include <random>
#include <vector>

#include "../unit/test_helpers.hpp"  // test::uniform, test::rel_err, ...
#include "vlmamba/cuda/api.hpp"
#include "vlmamba/cuda/device_buffer.hpp"

#define SKIP_WITHOUT_GPU()                  \
    if (!vlmamba::cuda::available()) {      \
        MESSAGE("no CUDA device: skipped"); \
        return;                             \
    }

namespace vlmamba::test {

// n elements of T on the device; get() synchronises and copies them back.
template <class T>
struct DevBuf {
    DeviceBuffer b;
    explicit DevBuf(const std::vector<T>& h) : b(h.size() * sizeof(T)) {
        cuda::copy_h2d(b.get(), h.data(), h.size() * sizeof(T));
    }
    explicit DevBuf(std::size_t n) : b(n * sizeof(T)) {}
    T* p() const { return b.as<T>(); }
    std::vector<T> get() const {
        std::vector<T> h(b.bytes() / sizeof(T));
        cuda::synchronize();
        cuda::copy_d2h(h.data(), b.get(), b.bytes());
        return h;
    }
};

}  // namespace vlmamba::test
