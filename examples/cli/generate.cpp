// vlmamba generate: text with a Mamba LM (recurrent decoding, O(1) per token).
#include "commands.hpp"
#include "common.hpp"
#include "options.hpp"

namespace cli {

void add_generate(CLI::App& app) {
    auto* cmd = app.add_subcommand("generate", "Generate text with a Mamba LM (recurrent decoding, O(1) per token)");
    cmd->footer("Examples:\n"
                "  vlmamba generate -m mamba-130m-hf -p \"The capital of France is\" -n 32\n"
                "  vlmamba generate -m state-spaces-mamba-130m --tokenizer tokenizer.json -f prompt.txt --temp 0.7\n"
                "  vlmamba generate -m DIR --ids 5,17,9 --temp 0 --print-ids -n 8\n"
                "The prompt is raw text unless --chat-template names a template. Text streams to stdout; timings and\n"
                "peak memory go to stderr. Stops at <|endoftext|>, a --stop string, or after -n tokens (-1: no limit).");
    struct Opts { ModelFlags model; PromptFlags prompt; GenerationFlags gen; };
    auto o = std::make_shared<Opts>();
    add_model_flags(cmd, o->model, "Mamba LM directory (config.json, model.safetensors, tokenizer.json)");
    add_prompt_flags(cmd, o->prompt);
    add_generation_flags(cmd, o->gen);
    cmd->callback([o] {
        if (!o->prompt.has_text() && !o->prompt.ids)
            vlmamba::fail("generate", "expected -p TEXT, -f FILE or --ids 1,2,3, got none");
        if (is_vlmamba_dir(o->model.dir))
            vlmamba::fail("generate", o->model.dir, " is a VL-Mamba model: use `vlmamba run -m ", o->model.dir,
                          " [--image FILE] -p TEXT`");
        vlmamba::Request r;
        if (o->prompt.ids) {
            r.ids = parse_ids(*o->prompt.ids);
            if (r.ids->empty()) vlmamba::fail("generate", "expected a non-empty prompt, got 0 tokens");
        } else if (o->model.chat_template.empty() && o->prompt.system.empty()) {
            r.prompt = o->prompt.text();
            r.raw = true;
        } else {
            if (!o->prompt.system.empty()) r.messages.push_back({"system", o->prompt.system, {}});
            r.messages.push_back({"user", o->prompt.text(), {}});
        }
        o->gen.apply(r);
        const vlmamba::Model m = load_model(o->model);
        vlmamba::Session s(m);
        generate_and_print(s, r, o->gen);
    });
}

}  // namespace cli
