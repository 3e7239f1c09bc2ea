// Where a tensor lives and a computation runs: the host CPU or a CUDA GPU, and the memory entry points of the
// closed CUDA box (defined in cuda/api.cu, or as stubs in cuda/no_cuda.cpp, which throw "built without CUDA").
// Tensors own device memory through these; cuda/api.hpp declares the rest of the box.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "vlmamba/core/dtype.hpp"
#include "vlmamba/core/error.hpp"

namespace vlmamba {

enum class Device { Cpu, Cuda };

inline const char* device_name(Device d) { return d == Device::Cuda ? "cuda" : "cpu"; }

inline Device parse_device(const std::string& s) {
    if (s == "cpu") return Device::Cpu;
    if (s == "cuda") return Device::Cuda;
    fail("device", "expected cpu or cuda, got '", s, "'");
}

namespace cuda {
using Stream = void*;  // a cudaStream_t; null is the default stream, where tensor ops run

bool available();  // true when built with CUDA and a device is present; never throws
// Plain device memory (cudaMalloc), usable on any stream.
void* malloc(std::size_t bytes);
void free(void* p);
// Memory of tensors: stream-ordered on the default stream and cached by the driver's pool, so the many
// short-lived activations of a forward pass cost no cudaMalloc each.
void* tensor_malloc(std::size_t bytes);
void tensor_free(void* p);
void copy_h2d(void* dst, const void* src, std::size_t bytes);
void copy_d2h(void* dst, const void* src, std::size_t bytes);
void copy_d2d(void* dst, const void* src, std::size_t bytes, Stream s = nullptr);
// `rows` rows of `width` bytes, `dpitch` and `spitch` bytes apart, between any two of host and device memory
// (dst_device and src_device say which). Device to device it is asynchronous, in order on the default stream.
void copy_2d(void* dst, std::size_t dpitch, bool dst_device, const void* src, std::size_t spitch, bool src_device,
             std::size_t width, std::size_t rows);
void memset0(void* p, std::size_t bytes, Stream s = nullptr);
// n elements of src_dtype at src to dst_dtype at dst, on the device (f32, bf16, f16).
void convert(void* dst, DType dst_dtype, const void* src, DType src_dtype, std::int64_t n, Stream s = nullptr);
void synchronize();
}  // namespace cuda

}  // namespace vlmamba
