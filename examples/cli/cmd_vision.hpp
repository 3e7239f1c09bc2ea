// Vision commands: preprocess (image -> pixel_values) and vision (pixel_values -> a tower's hidden states).
#pragma once
#include <CLI/CLI.hpp>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "common.hpp"
#include "vlmamba/io/image.hpp"
#include "vlmamba/io/preprocess.hpp"
#include "vlmamba/io/safetensors.hpp"
#include "vlmamba/models/vision_encoder.hpp"

namespace cli {

// Reads tensor `pixel_values`, shaped (1, 3, H, W) or (3, H, W), from a safetensors file (SPEC §8.3).
inline vlmamba::Tensor read_pixels(const std::string& file) {
    const vlmamba::SafetensorsFile f = vlmamba::SafetensorsFile::open(file);
    if (!f.contains("pixel_values"))
        vlmamba::fail("pixels", file, ": no tensor 'pixel_values' (expected one shaped (1, 3, H, W) or (3, H, W))");
    const vlmamba::Tensor px = f.get("pixel_values");
    const bool ok = (px.ndim() == 4 && px.size(0) == 1 && px.size(1) == 3) || (px.ndim() == 3 && px.size(0) == 3);
    if (!ok)
        vlmamba::fail("pixels", file, ": tensor 'pixel_values' has shape ", vlmamba::shape_str(px.shape()),
                      ", expected (1, 3, H, W) or (3, H, W)");
    return px.to(vlmamba::DType::F32);
}

inline void add_vision_commands(CLI::App& app) {
    {
        auto* cmd = app.add_subcommand("preprocess", "Turn an image into pixel_values (1, 3, H, W) float32, as the "
                                                     "HF image processor of a preset does");
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
    {
        auto* cmd = app.add_subcommand("vision", "Run a vision tower: write hidden_states.{i} (HF indexing) and "
                                                 "last_hidden_state, float32");
        cmd->footer("Example: vlmamba vision -m siglip-so400m-patch14-384 --pixels px.safetensors -o hs.safetensors\n"
                    "-m takes a CLIP/SigLIP vision tower, a full CLIP/SigLIP model or a VL-Mamba directory.\n"
                    "hidden_states.0 is the embedding output (CLIP: after pre_layrnorm); hidden_states.i follows "
                    "layer i. Tensors are (1, N, C).");
        struct Opts { std::string model, pixels, out; };
        auto o = std::make_shared<Opts>();
        cmd->add_option("-m,--model", o->model, "model directory (config.json + model.safetensors)")
            ->required()->check(CLI::ExistingDirectory);
        cmd->add_option("--pixels", o->pixels, "safetensors file with pixel_values (1, 3, H, W) or (3, H, W)")
            ->required()->check(CLI::ExistingFile);
        cmd->add_option("-o,--output", o->out, "output .safetensors path")->required();
        cmd->callback([o] {
            const vlmamba::Tensor px = read_pixels(o->pixels);
            Timer load_t;
            const vlmamba::VisionEncoder enc = vlmamba::load_vision_tower(o->model);
            std::fprintf(stderr, "loaded %s (%s, %d layers) in %.2f s\n", o->model.c_str(),
                         vlmamba::vision_family_name(enc.cfg.family), enc.cfg.num_hidden_layers, load_t.seconds());
            Timer run_t;
            const vlmamba::VisionOutput out = enc.forward(px);
            const double run_s = run_t.seconds();
            std::vector<std::pair<std::string, vlmamba::Tensor>> tensors;
            for (std::size_t i = 0; i < out.hidden_states.size(); ++i)
                tensors.emplace_back("hidden_states." + std::to_string(i), out.hidden_states[i]);
            tensors.emplace_back("last_hidden_state", out.last_hidden_state);
            vlmamba::save_safetensors(o->out, tensors);
            std::fprintf(stderr, "vision: %lld tokens x %d in %.3f s; wrote %zu tensors to %s; peak memory %.1f MiB\n",
                         (long long)out.last_hidden_state.size(1), enc.cfg.hidden_size, run_s, tensors.size(),
                         o->out.c_str(), peak_rss_mib());
        });
    }
}

}  // namespace cli
