// The VSS block's device ops (VMamba SS2D): the depthwise conv2d, the row gathers of the cross-scan, the merge of
// the K directions and the z gate. One thread per output element; channels fastest, so rows load coalesced.
#include "common.cuh"
#include "vlmamba/cuda/api.hpp"

namespace vlmamba::cuda {
namespace detail {

__global__ void dwconv2d_kernel(DwConv2dArgs a) {
    const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const int C = a.channels;
    if (i >= std::int64_t(a.height) * a.width * C) return;
    const int c = int(i % C);
    const std::int64_t p = i / C;
    const int h = int(p / a.width), w = int(p % a.width), k = a.k, pad = k / 2;
    const std::int64_t ldx = a.ld_x ? a.ld_x : C;
    float acc = a.bias ? a.bias[c] : 0.0f;
    for (int r = 0; r < k; ++r) {
        const int hs = h + r - pad;
        if (hs < 0 || hs >= a.height) continue;
        for (int q = 0; q < k; ++q) {
            const int ws = w + q - pad;
            if (ws < 0 || ws >= a.width) continue;
            acc += a.taps[(std::int64_t(r) * k + q) * C + c] * a.x[(std::int64_t(hs) * a.width + ws) * ldx + c];
        }
    }
    a.y[i] = a.silu ? silu(acc) : acc;
}

__global__ void gather_rows_kernel(float* dst, std::int64_t ld_dst, const float* src, std::int64_t ld_src,
                                   const std::int64_t* idx, std::int64_t rows, int cols) {
    const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    const std::int64_t r = i / cols;
    const int c = int(i % cols);
    dst[r * ld_dst + c] = src[idx[r] * ld_src + c];
}

__global__ void merge_rows_kernel(float* dst, const float* ys, const std::int64_t* seq, int K, std::int64_t L,
                                  int C) {
    const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= L * C) return;
    const std::int64_t p = i / C;
    const int c = int(i % C);
    float s = 0.0f;
    for (int k = 0; k < K; ++k) s += ys[(std::int64_t(k) * L + seq[std::int64_t(k) * L + p]) * C + c];
    dst[i] = s;
}

__global__ void mul_silu_kernel(float* y, const float* z, std::int64_t ld_z, std::int64_t rows, int cols) {
    const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= rows * cols) return;
    y[i] *= silu(z[(i / cols) * ld_z + i % cols]);
}

}  // namespace detail

void depthwise_conv2d(const DwConv2dArgs& a, Stream s) {
    VLM_CHECK(a.height >= 1 && a.width >= 1 && a.channels >= 1 && a.k >= 1 && a.k % 2 == 1, "depthwise_conv2d",
              "expected a grid of at least 1×1, channels >= 1 and an odd kernel, got (H, W, C, k) = (", a.height,
              ", ", a.width, ", ", a.channels, ", ", a.k, ")");
    const std::int64_t n = std::int64_t(a.height) * a.width * a.channels;
    detail::dwconv2d_kernel<<<detail::blocks_for(n, 256), 256, 0, detail::stream(s)>>>(a);
    detail::check_launch("depthwise_conv2d");
}

void gather_rows(float* dst, std::int64_t ld_dst, const float* src, std::int64_t ld_src, const std::int64_t* idx,
                 std::int64_t rows, int cols, Stream s) {
    const std::int64_t n = rows * cols;
    if (n <= 0) return;
    detail::gather_rows_kernel<<<detail::blocks_for(n, 256), 256, 0, detail::stream(s)>>>(dst, ld_dst, src, ld_src,
                                                                                          idx, rows, cols);
    detail::check_launch("gather_rows");
}

void merge_rows(float* dst, const float* ys, const std::int64_t* seq, int K, std::int64_t L, int C, Stream s) {
    const std::int64_t n = L * C;
    if (n <= 0) return;
    detail::merge_rows_kernel<<<detail::blocks_for(n, 256), 256, 0, detail::stream(s)>>>(dst, ys, seq, K, L, C);
    detail::check_launch("merge_rows");
}

void mul_silu(float* y, const float* z, std::int64_t ld_z, std::int64_t rows, int cols, Stream s) {
    const std::int64_t n = rows * cols;
    if (n <= 0) return;
    detail::mul_silu_kernel<<<detail::blocks_for(n, 256), 256, 0, detail::stream(s)>>>(y, z, ld_z, rows, cols);
    detail::check_launch("mul_silu");
}

}  // namespace vlmamba::cuda
