// Entry points of cuda/gemv.cu (closed box, STYLE 9: POD arguments, no CUDA headers): the small-batch product of
// decode and the device read probe. All pointers are device pointers. Built without CUDA, they throw.
#pragma once
#include <cstddef>
#include <cstdint>

#include "vlmamba/cuda/api.hpp"

namespace vlmamba::cuda {

// y (m, n) f32 = x (m, k) f32 · Wᵀ with W (n, k) row-major in f32 or bf16, f32 accumulation; 1 <= m <= 8.
// Leading dimensions 0 mean contiguous. 16-byte loads are used when k, ldx and the pointers allow.
struct GemvArgs {
    int m, n, k;
    const float* x;
    const void* w;
    DType w_dtype = DType::F32;
    float* y;
    int ldx = 0, ldy = 0;
};
void gemv(const GemvArgs& a, Stream s = nullptr);

// Reads `bytes` (a multiple of 16, 16-byte aligned) once with streaming loads; `sink` (one u32) is written only
// in a case that never happens, so the loads stay. Timed, it gives the device read bandwidth.
void read_probe(const void* p, std::size_t bytes, std::uint32_t* sink, Stream s = nullptr);

}  // namespace vlmamba::cuda
