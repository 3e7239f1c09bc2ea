// vlmamba run: answer a prompt about images (or none) with a VL-Mamba directory: the main job.
#include "commands.hpp"
#include "common.hpp"
#include "options.hpp"

namespace cli {

void add_run(CLI::App& app) {
    auto* cmd = app.add_subcommand("run", "Answer a prompt about images with a VL-Mamba model (the main job)");
    cmd->footer(
        "Examples:\n"
        "  vlmamba run -m zoo/shapes-vlmamba --image cat.png -p \"What color is the cat?\"\n"
        "  vlmamba run -m DIR --image a.png --image b.png -p \"Compare the two pictures.\" --temp 0.7 -s 1\n"
        "  vlmamba run -m DIR -p \"Describe a sunset.\"                       (no image: text only)\n"
        "  vlmamba run -m DIR --pixels px.safetensors --ids 5,6,7 --temp 0 --print-ids -n 8   (checks)\n"
        "The images come first, in the order given; the prompt is a user turn in the model's chat template\n"
        "(config.json; --chat-template overrides) unless --ids gives the whole text. Text streams to stdout;\n"
        "timings (preprocess, vision encoder, connector, prefill, decode) and peak memory go to stderr.");
    struct Opts {
        ModelFlags model;
        PromptFlags prompt;
        GenerationFlags gen;
        std::vector<std::string> images;
        std::string pixels;
    };
    auto o = std::make_shared<Opts>();
    add_model_flags(cmd, o->model, "VL-Mamba directory (config.json, model.safetensors, tokenizer.json)");
    auto* img = cmd->add_option("--image", o->images, "image file (PNG, JPEG, BMP, GIF); repeat for several");
    auto* px = cmd->add_option("--pixels", o->pixels, "pixel_values safetensors (B, 3, S, S) instead of --image");
    img->excludes(px);
    add_prompt_flags(cmd, o->prompt);
    add_generation_flags(cmd, o->gen);
    cmd->callback([o] {
        if (!o->prompt.has_text() && !o->prompt.ids)
            vlmamba::fail("run", "expected -p TEXT, -f FILE or --ids 1,2,3, got none");
        // Every input is read and checked before the model loads (a large model takes seconds to load).
        vlmamba::Request r;
        const vlmamba::Tensor pixels = o->pixels.empty() ? vlmamba::Tensor() : read_pixels(o->pixels);
        if (pixels.defined())
            for (std::int64_t b = 0; b < pixels.size(0); ++b) r.images.emplace_back(pixels.select(0, b));
        for (const auto& f : o->images) r.images.emplace_back(vlmamba::load_image(f));
        if (o->prompt.ids) {
            r.ids = parse_ids(*o->prompt.ids);
            if (r.ids->empty() && r.images.empty()) vlmamba::fail("run", "expected a non-empty prompt, got 0 tokens");
        } else {
            if (!o->prompt.system.empty()) r.messages.push_back({"system", o->prompt.system, {}});
            r.messages.push_back({"user", o->prompt.text(), std::move(r.images)});
            r.images.clear();
        }
        o->gen.apply(r);
        const vlmamba::Model m = load_model(o->model);
        vlmamba::Session s(m);
        generate_and_print(s, r, o->gen);
    });
}

}  // namespace cli
