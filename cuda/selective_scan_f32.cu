// Explicit instantiation of the scan for f32 io (f32 state and arithmetic).
#include "selective_scan.cuh"

namespace vlmamba::cuda::detail {
template void launch_scan<float>(const ScanArgs&, cudaStream_t, int);
}  // namespace vlmamba::cuda::detail
