// vlmamba run: answer a prompt about one or more images with a VL-Mamba directory (the main job).
#pragma once
#include <CLI/CLI.hpp>

#include "cmd_lm.hpp"
#include "cmd_vision.hpp"
#include "vlmamba/io/image.hpp"
#include "vlmamba/models/vision_encoder_cuda.hpp"
#include "vlmamba/models/zoo.hpp"

namespace cli {

// The vision tower on the chosen device: the model's CPU tower, or (cuda) its upload to the GPU in f32. The
// connector stays on the CPU.
struct VisionRunner {
    const vlmamba::zoo::AnyVlMamba& m;
    std::unique_ptr<vlmamba::CudaVisionEncoder> gpu;
    VisionRunner(const vlmamba::zoo::AnyVlMamba& model, const std::string& device) : m(model) {
        if (vlmamba::parse_device(device) == vlmamba::Device::Cuda)
            gpu = std::make_unique<vlmamba::CudaVisionEncoder>(vlmamba::CudaVisionEncoder::upload(m.vision_encoder()));
    }
    vlmamba::Tensor features(const vlmamba::Tensor& px) const { return gpu ? gpu->features(px) : m.features(px); }
    vlmamba::Tensor image_prefix(const vlmamba::Tensor& px) const { return m.connect(features(px)); }  // (L_v, d)
};

inline bool is_vlmamba_dir(const fs::path& dir) {
    const nlohmann::json j = vlmamba::read_json_file(dir / "config.json", "cli");
    return j.value("model_type", std::string()) == "vlmamba";
}

inline vlmamba::Tensor load_pixels_for(const vlmamba::zoo::AnyVlMamba& m, const std::string& image) {
    const vlmamba::Image img = vlmamba::load_image(image);
    const auto& pc = m.config().preprocess;
    std::vector<float> px = vlmamba::preprocess(img, pc);
    vlmamba::Tensor t = vlmamba::Tensor::empty({1, 3, pc.size, pc.size});  // (1, 3, S, S)
    std::copy(px.begin(), px.end(), t.data<float>());
    return t;
}

struct RunTimings {
    double preprocess = 0, vision = 0, connector = 0, prefill = 0, decode = 0;
};

inline void add_run(CLI::App& app) {
    auto* cmd = app.add_subcommand("run", "Answer a prompt about one or more images with a VL-Mamba model");
    cmd->footer(
        "Examples:\n"
        "  vlmamba run -m zoo/<model> --image cat.jpg -p \"What color is the cat?\"\n"
        "  vlmamba run -m DIR --image a.png --image b.png -p \"Compare the two pictures.\" --temp 0.7 -s 1\n"
        "  vlmamba run -m DIR --pixels px.safetensors --ids 5,6,7 --temp 0 --print-ids -n 8   (checks)\n"
        "The images become the LM's prefix, in the order given; the prompt is wrapped in the model's template\n"
        "(config.json prompt_template) unless --ids gives the whole text. Text streams to stdout; timings for\n"
        "preprocessing, vision encoder, connector, prefill and decode, and peak memory go to stderr.");
    struct Opts {
        std::string model, prompt, ids, pixels;
        std::vector<std::string> images;
        SamplingFlags f;
    };
    auto o = std::make_shared<Opts>();
    cmd->add_option("-m,--model", o->model, "VL-Mamba directory (config.json, model.safetensors, tokenizer.json)")
        ->required()->check(CLI::ExistingDirectory);
    auto* img = cmd->add_option("--image", o->images, "image file (PNG, JPEG, BMP, GIF); repeat for several");
    auto* px = cmd->add_option("--pixels", o->pixels, "pixel_values safetensors instead of --image (no preprocessing)");
    img->excludes(px);
    auto* p = cmd->add_option("-p,--prompt", o->prompt, "the question; wrapped in the model's prompt template");
    auto* ids = cmd->add_option("--ids", o->ids, "token ids of the whole text after the image prefix (no template)");
    p->excludes(ids);
    add_sampling_flags(cmd, o->f);
    cmd->callback([o, img, px, p, ids] {
        if (!*img && !*px) vlmamba::fail("run", "expected --image FILE or --pixels FILE, got neither");
        if (!*p && !*ids) vlmamba::fail("run", "expected -p TEXT or --ids 1,2,3, got neither");
        Timer load_t;
        const vlmamba::zoo::AnyVlMamba m = vlmamba::zoo::load(o->model);
        std::fprintf(stderr, "loaded %s (%s) in %.2f s\n", o->model.c_str(), m.variant().c_str(), load_t.seconds());
        const vlmamba::MambaLm& lm = m.language_model();
        const auto& tok = m.tokenizer();
        RunTimings t;
        std::vector<vlmamba::Tensor> pixels;
        {
            Timer tm;
            if (*px) pixels.push_back(read_pixels(o->pixels));
            for (const auto& f : o->images) pixels.push_back(load_pixels_for(m, f));
            t.preprocess = tm.seconds();
        }
        std::vector<vlmamba::Tensor> prefixes;
        const VisionRunner vision(m, o->f.device);
        for (const auto& pv : pixels) {
            Timer tv;
            const vlmamba::Tensor feats = vision.features(pv);  // (L_v, C_v)
            t.vision += tv.seconds();
            Timer tc;
            prefixes.push_back(m.connect(feats));  // (L_v, d)
            t.connector += tc.seconds();
        }
        std::vector<std::int32_t> prompt;
        if (*ids) {
            prompt = parse_ids(o->ids);
        } else {
            if (!tok) vlmamba::fail("run", o->model, ": -p needs a tokenizer.json; use --ids");
            prompt = tok->encode(vlmamba::apply_prompt_template(m.config().prompt_template, o->prompt));
        }
        auto runner = make_runner(lm, o->f.device);
        Timer tp;
        const vlmamba::Tensor embeds = m.input_embeddings(prefixes, prompt);  // (L, D)
        const vlmamba::Tensor last = runner->prefill(embeds);                 // (1, V)
        t.prefill = tp.seconds();
        const std::int64_t n_valid = tok ? std::min<std::int64_t>(tok->vocab_size(), lm.cfg.vocab_size)
                                         : lm.cfg.vocab_size;
        auto step = [&](std::int32_t id) { return runner->step(id); };
        const bool stream = !o->f.print_ids && !o->f.json;
        GenerationResult r = generate_tokens(last, step, o->f, tok ? &*tok : nullptr, n_valid, lm.cfg.eos_token_id,
                                             prompt, stream);
        t.decode = r.decode_s;
        const std::size_t n_prefill = std::size_t(embeds.size(0));
        if (o->f.print_ids) std::printf("%s\n", ids_json(r.ids).c_str());
        if (o->f.json) {
            nlohmann::json j{{"text", r.text},
                             {"ids", r.ids},
                             {"variant", m.variant()},
                             {"prefill_tokens", n_prefill},
                             {"timings_s",
                              {{"preprocess", t.preprocess}, {"vision", t.vision}, {"connector", t.connector},
                               {"prefill", t.prefill}, {"decode", t.decode}}},
                             {"decode_tokens_per_s", t.decode > 0 ? double(r.ids.size()) / t.decode : 0.0},
                             {"peak_rss_mib", peak_rss_mib()}};
            std::printf("%s\n", j.dump().c_str());
        }
        std::fprintf(stderr, "preprocess %.3f s | vision encoder %.3f s | connector %.3f s\n", t.preprocess, t.vision,
                     t.connector);
        print_timings(n_prefill, t.prefill, r.ids.size(), t.decode);
    });
}

// logits for a VL-Mamba directory: --pixels gives the image prefix; 'logits' holds the text positions only.
inline void vlmamba_logits(const std::string& dir, const std::string& pixels, const std::vector<std::int32_t>& ids,
                           const std::string& out) {
    const vlmamba::zoo::AnyVlMamba m = vlmamba::zoo::load(dir);
    std::vector<vlmamba::Tensor> prefixes;
    if (!pixels.empty()) prefixes.push_back(m.image_prefix(read_pixels(pixels)));
    vlmamba::save_safetensors(out, {{"logits", m.text_logits(prefixes, ids)}});
}

inline void add_logits(CLI::App& app) {
    auto* cmd = app.add_subcommand("logits", "Write full-sequence logits (L, V) float32 to a safetensors file");
    cmd->footer("Example: vlmamba logits -m DIR --ids 1,2,3 -o out.safetensors\n"
                "The tensor 'logits' has every row of the LM head, unmasked.");
    struct Opts { std::string model, ids, out, pixels; };
    auto o = std::make_shared<Opts>();
    cmd->add_option("-m,--model", o->model, "Mamba LM or VL-Mamba directory")->required()->check(CLI::ExistingDirectory);
    cmd->add_option("--pixels", o->pixels, "VL-Mamba only: pixel_values safetensors; logits cover the text positions");
    cmd->add_option("--ids", o->ids, "token ids, e.g. 1,2,3")->required();
    cmd->add_option("-o,--output", o->out, "output .safetensors path")->required();
    cmd->callback([o] {
        const auto ids = parse_ids(o->ids);
        if (ids.empty()) vlmamba::fail("logits", "expected a non-empty --ids list, got 0 tokens");
        if (is_vlmamba_dir(o->model)) {
            vlmamba_logits(o->model, o->pixels, ids, o->out);
            std::fprintf(stderr, "wrote text-position logits to %s\n", o->out.c_str());
            return;
        }
        if (!o->pixels.empty()) vlmamba::fail("logits", o->model, ": --pixels needs a VL-Mamba directory");
        const vlmamba::MambaLm lm = vlmamba::load_mamba_lm(o->model);
        vlmamba::save_safetensors(o->out, {{"logits", lm.forward(ids)}});
        std::fprintf(stderr, "wrote logits (%zu, %d) to %s\n", ids.size(), lm.cfg.vocab_size, o->out.c_str());
    });
}

}  // namespace cli
