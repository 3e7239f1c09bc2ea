// Stubs of the entry points in vlmamba/cuda/decode.hpp for builds without a CUDA compiler.
#include "tuning.hpp"
#include "vlmamba/cuda/decode.hpp"

namespace vlmamba::cuda {

void gemv(const GemvArgs&, Stream) { fail("gemv", "vlmamba was built without CUDA"); }
void selective_state_update_dt(const DtStateUpdateArgs&, Stream) {
    fail("selective_state_update_dt", "vlmamba was built without CUDA");
}
void read_probe(const void*, std::size_t, std::uint32_t*, Stream) { fail("read_probe", "vlmamba was built without CUDA"); }

struct MambaStep::Impl {
    MambaStepArgs args;
};
MambaStep::MambaStep(const MambaStepArgs&) { fail("mamba_step", "vlmamba was built without CUDA"); }
MambaStep::~MambaStep() = default;
void MambaStep::run(const std::int32_t*, float*, std::int32_t*) { fail("mamba_step", "vlmamba was built without CUDA"); }
const MambaStepArgs& MambaStep::args() const { return impl_->args; }

}  // namespace vlmamba::cuda
