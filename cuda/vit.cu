// The ViT ops of the vision towers on the GPU (modeling_clip.py / modeling_siglip.py): LayerNorm, bias + activation,
// bias + residual, scaled row softmax and the embedding assembly. All f32, accurate math (parity 1e-4 with the CPU).
#include "common.cuh"
#include "vlmamba/cuda/api.hpp"

namespace vlmamba::cuda {
namespace detail {

constexpr int vit_threads = 256;

// Sum over the block (vit_threads threads); every thread gets the result.
__device__ float block_sum(float v, float* red) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();  // red may still be read from a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float t = 0.0f;
    for (int w = 0; w < vit_threads / 32; ++w) t += red[w];
    return t;
}
__device__ float block_max(float v, float* red) {
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float t = red[0];
    for (int w = 1; w < vit_threads / 32; ++w) t = fmaxf(t, red[w]);
    return t;
}

// One block per row: mean, then the variance around it (two passes, as torch), then the affine map.
__global__ void layer_norm_kernel(LayerNormArgs a) {
    __shared__ float red[vit_threads / 32];
    const float* x = a.x + std::int64_t(blockIdx.x) * a.dim;
    float* y = a.y + std::int64_t(blockIdx.x) * a.dim;
    float s = 0.0f;
    for (int i = threadIdx.x; i < a.dim; i += vit_threads) s += x[i];
    const float mean = block_sum(s, red) / float(a.dim);
    float v = 0.0f;
    for (int i = threadIdx.x; i < a.dim; i += vit_threads) {
        const float d = x[i] - mean;
        v = fmaf(d, d, v);
    }
    const float rstd = rsqrtf(block_sum(v, red) / float(a.dim) + a.eps);
    for (int i = threadIdx.x; i < a.dim; i += vit_threads) y[i] = (x[i] - mean) * rstd * a.w[i] + a.b[i];
}

__device__ __forceinline__ float activate(float x, Activation act) {
    switch (act) {
        case Activation::QuickGelu: return x / (1.0f + expf(-1.702f * x));
        case Activation::Gelu: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case Activation::GeluTanh: {
            const float k = 0.7978845608028654f;  // √(2/π)
            return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
        }
        default: return x;
    }
}

__global__ void bias_act_kernel(float* y, const float* b, std::int64_t rows, int cols, Activation act) {
    const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    y[i] = activate(y[i] + (b ? b[i % cols] : 0.0f), act);
}

__global__ void add_scaled_kernel(float* x, const float* y, const float* g, std::int64_t rows, int cols) {
    const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    x[i] += y[i] * g[i % cols];
}

// One block per row: softmax(scale · x).
__global__ void softmax_rows_kernel(float* x, int cols, float scale) {
    __shared__ float red[vit_threads / 32];
    float* r = x + std::int64_t(blockIdx.x) * cols;
    float m = -INFINITY;
    for (int i = threadIdx.x; i < cols; i += vit_threads) m = fmaxf(m, r[i]);
    m = block_max(m, red);
    float s = 0.0f;
    for (int i = threadIdx.x; i < cols; i += vit_threads) {
        const float e = expf((r[i] - m) * scale);
        r[i] = e;
        s += e;
    }
    const float inv = 1.0f / block_sum(s, red);
    for (int i = threadIdx.x; i < cols; i += vit_threads) r[i] *= inv;
}

__global__ void vit_embed_kernel(VitEmbedArgs a) {
    const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const int off = a.cls ? 1 : 0;
    if (i >= std::int64_t(a.patches + off) * a.dim) return;
    const int r = int(i / a.dim), c = int(i % a.dim);
    const float v = r < off ? a.cls[c] : a.emb[std::int64_t(r - off) * a.dim + c] + (a.bias ? a.bias[c] : 0.0f);
    a.x[i] = v + a.pos[i];
}

}  // namespace detail

void layer_norm(const LayerNormArgs& a, Stream s) {
    VLM_CHECK(a.rows >= 1 && a.dim >= 1 && a.x && a.w && a.b && a.y, "layer_norm",
              "expected rows, dim >= 1 and non-null x, w, b, y, got (rows, dim) = (", a.rows, ", ", a.dim, ")");
    detail::layer_norm_kernel<<<a.rows, detail::vit_threads, 0, detail::stream(s)>>>(a);
    detail::check_launch("layer_norm");
}

void bias_act(float* y, const float* b, std::int64_t rows, int cols, Activation act, Stream s) {
    const std::int64_t n = rows * cols;
    detail::bias_act_kernel<<<detail::blocks_for(n, 256), 256, 0, detail::stream(s)>>>(y, b, rows, cols, act);
    detail::check_launch("bias_act");
}

void add_scaled(float* x, const float* y, const float* g, std::int64_t rows, int cols, Stream s) {
    const std::int64_t n = rows * cols;
    if (n <= 0) return;
    detail::add_scaled_kernel<<<detail::blocks_for(n, 256), 256, 0, detail::stream(s)>>>(x, y, g, rows, cols);
    detail::check_launch("add_scaled");
}

void softmax_rows(float* x, std::int64_t rows, int cols, float scale, Stream s) {
    VLM_CHECK(rows >= 1 && rows < (std::int64_t(1) << 31) && cols >= 1, "softmax_rows",
              "expected 1 <= rows < 2^31 and cols >= 1, got (", rows, ", ", cols, ")");
    detail::softmax_rows_kernel<<<unsigned(rows), detail::vit_threads, 0, detail::stream(s)>>>(x, cols, scale);
    detail::check_launch("softmax_rows");
}

void vit_embed(const VitEmbedArgs& a, Stream s) {
    VLM_CHECK(a.patches >= 1 && a.dim >= 1 && a.x && a.emb && a.pos, "vit_embed",
              "expected patches, dim >= 1 and non-null x, emb, pos, got (", a.patches, ", ", a.dim, ")");
    const std::int64_t n = std::int64_t(a.patches + (a.cls ? 1 : 0)) * a.dim;
    detail::vit_embed_kernel<<<detail::blocks_for(n, 256), 256, 0, detail::stream(s)>>>(a);
    detail::check_launch("vit_embed");
}

}  // namespace vlmamba::cuda
