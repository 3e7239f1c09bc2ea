// Explicit instantiation of the scan for bf16 io (f32 state and arithmetic).
#include "selective_scan.cuh"
#include "selective_scan_v1.cuh"

namespace vlmamba::cuda::detail {
template void launch_scan<__nv_bfloat16>(const ScanArgs&, cudaStream_t, int);
template void v1::launch_scan<__nv_bfloat16>(const ScanArgs&, cudaStream_t, int);
}  // namespace vlmamba::cuda::detail
