// One PyTorch checkpoint (torch.save: zip or legacy format): the restricted unpickler, the zip directory, tensor
// bounds (PytorchCheckpoint::open), then every tensor read back (views and strided copies) and converted.
#include <vlmamba/io/pytorch_checkpoint.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = vlmamba::fuzz::write_input("pytorch_model.bin", data, size);
    vlmamba::fuzz::refused_or_ok([&] {
        const auto c = vlmamba::PytorchCheckpoint::open(path);
        unsigned sum = 0;
        for (const auto& e : c.entries()) {
            const vlmamba::Tensor t = c.get(e.name);
            const auto* p = reinterpret_cast<const unsigned char*>(t.raw());
            for (std::size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
            if (t.numel() <= 4096) (void)t.to(vlmamba::DType::F32);
        }
        for (const auto& l : c.leaves()) sum += unsigned(l.name.size() + l.value.size());
        (void)sum;
    });
    return 0;
}
