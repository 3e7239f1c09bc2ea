// Elementwise and norm ops of the Mamba LM: fused residual add + RMSNorm, embedding gather, add, dtype
// conversion, row argmax.
#include <cfloat>

#include "common.cuh"
#include "vlmamba/cuda/api.hpp"

namespace vlmamba::cuda {
namespace detail {

__device__ __forceinline__ float load_any(const void* p, DType t, std::int64_t i) {
    return t == DType::BF16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]) : static_cast<const float*>(p)[i];
}
__device__ __forceinline__ void store_any(void* p, DType t, std::int64_t i, float v) {
    if (t == DType::BF16) static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(v);
    else static_cast<float*>(p)[i] = v;
}

__device__ float block_sum(float v) {
    __shared__ float part[32];
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    const int nw = blockDim.x / 32;
    v = lane < nw ? part[lane] : 0.0f;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    __syncthreads();
    return v;
}

// One block per row.
__global__ void rms_norm_kernel(RmsNormArgs a) {
    const std::int64_t r = blockIdx.x;
    float* res = a.residual ? a.residual + r * a.dim : nullptr;
    const float* x = a.x ? a.x + r * a.dim : nullptr;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < a.dim; i += blockDim.x) {
        float v;
        if (res) {
            v = res[i] + (x ? x[i] : 0.0f);
            res[i] = v;
        } else {
            v = x[i];
        }
        ss += v * v;
    }
    const float inv = rsqrtf(block_sum(ss) / float(a.dim) + a.eps);
    const float* src = res ? res : x;
    for (int i = threadIdx.x; i < a.dim; i += blockDim.x)
        store_any(a.out, a.out_dtype, r * a.dim + i, src[i] * inv * load_any(a.w, a.w_dtype, i));
}

__global__ void embedding_kernel(float* out, const void* table, DType t, const std::int32_t* ids, int dim) {
    const std::int64_t r = blockIdx.x;
    const std::int64_t row = ids[r];
    for (int i = threadIdx.x; i < dim; i += blockDim.x) out[r * dim + i] = load_any(table, t, row * dim + i);
}

__global__ void add_kernel(float* y, const float* a, const float* b, std::int64_t n) {
    const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a[i] + b[i];
}

__global__ void convert_kernel(void* dst, DType dt, const void* src, DType st, std::int64_t n) {
    const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) store_any(dst, dt, i, load_any(src, st, i));
}

__global__ void argmax_kernel(std::int32_t* out, const float* x, int cols) {
    pdl_wait();
    pdl_trigger();
    const float* row = x + std::int64_t(blockIdx.x) * cols;
    float best = -FLT_MAX;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < cols; i += blockDim.x)
        if (row[i] > best) best = row[i], bi = i;
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, best, off);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, off);
        if (ov > best || (ov == best && oi < bi)) best = ov, bi = oi;
    }
    __shared__ float sv[32];
    __shared__ int si[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) sv[warp] = best, si[warp] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < int(blockDim.x / 32); ++w)
            if (sv[w] > sv[0] || (sv[w] == sv[0] && si[w] < si[0])) sv[0] = sv[w], si[0] = si[w];
        out[blockIdx.x] = si[0];
    }
}

}  // namespace detail

void rms_norm(const RmsNormArgs& a, Stream s) {
    VLM_CHECK(a.rows >= 1 && a.dim >= 1 && (a.x || a.residual) && a.w && a.out, "rms_norm",
              "expected rows, dim >= 1 and non-null inputs, got (rows, dim) = (", a.rows, ", ", a.dim, ")");
    detail::rms_norm_kernel<<<a.rows, 256, 0, detail::stream(s)>>>(a);
    detail::check_launch("rms_norm");
}

void embedding(float* out, const void* table, DType t, const std::int32_t* ids, int n, int dim, int vocab, Stream s) {
    VLM_CHECK(n >= 1 && dim >= 1 && vocab >= 1, "embedding", "expected n, dim, vocab >= 1, got (", n, ", ", dim,
              ", ", vocab, ")");
    detail::embedding_kernel<<<n, 256, 0, detail::stream(s)>>>(out, table, t, ids, dim);
    detail::check_launch("embedding");
}

void add(float* y, const float* a, const float* b, std::int64_t n, Stream s) {
    if (n <= 0) return;
    detail::add_kernel<<<detail::blocks_for(n, 256), 256, 0, detail::stream(s)>>>(y, a, b, n);
    detail::check_launch("add");
}

void convert(void* dst, DType dt, const void* src, DType st, std::int64_t n, Stream s) {
    VLM_CHECK((dt == DType::F32 || dt == DType::BF16) && (st == DType::F32 || st == DType::BF16), "convert",
              "expected F32 or BF16, got ", dtype_name(st), " -> ", dtype_name(dt));
    if (n <= 0) return;
    detail::convert_kernel<<<detail::blocks_for(n, 256), 256, 0, detail::stream(s)>>>(dst, dt, src, st, n);
    detail::check_launch("convert");
}

void argmax_rows(std::int32_t* out, const float* x, int rows, int cols, Stream s) {
    VLM_CHECK(rows >= 1 && cols >= 1, "argmax_rows", "expected rows, cols >= 1, got (", rows, ", ", cols, ")");
    detail::launch_pdl(detail::argmax_kernel, rows, 1024, detail::stream(s), out, x, cols);
    detail::check_launch("argmax_rows");
}

}  // namespace vlmamba::cuda
