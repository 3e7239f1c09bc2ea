// The subcommands of the vlmamba CLI, one translation unit each; each registers itself on the app.
#pragma once
#include <CLI/CLI.hpp>

namespace cli {

void add_run(CLI::App& app);
void add_generate(CLI::App& app);
void add_chat(CLI::App& app);
void add_logits(CLI::App& app);
void add_preprocess(CLI::App& app);
void add_vision(CLI::App& app);
void add_inspect(CLI::App& app);
void add_convert(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_eval(CLI::App& app);
void add_score(CLI::App& app);
void add_serve(CLI::App& app);  // only when built with cpp-httplib (VLMAMBA_HAVE_HTTPLIB)

}  // namespace cli
