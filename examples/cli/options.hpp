// The options every model subcommand shares, defined once: the model (-m, --device, --dtype, --tokenizer,
// --chat-template, --tower), the prompt (-p, -f, --system, --ids) and generation (sampling, stops, output format). Flag names
// follow llama.cpp and transformers, with their usual aliases.
#pragma once
#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "vlmamba/session/batch.hpp"
#include "vlmamba/session/session.hpp"

namespace cli {

struct ModelFlags {
    std::string dir, device = "cpu", dtype = "f32", tokenizer, chat_template;
    std::vector<std::string> towers;  // Cobra: NAME=DIR (dino, siglip)
    bool mmap = false;                // weights stay views of the mapped files
};
void add_model_flags(CLI::App* cmd, ModelFlags& f, const char* what);
// Loads the model (progress on stderr: "loaded DIR (variant, ...) in S s, peak RSS M MB").
vlmamba::Model load_model(const ModelFlags& f);

struct PromptFlags {
    std::string prompt, prompt_file, system;
    std::optional<std::string> ids;  // given, even if empty
    bool has_text() const { return !prompt.empty() || !prompt_file.empty(); }
    std::string text() const;  // -p, or the contents of -f FILE
};
void add_prompt_flags(CLI::App* cmd, PromptFlags& f);

struct GenerationFlags {
    vlmamba::SamplingParams sampling;
    int n_predict = 256;
    std::vector<std::string> stop;
    bool ignore_eos = false, print_ids = false, json = false;
    void apply(vlmamba::Request& r) const {
        r.sampling = sampling;
        r.max_tokens = n_predict;
        r.stop = stop;
        r.ignore_eos = ignore_eos;
    }
};
// `outputs`: also --print-ids and --json (commands that print one reply).
void add_generation_flags(CLI::App* cmd, GenerationFlags& f, int default_n = 256, bool outputs = true);

// Runs one turn: the reply streams to stdout (or --print-ids / --json at the end); timings go to stderr.
vlmamba::Result generate_and_print(vlmamba::Session& s, const vlmamba::Request& r, const GenerationFlags& f);

// Timings and peak memory on stderr, llama.cpp style.
void print_timings(const vlmamba::Result& r);

}  // namespace cli
