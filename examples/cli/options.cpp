#include "options.hpp"

#include <sys/resource.h>

#include <fstream>
#include <sstream>

#include "common.hpp"
#include "vlmamba/session/load.hpp"  // the one CLI translation unit that instantiates the zoo's variants

namespace cli {

void add_model_flags(CLI::App* cmd, ModelFlags& f, const char* what) {
    cmd->add_option("-m,--model", f.dir, what)->required()->check(CLI::ExistingDirectory);
    cmd->add_option("--device", f.device,
                    "cpu | cuda (the whole model on the GPU; Cobra's timm towers stay on the CPU)")
        ->check(CLI::IsMember({"cpu", "cuda"}))
        ->capture_default_str();
    cmd->add_option("--dtype", f.dtype,
                    "the LM's large matrices: f32 | bf16 (half the memory; products accumulate in f32)")
        ->check(CLI::IsMember({"f32", "bf16"}))
        ->capture_default_str();
    cmd->add_option("--tokenizer", f.tokenizer, "tokenizer.json, when the model directory has none")
        ->check(CLI::ExistingFile);
    cmd->add_option("--chat-template", f.chat_template,
                    "plain | llava_v1 | zephyr | chatml | a JSON file (default: the model's config.json)");
    cmd->add_option("--tower", f.towers,
                    "Cobra: a timm tower directory, NAME=DIR (dino, siglip; repeat), else from vlmamba.json");
    cmd->add_flag("--mmap", f.mmap,
                  "keep the weights as views of the mapped files (less memory, pages read on first use) instead of "
                  "copying them into ordinary memory (the default: faster decoding)");
}

vlmamba::Model load_model(const ModelFlags& f) {
    vlmamba::ModelOptions o;
    o.device = vlmamba::parse_device(f.device);
    o.weights = f.dtype == "bf16" ? vlmamba::DType::BF16 : vlmamba::DType::F32;
    o.tokenizer = f.tokenizer;
    o.chat_template = f.chat_template;
    o.mmap = f.mmap;
    for (const std::string& t : f.towers) {
        const auto eq = t.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == t.size())
            vlmamba::fail("cli", "--tower: expected NAME=DIR (e.g. dino=vit_large_patch14_reg4_dinov2.lvd142m), got '",
                          t, "'");
        o.towers[t.substr(0, eq)] = t.substr(eq + 1);
    }
    Timer t;
    vlmamba::Model m = vlmamba::Model::load(f.dir, o);
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    std::fprintf(stderr, "loaded %s (%s, %s, template %s, weights %s) in %.2f s, peak RSS %.0f MB\n", f.dir.c_str(),
                 m.variant().c_str(), vlmamba::device_name(m.device()), m.chat_template().name.c_str(),
                 f.mmap ? "mapped" : "in memory", t.seconds(), double(ru.ru_maxrss) / 1024.0);
    return m;
}

std::string PromptFlags::text() const {
    if (prompt_file.empty()) return prompt;
    std::ifstream in(prompt_file, std::ios::binary);
    if (!in) vlmamba::fail("cli", prompt_file, ": cannot read the prompt file");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

void add_prompt_flags(CLI::App* cmd, PromptFlags& f) {
    auto* p = cmd->add_option("-p,--prompt", f.prompt, "the prompt (a user turn in the chat template)");
    auto* file = cmd->add_option("-f,--file", f.prompt_file, "read the prompt from a file")->check(CLI::ExistingFile);
    auto* ids = cmd->add_option("--ids", f.ids, "token ids instead of a prompt, e.g. 1,2,3 (no template, no tokenizer)");
    p->excludes(file);
    ids->excludes(p);
    ids->excludes(file);
    cmd->add_option("--system", f.system, "system message (templates with one: llava_v1 has a default)");
}

void add_generation_flags(CLI::App* cmd, GenerationFlags& f, int default_n, bool outputs) {
    f.n_predict = default_n;
    cmd->add_option("-n,--n-predict,--max-new-tokens,--max-tokens", f.n_predict,
                    "maximum tokens to generate; -1 = until EOS")
        ->capture_default_str();
    cmd->add_option("--temp,--temperature", f.sampling.temperature, "temperature; 0 = greedy")->capture_default_str();
    cmd->add_option("--top-k", f.sampling.top_k, "keep the k most likely tokens; 0 = off")->capture_default_str();
    cmd->add_option("--top-p", f.sampling.top_p, "nucleus sampling threshold; 1 = off")->capture_default_str();
    cmd->add_option("--min-p", f.sampling.min_p, "drop tokens below min-p x the top probability; 0 = off")
        ->capture_default_str();
    cmd->add_option("--repeat-penalty,--repetition-penalty", f.sampling.repeat_penalty,
                    "penalty for tokens of the last 64; 1 = off")
        ->capture_default_str();
    cmd->add_option("-s,--seed", f.sampling.seed, "random seed: the same seed gives the same output")
        ->capture_default_str();
    cmd->add_option("--stop", f.stop, "stop string (repeatable); the reply ends before it");
    cmd->add_flag("--ignore-eos", f.ignore_eos, "generate exactly -n tokens, past <|endoftext|>");
    if (!outputs) return;
    cmd->add_flag("--print-ids", f.print_ids, "print only the JSON list of generated ids to stdout");
    cmd->add_flag("--json", f.json, "print one JSON object (text, ids, timings) to stdout at the end");
}

void print_timings(const vlmamba::Result& r) {
    const auto& t = r.timings;
    if (r.image_tokens > 0)
        std::fprintf(stderr, "preprocess %.3f s | vision encoder %.3f s | connector %.3f s\n", t.preprocess, t.vision,
                     t.connector);
    std::fprintf(stderr, "prompt: %lld tokens in %.3f s (%.1f tokens/s)\n", (long long)r.prompt_tokens, t.prefill,
                 t.prefill > 0 ? double(r.prompt_tokens) / t.prefill : 0.0);
    std::fprintf(stderr, "generation: %zu tokens in %.3f s (%.1f tokens/s)\n", r.ids.size(), t.decode,
                 t.decode > 0 ? double(r.ids.size()) / t.decode : 0.0);
    std::fprintf(stderr, "peak memory: %.1f MiB\n", peak_rss_mib());
}

}  // namespace cli
