// Explicit instantiation of the scan for bf16 io (f32 state and arithmetic).
#include "selective_scan.cuh"

namespace vlmamba::cuda::detail {
template void launch_scan<__nv_bfloat16>(const ScanArgs&, cudaStream_t, int);
}  // namespace vlmamba::cuda::detail
