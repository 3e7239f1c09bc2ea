// A vision tower config.json: CLIP and SigLIP, as a tower's own config or nested under a full model's
// "vision_config" (one parser; the seeds hold both families).
#include <vlmamba/models/vision_config.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = vlmamba::fuzz::write_input("config.json", data, size);
    vlmamba::fuzz::refused_or_ok([&] {
        const vlmamba::VisionConfig c = vlmamba::load_vision_config(path);
        (void)c.num_positions();
    });
    return 0;
}
