// One safetensors file: header validation (SafetensorsFile::open), then every tensor read back and converted.
#include <vlmamba/io/safetensors.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = vlmamba::fuzz::write_input("model.safetensors", data, size);
    vlmamba::fuzz::refused_or_ok([&] {
        const auto f = vlmamba::SafetensorsFile::open(path);
        unsigned sum = 0;
        for (const auto& e : f.entries()) {
            const vlmamba::Tensor t = f.get(e.name);
            const auto* p = reinterpret_cast<const unsigned char*>(t.raw());
            for (std::size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
            if (t.numel() <= 4096) (void)t.to(vlmamba::DType::F32);
        }
        for (const auto& [k, v] : f.metadata()) sum += unsigned(k.size() + v.size());
        (void)sum;
    });
    return 0;
}
