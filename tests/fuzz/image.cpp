// Image decoding (PNG, JPEG, BMP, GIF through stb_image, after our header checks) and preprocessing with each
// resize policy (at a small target size, to keep executions fast).
#include <vlmamba/io/preprocess.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    vlmamba::fuzz::refused_or_ok([&] {
        const vlmamba::Image img = vlmamba::decode_image(std::span(data, size), "fuzz-image");
        for (auto policy : {vlmamba::ResizePolicy::Pad, vlmamba::ResizePolicy::ResizeNaive,
                            vlmamba::ResizePolicy::ResizeCrop}) {
            vlmamba::PreprocessConfig cfg = vlmamba::preset("clip-vit-l-224");
            cfg.size = 16;
            cfg.policy = policy;
            (void)vlmamba::preprocess(img, cfg);
        }
    });
    return 0;
}
