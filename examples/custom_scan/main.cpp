// Builds a VL-Mamba variant with a user-defined scan policy and runs it on a model directory's weights:
//   custom_scan DIR [IDS]      e.g. custom_scan tests/data/vlmamba/tiny-siglip-vssl2-bsm 5,6,7
// The connector config must be VSS-L2 with K = 2 directions (BSM weights fit the snake policy).
#include <cstdio>
#include <string>
#include <vlmamba/io/safetensors.hpp>

#include "snake_scan.hpp"

int main(int argc, char** argv) try {
    namespace vm = vlmamba;
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s VLMAMBA_DIR [ids]\n", argv[0]);
        return 2;
    }
    vm::VlMambaConfig cfg = vm::load_vlmamba_config(argv[1]);
    cfg.connector.scan = SnakeScan::name;  // same tensors as BSM, walked in snake order
    const SnakeVlMamba model = SnakeVlMamba::load(cfg);

    const std::int64_t S = cfg.vision.image_size;
    vm::Tensor pixels = vm::Tensor::zeros({1, 3, S, S});  // (1, 3, S, S): a gradient test image
    for (std::int64_t i = 0; i < pixels.numel(); ++i) pixels.data<float>()[i] = float(i % 97) / 48.f - 1.f;

    std::vector<std::int32_t> ids{5, 6, 7};
    const vm::Tensor prefix = model.image_prefix(pixels);       // (L_v, d)
    const vm::Tensor logits = model.text_logits({prefix}, ids);  // (L_text, V)
    const float* last = logits.data<float>() + (logits.size(0) - 1) * logits.size(1);
    const auto best = std::max_element(last, last + logits.size(1)) - last;
    std::printf("snake-scan VL-Mamba: prefix %s, next token %td\n", vm::shape_str(prefix.shape()).c_str(), best);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "custom_scan: error: %s\n", e.what());
    return 1;
}
