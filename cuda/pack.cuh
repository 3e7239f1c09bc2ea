// 16-byte streaming loads of weights and their unpacking to floats (f32: 4 values, bf16: 8 values).
#pragma once
#include "common.cuh"

namespace vlmamba::cuda::detail {

// Read-only, not allocated in L1: weights are read once per step.
__device__ __forceinline__ uint4 load_stream(const void* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

__device__ __forceinline__ void unpack(const uint4& q, float (&w)[4]) {
    w[0] = __uint_as_float(q.x), w[1] = __uint_as_float(q.y), w[2] = __uint_as_float(q.z), w[3] = __uint_as_float(q.w);
}
__device__ __forceinline__ void unpack(const uint4& q, float (&w)[8]) {
    const std::uint32_t u[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {  // little endian: the low half is the even element
        w[2 * i] = __uint_as_float(u[i] << 16);
        w[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
    }
}

}  // namespace vlmamba::cuda::detail
