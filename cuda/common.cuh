// Shared helpers of the CUDA translation units: error checks, load/store by dtype, math.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "vlmamba/core/error.hpp"

#define VLM_HOST_DEVICE __host__ __device__

#define VLM_CUDA_CHECK(expr, op)                                                               \
    do {                                                                                       \
        cudaError_t vlm_err_ = (expr);                                                         \
        if (vlm_err_ != cudaSuccess) ::vlmamba::fail(op, "CUDA error: ", cudaGetErrorString(vlm_err_)); \
    } while (0)

namespace vlmamba::cuda::detail {

inline cudaStream_t stream(void* s) { return static_cast<cudaStream_t>(s); }

inline void check_launch(const char* op) { VLM_CUDA_CHECK(cudaGetLastError(), op); }

__device__ __forceinline__ float load_f(const float* p) { return *p; }
__device__ __forceinline__ float load_f(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void store_f(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_f(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

// torch softplus (beta 1, threshold 20) and SiLU, accurate.
__device__ __forceinline__ float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

inline int blocks_for(std::int64_t n, int threads) { return int((n + threads - 1) / threads); }

}  // namespace vlmamba::cuda::detail
