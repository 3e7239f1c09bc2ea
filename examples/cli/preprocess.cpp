// vlmamba preprocess: an image -> pixel_values (1, 3, S, S), as the HF image processor of a preset does.
#include <cstring>

#include "commands.hpp"
#include "common.hpp"
#include "vlmamba/io/image.hpp"
#include "vlmamba/io/preprocess.hpp"

namespace cli {

void add_preprocess(CLI::App& app) {
    auto* cmd = app.add_subcommand("preprocess", "Turn an image into pixel_values (1, 3, H, W) float32, as the HF "
                                                 "image processor of a preset does");
    cmd->footer("Example: vlmamba preprocess --preset siglip-so400m-384 --image cat.jpg -o px.safetensors\n"
                "Presets: clip-vit-l-336, clip-vit-l-224 (default resize_crop), siglip-so400m-384 (default "
                "resize_naive).\nPolicies: pad (LLaVA expand2square), resize_naive, resize_crop.");
    struct Opts { std::string preset, image, out, resize; };
    auto o = std::make_shared<Opts>();
    cmd->add_option("--preset", o->preset, "clip-vit-l-336 | clip-vit-l-224 | siglip-so400m-384")->required();
    cmd->add_option("--image", o->image, "image file (PNG, JPEG, BMP, GIF)")->required();
    cmd->add_option("-o,--output", o->out, "output .safetensors path")->required();
    cmd->add_option("--resize", o->resize, "pad | resize_naive | resize_crop (default: the preset's own)");
    cmd->callback([o] {
        vlmamba::PreprocessConfig cfg = vlmamba::preset(o->preset);
        if (!o->resize.empty()) cfg.policy = vlmamba::parse_resize_policy(o->resize);
        const vlmamba::Image img = vlmamba::load_image(o->image);
        const std::vector<float> v = vlmamba::preprocess(img, cfg);
        const std::int64_t S = cfg.size;
        vlmamba::Tensor px = vlmamba::Tensor::empty({1, 3, S, S});  // (1, 3, S, S)
        if (std::int64_t(v.size()) != px.numel())
            vlmamba::fail("preprocess", "expected ", px.numel(), " values, got ", v.size());
        std::memcpy(px.data<float>(), v.data(), v.size() * sizeof(float));
        vlmamba::save_safetensors(o->out, {{"pixel_values", px}});
        std::fprintf(stderr, "wrote pixel_values (1, 3, %lld, %lld) from %s (%dx%d, %s) to %s\n", (long long)S,
                     (long long)S, o->image.c_str(), img.width, img.height,
                     std::string(vlmamba::resize_policy_name(cfg.policy)).c_str(), o->out.c_str());
    });
}

}  // namespace cli
