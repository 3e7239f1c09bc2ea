// The vlmamba command line: one binary, one subcommand per job (SPEC §8.3).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "vlmamba/vlmamba.hpp"

int main(int argc, char** argv) {
    CLI::App app{"vlmamba: VL-Mamba inference in C++ (vision tower + VSS connector + Mamba LM)"};
    app.require_subcommand(1);
    app.set_version_flag("--version", vlmamba::version());
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
