// Text-only commands on a Mamba LM directory: generate, logits; and the tokenizer commands.
#pragma once
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include "common.hpp"
#include "vlmamba/io/safetensors.hpp"
#include "vlmamba/io/tokenizer.hpp"
#include "vlmamba/models/load_mamba.hpp"
#include "vlmamba/models/sampling.hpp"
#include "vlmamba/models/device_mamba_lm.hpp"

namespace cli {

namespace fs = std::filesystem;

struct SamplingFlags {
    vlmamba::SamplingParams p;
    std::string device = "cpu";
    int n_predict = 64;
    bool ignore_eos = false;
    bool print_ids = false;
    bool json = false;
};

inline void add_sampling_flags(CLI::App* cmd, SamplingFlags& f) {
    cmd->add_option("-n,--n-predict", f.n_predict, "maximum number of tokens to generate")->capture_default_str();
    cmd->add_option("--temp", f.p.temperature, "temperature; 0 = greedy")->capture_default_str();
    cmd->add_option("--top-k", f.p.top_k, "keep the k most likely tokens; 0 = off")->capture_default_str();
    cmd->add_option("--top-p", f.p.top_p, "nucleus sampling threshold; 1 = off")->capture_default_str();
    cmd->add_option("--min-p", f.p.min_p, "drop tokens below min-p x the top probability; 0 = off")
        ->capture_default_str();
    cmd->add_option("--repeat-penalty", f.p.repeat_penalty, "penalty for tokens of the last 64; 1 = off")
        ->capture_default_str();
    cmd->add_option("-s,--seed", f.p.seed, "random seed: the same seed gives the same output")->capture_default_str();
    cmd->add_flag("--ignore-eos", f.ignore_eos, "generate exactly -n tokens, past <|endoftext|>");
    cmd->add_flag("--print-ids", f.print_ids, "print only the JSON list of generated ids to stdout");
    cmd->add_flag("--json", f.json, "print one JSON object (text, ids, timings) to stdout at the end");
    cmd->add_option("--device", f.device,
                    "cpu | cuda (the LM's prefill and decode on the GPU; run and eval put the vision tower there too)")
        ->check(CLI::IsMember({"cpu", "cuda"}))
        ->capture_default_str();
}

// The LM's prefill + recurrent decode on the chosen device (a copy of the model's tensors: shared, not copied).
inline std::unique_ptr<vlmamba::DeviceMambaLm> make_runner(const vlmamba::MambaLm& lm, const std::string& device) {
    vlmamba::LoadOptions o;
    o.device = vlmamba::parse_device(device);
    return std::make_unique<vlmamba::DeviceMambaLm>(vlmamba::DeviceMambaLm::from(lm, o));
}

inline std::optional<vlmamba::Tokenizer> maybe_tokenizer(const fs::path& dir) {
    if (!fs::exists(dir / "tokenizer.json")) return std::nullopt;
    return vlmamba::Tokenizer::from_file(dir / "tokenizer.json");
}

struct GenerationResult {
    std::vector<std::int32_t> ids;
    std::string text;
    double decode_s = 0;
};

// Samples up to n tokens after `last_logits` (V), advancing `state`; streams text to stdout unless quiet.
template <class StepFn>
GenerationResult generate_tokens(vlmamba::Tensor last_logits, StepFn&& step, const SamplingFlags& f,
                                 const vlmamba::Tokenizer* tok, std::int64_t n_valid, int eos,
                                 std::vector<std::int32_t> history, bool stream) {
    GenerationResult r;
    vlmamba::Sampler sampler(f.p);
    std::optional<vlmamba::StreamDecoder> dec;
    if (tok) dec.emplace(*tok);
    Timer t;
    for (int i = 0; i < f.n_predict; ++i) {
        std::span<const float> lg(last_logits.data<float>(), std::size_t(last_logits.numel()));
        const std::int32_t id = sampler.sample(lg, n_valid, history);
        if (id == eos && !f.ignore_eos) break;
        r.ids.push_back(id);
        history.push_back(id);
        if (dec) {
            std::string piece = dec->push(id);
            r.text += piece;
            if (stream) { std::fwrite(piece.data(), 1, piece.size(), stdout); std::fflush(stdout); }
        }
        if (i + 1 < f.n_predict) last_logits = step(id);
    }
    if (dec) {
        std::string rest = dec->flush();
        r.text += rest;
        if (stream) std::fwrite(rest.data(), 1, rest.size(), stdout);
    }
    if (stream && tok) std::fputc('\n', stdout);
    r.decode_s = t.seconds();
    return r;
}

inline void print_timings(std::size_t n_prompt, double prefill_s, std::size_t n_gen, double decode_s) {
    std::fprintf(stderr, "prompt: %zu tokens in %.3f s (%.1f tokens/s)\n", n_prompt, prefill_s,
                 prefill_s > 0 ? double(n_prompt) / prefill_s : 0.0);
    std::fprintf(stderr, "generation: %zu tokens in %.3f s (%.1f tokens/s)\n", n_gen, decode_s,
                 decode_s > 0 ? double(n_gen) / decode_s : 0.0);
    std::fprintf(stderr, "peak memory: %.1f MiB\n", peak_rss_mib());
}

inline void add_generate(CLI::App& app) {
    auto* cmd = app.add_subcommand("generate", "Generate text with a Mamba LM (recurrent decoding, O(1) per token)");
    cmd->footer("Examples:\n  vlmamba generate -m mamba-130m-hf -p \"The capital of France is\" -n 32\n"
                "  vlmamba generate -m DIR --ids 5,17,9 --temp 0 --print-ids -n 8\n"
                "Text streams to stdout; timings and peak memory go to stderr. Stops at <|endoftext|> or after -n.");
    struct Opts { std::string model, prompt, ids; SamplingFlags f; };
    auto o = std::make_shared<Opts>();
    cmd->add_option("-m,--model", o->model, "Mamba LM directory (config.json, model.safetensors, tokenizer.json)")
        ->required()->check(CLI::ExistingDirectory);
    auto* p = cmd->add_option("-p,--prompt", o->prompt, "prompt text (needs tokenizer.json)");
    auto* ids = cmd->add_option("--ids", o->ids, "prompt token ids, e.g. 1,2,3 (no tokenizer needed)");
    p->excludes(ids);
    add_sampling_flags(cmd, o->f);
    cmd->callback([o, p, ids] {
        if (!*p && !*ids) vlmamba::fail("generate", "expected -p TEXT or --ids 1,2,3, got neither");
        Timer load_t;
        const vlmamba::MambaLm lm = vlmamba::load_mamba_lm(o->model);
        auto tok = maybe_tokenizer(o->model);
        std::fprintf(stderr, "loaded %s in %.2f s\n", o->model.c_str(), load_t.seconds());
        std::vector<std::int32_t> prompt;
        if (*ids) {
            prompt = parse_ids(o->ids);
        } else {
            if (!tok) vlmamba::fail("generate", o->model, ": -p needs tokenizer.json in the model directory; use --ids");
            prompt = tok->encode(o->prompt);
        }
        if (prompt.empty()) vlmamba::fail("generate", "expected a non-empty prompt, got 0 tokens");
        auto runner = make_runner(lm, o->f.device);
        Timer pre_t;
        vlmamba::Tensor last = runner->prefill(lm.embed(prompt));  // (1, V)
        const double prefill_s = pre_t.seconds();
        const std::int64_t n_valid = tok ? std::min<std::int64_t>(tok->vocab_size(), lm.cfg.vocab_size)
                                         : lm.cfg.vocab_size;
        const bool stream = !o->f.print_ids && !o->f.json;
        auto step = [&](std::int32_t id) { return runner->step(id); };
        GenerationResult r = generate_tokens(last, step, o->f, tok ? &*tok : nullptr, n_valid, lm.cfg.eos_token_id,
                                             prompt, stream);
        if (o->f.print_ids) std::printf("%s\n", ids_json(r.ids).c_str());
        if (o->f.json) {
            nlohmann::json j{{"ids", r.ids}, {"text", r.text}, {"prompt_tokens", prompt.size()},
                             {"prefill_s", prefill_s}, {"decode_s", r.decode_s}, {"peak_rss_mib", peak_rss_mib()}};
            std::printf("%s\n", j.dump().c_str());
        }
        print_timings(prompt.size(), prefill_s, r.ids.size(), r.decode_s);
    });
}

inline void add_tokenizer_commands(CLI::App& app) {
    {
        auto* cmd = app.add_subcommand("tokenize", "Encode text with a tokenizer.json; prints {\"ids\": [...]}");
        cmd->footer("Example: vlmamba tokenize --tokenizer DIR/tokenizer.json --text \"Hello world\"");
        struct Opts { std::string tok, text; };
        auto o = std::make_shared<Opts>();
        cmd->add_option("--tokenizer", o->tok, "tokenizer.json")->required()->check(CLI::ExistingFile);
        cmd->add_option("--text", o->text, "text to encode (UTF-8)")->required();
        cmd->callback([o] {
            const auto t = vlmamba::Tokenizer::from_file(o->tok);
            std::printf("{\"ids\": %s}\n", ids_json(t.encode(o->text)).c_str());
        });
    }
    {
        auto* cmd = app.add_subcommand("detokenize", "Decode ids with a tokenizer.json; prints the text");
        cmd->footer("Example: vlmamba detokenize --tokenizer DIR/tokenizer.json --ids 12,99");
        struct Opts { std::string tok, ids; bool skip = false; };
        auto o = std::make_shared<Opts>();
        cmd->add_option("--tokenizer", o->tok, "tokenizer.json")->required()->check(CLI::ExistingFile);
        cmd->add_option("--ids", o->ids, "token ids, e.g. 1,2,3")->required();
        cmd->add_flag("--skip-special", o->skip, "drop <|endoftext|> and <|padding|>");
        cmd->callback([o] {
            const auto t = vlmamba::Tokenizer::from_file(o->tok);
            const auto ids = parse_ids(o->ids);
            std::printf("%s\n", t.decode(ids, o->skip).c_str());
        });
    }
}

}  // namespace cli
