// vlmamba logits: full-sequence logits (L, V) float32 to a safetensors file (checks against references).
#include "commands.hpp"
#include "common.hpp"
#include "options.hpp"

namespace cli {

void add_logits(CLI::App& app) {
    auto* cmd = app.add_subcommand("logits", "Write full-sequence logits (L, V) float32 to a safetensors file");
    cmd->footer("Example: vlmamba logits -m DIR --ids 1,2,3 -o out.safetensors\n"
                "The tensor 'logits' has every row of the LM head, unmasked. With --pixels or --image (VL-Mamba,\n"
                "Cobra), the rows of the text positions after the image prefix.");
    struct Opts { ModelFlags model; std::string ids, out, pixels, image; };
    auto o = std::make_shared<Opts>();
    add_model_flags(cmd, o->model, "Mamba LM or VL-Mamba directory");
    auto* px = cmd->add_option("--pixels", o->pixels, "VL-Mamba only: pixel_values safetensors (1, 3, S, S)")
                   ->check(CLI::ExistingFile);
    cmd->add_option("--image", o->image, "VL-Mamba or Cobra: an image file, preprocessed as the model says")
        ->check(CLI::ExistingFile)
        ->excludes(px);
    cmd->add_option("--ids", o->ids, "token ids, e.g. 1,2,3")->required();
    cmd->add_option("-o,--output", o->out, "output .safetensors path")->required();
    cmd->callback([o] {
        const auto ids = parse_ids(o->ids);
        if (ids.empty()) vlmamba::fail("logits", "expected a non-empty --ids list, got 0 tokens");
        const vlmamba::Tensor px = o->pixels.empty() ? vlmamba::Tensor() : read_pixels(o->pixels);
        const std::optional<vlmamba::Image> img =
            o->image.empty() ? std::nullopt : std::optional<vlmamba::Image>(vlmamba::load_image(o->image));
        const vlmamba::Model m = load_model(o->model);
        vlmamba::Tensor logits;  // (L, V)
        if (const auto* vl = m.vl()) {
            std::vector<vlmamba::Tensor> prefixes;
            if (px.defined()) prefixes.push_back(vl->image_prefix(px));
            if (img) prefixes.push_back(vl->image_prefix(m.pixels(*img)));
            logits = vl->text_logits(prefixes, ids);
        } else {
            if (px.defined() || img)
                vlmamba::fail("logits", o->model.dir, ": --pixels and --image need a VL-Mamba or Cobra directory");
            logits = m.lm().forward(ids);
        }
        vlmamba::save_safetensors(o->out, {{"logits", logits}});
        std::fprintf(stderr, "wrote logits %s to %s\n", vlmamba::shape_str(logits.shape()).c_str(), o->out.c_str());
    });
}

}  // namespace cli
