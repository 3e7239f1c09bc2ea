// DeviceBuffer: device memory owned by one object, through the closed box vlmamba::cuda (no CUDA headers).
#pragma once
#include <cstddef>
#include <utility>

#include "vlmamba/cuda/api.hpp"

namespace vlmamba {

// Device memory owned by one object (move-only); freed on destruction.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(std::size_t bytes) : p_(bytes ? cuda::malloc(bytes) : nullptr), bytes_(bytes) {}
    ~DeviceBuffer() { reset(); }
    DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        if (this != &o) {
            reset();
            p_ = std::exchange(o.p_, nullptr);
            bytes_ = std::exchange(o.bytes_, 0);
        }
        return *this;
    }
    void* get() const { return p_; }
    template <class T> T* as() const { return static_cast<T*>(p_); }
    std::size_t bytes() const { return bytes_; }

private:
    void reset() noexcept {
        if (p_) try { cuda::free(p_); } catch (...) {}
        p_ = nullptr;
        bytes_ = 0;
    }
    void* p_ = nullptr;
    std::size_t bytes_ = 0;
};

}  // namespace vlmamba
