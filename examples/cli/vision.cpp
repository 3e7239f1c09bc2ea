// vlmamba vision: run a vision tower over a batch of pixel_values and write every hidden state.
#include "commands.hpp"
#include "common.hpp"
#include "vlmamba/models/vision_encoder.hpp"

namespace cli {

void add_vision(CLI::App& app) {
    auto* cmd = app.add_subcommand("vision", "Run a vision tower: write hidden_states.{i} (HF indexing) and "
                                             "last_hidden_state, float32");
    cmd->footer("Example: vlmamba vision -m siglip-so400m-patch14-384 --pixels px.safetensors -o hs.safetensors\n"
                "-m takes a CLIP/SigLIP vision tower, a full CLIP/SigLIP model or a VL-Mamba directory.\n"
                "--pixels holds pixel_values (B, 3, S, S). hidden_states.0 is the embedding output (CLIP: after\n"
                "pre_layrnorm); hidden_states.i follows layer i. Tensors are (B, N, C).");
    struct Opts { std::string model, pixels, out; };
    auto o = std::make_shared<Opts>();
    cmd->add_option("-m,--model", o->model, "model directory (config.json + model.safetensors)")
        ->required()->check(CLI::ExistingDirectory);
    cmd->add_option("--pixels", o->pixels, "safetensors file with pixel_values (B, 3, H, W) or (3, H, W)")
        ->required()->check(CLI::ExistingFile);
    cmd->add_option("-o,--output", o->out, "output .safetensors path")->required();
    cmd->callback([o] {
        const vlmamba::Tensor px = read_pixels(o->pixels);  // (B, 3, S, S)
        Timer load_t;
        const vlmamba::VisionEncoder enc = vlmamba::load_vision_tower(o->model);
        std::fprintf(stderr, "loaded %s (%s, %d layers) in %.2f s\n", o->model.c_str(),
                     vlmamba::vision_family_name(enc.cfg.family), enc.cfg.num_hidden_layers, load_t.seconds());
        Timer run_t;
        const std::int64_t B = px.size(0);
        std::vector<vlmamba::VisionOutput> outs;
        for (std::int64_t b = 0; b < B; ++b) outs.push_back(enc.forward(px.select(0, b)));
        const double run_s = run_t.seconds();
        auto stack = [&](auto get) {  // B × (1, N, C) -> (B, N, C)
            const vlmamba::Tensor& first = get(outs[0]);
            vlmamba::Tensor t = vlmamba::Tensor::empty({B, first.size(1), first.size(2)});
            for (std::int64_t b = 0; b < B; ++b) {
                vlmamba::Tensor dst = t.select(0, b);
                vlmamba::copy_into(dst, get(outs[std::size_t(b)]).select(0, 0));
            }
            return t;
        };
        std::vector<std::pair<std::string, vlmamba::Tensor>> tensors;
        for (std::size_t i = 0; i < outs[0].hidden_states.size(); ++i)
            tensors.emplace_back("hidden_states." + std::to_string(i),
                                 stack([i](const vlmamba::VisionOutput& v) -> const vlmamba::Tensor& {
                                     return v.hidden_states[i];
                                 }));
        tensors.emplace_back("last_hidden_state", stack([](const vlmamba::VisionOutput& v) -> const vlmamba::Tensor& {
                                 return v.last_hidden_state;
                             }));
        vlmamba::save_safetensors(o->out, tensors);
        std::fprintf(stderr, "vision: %lld images x %lld tokens x %d in %.3f s; wrote %zu tensors to %s; peak memory "
                     "%.1f MiB\n", (long long)B, (long long)outs[0].last_hidden_state.size(1), enc.cfg.hidden_size,
                     run_s, tensors.size(), o->out.c_str(), peak_rss_mib());
    });
}

}  // namespace cli
