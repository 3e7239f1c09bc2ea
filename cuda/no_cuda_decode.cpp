// Stubs of the entry points in vlmamba/cuda/decode.hpp for builds without a CUDA compiler.
#include "vlmamba/cuda/decode.hpp"

namespace vlmamba::cuda {

void gemv(const GemvArgs&, Stream) { fail("gemv", "vlmamba was built without CUDA"); }
void selective_state_update_dt(const DtStateUpdateArgs&, Stream) {
    fail("selective_state_update_dt", "vlmamba was built without CUDA");
}
void read_probe(const void*, std::size_t, std::uint32_t*, Stream) { fail("read_probe", "vlmamba was built without CUDA"); }

}  // namespace vlmamba::cuda
