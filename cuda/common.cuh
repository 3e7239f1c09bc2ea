// Shared helpers of the CUDA translation units: error checks, load/store by dtype, math.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

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

// Programmatic dependent launch (Hopper): a kernel launched with launch_pdl may start while its predecessor in
// the stream is still running, once every block of the predecessor has called pdl_trigger(). Before pdl_wait() it
// may only read what no earlier kernel of the stream writes (weights, its own state); pdl_wait() returns when the
// predecessor has finished and its writes are visible. Our kernels trigger right after their wait, so at most two
// grids overlap. Both are no-ops in a kernel launched without the attribute.
__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

bool programmatic_launch();  // set_programmatic_launch(), on by default

// For the kernels this thread launches while it lives: programmatic dependent launch only if `on` (and
// set_programmatic_launch allows it). The fused decode step turns it off for 2 <= B <= 8, where it costs ~6%.
class ProgrammaticLaunchScope {
public:
    explicit ProgrammaticLaunchScope(bool on);
    ~ProgrammaticLaunchScope();
    ProgrammaticLaunchScope(const ProgrammaticLaunchScope&) = delete;
    ProgrammaticLaunchScope& operator=(const ProgrammaticLaunchScope&) = delete;

private:
    bool prev_;
};

template <class... P, class... A>
void launch_pdl(void (*kernel)(P...), dim3 grid, dim3 block, cudaStream_t s, A&&... args) {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = programmatic_launch() ? 1 : 0;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    VLM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...), "launch");
}

}  // namespace vlmamba::cuda::detail
