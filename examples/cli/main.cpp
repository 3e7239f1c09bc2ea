// The vlmamba command line: one binary, one subcommand per job (SPEC §8.3).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cmd_eval.hpp"
#include "cmd_inspect.hpp"
#include "cmd_lm.hpp"
#include "cmd_run.hpp"
#include "cmd_vision.hpp"
#include "vlmamba/vlmamba.hpp"

int main(int argc, char** argv) {
    CLI::App app{"vlmamba: VL-Mamba inference in C++ (vision tower + VSS connector + Mamba LM)"};
    app.require_subcommand(1);
    app.set_version_flag("--version", vlmamba::version());
    int threads = 0;
    app.add_option("-t,--threads", threads, "worker threads (default: all cores); accepted after the subcommand too")
        ->envname("VLMAMBA_THREADS")
        ->each([](const std::string& v) { vlmamba::set_num_threads(std::stoi(v)); });
    app.fallthrough();
    app.footer("Run 'vlmamba SUBCOMMAND --help' for each subcommand's options and examples.");
    cli::add_run(app);
    cli::add_generate(app);
    cli::add_vision_commands(app);
    cli::add_inspect(app);
    cli::add_logits(app);
    cli::add_tokenizer_commands(app);
    cli::add_eval_commands(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vlmamba: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
