// The vlmamba command line: one binary, one subcommand per job (SPEC §8.3), each a thin client of the library.
#include <CLI/CLI.hpp>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <xsimd/xsimd.hpp>

#include "commands.hpp"
#include "vlmamba/config.hpp"
#include "vlmamba/core/error.hpp"
#include "vlmamba/core/parallel.hpp"
#include "vlmamba/io/mmap_file.hpp"

namespace {

std::string build_info() {
#ifdef VLMAMBA_WITH_CUDA
    const char* cuda = "on";
#else
    const char* cuda = "off";
#endif
    return std::string("vlmamba ") + vlmamba::version() + " (CUDA " + cuda + ", SIMD " +
           xsimd::default_arch::name() + ", " +
#if defined(__clang__)
           "clang " __clang_version__
#elif defined(__GNUC__)
           "gcc " __VERSION__
#else
           "unknown compiler"
#endif
           + ")";
}

}  // namespace

int main(int argc, char** argv) {
    // A model file truncated while mapped: one line naming it, exit 1. A write past the file-size limit (ulimit -f)
    // fails with EFBIG and is reported like a full disk, instead of killing the process with SIGXFSZ.
    vlmamba::install_bus_error_handler();
    std::signal(SIGXFSZ, SIG_IGN);
    CLI::App app{"vlmamba: VL-Mamba inference in C++ (vision tower + VSS connector + Mamba LM)"};
    app.require_subcommand(1);
    app.set_version_flag("--version", build_info());
    app.add_option("-t,--threads", "worker threads (default: all cores); accepted after the subcommand too")
        ->envname("VLMAMBA_THREADS")
        ->check(CLI::Validator(
            [](std::string& v) -> std::string {
                int n = 0;
                const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
                if (ec == std::errc() && end == v.data() + v.size() && n >= 1 && n <= 4096) return {};
                return "expected a whole number of threads from 1 to 4096, got '" + v + "'";
            },
            "THREADS"))
        ->each([](const std::string& v) { vlmamba::set_num_threads(std::stoi(v)); });
    app.fallthrough();
    app.footer("Run 'vlmamba SUBCOMMAND --help' for each subcommand's options and examples.");
    cli::add_run(app);
    cli::add_chat(app);
    cli::add_generate(app);
    cli::add_eval(app);
    cli::add_score(app);
#ifdef VLMAMBA_HAVE_HTTPLIB
    cli::add_serve(app);
#endif
    cli::add_preprocess(app);
    cli::add_vision(app);
    cli::add_logits(app);
    cli::add_inspect(app);
    cli::add_convert(app);
    cli::add_tokenize(app);

    // An unknown subcommand: name the known ones.
    if (argc > 1 && argv[1][0] != '-') {
        bool known = false;
        std::string names;
        for (const CLI::App* sub : app.get_subcommands({})) {
            known |= sub->get_name() == argv[1];
            names += (names.empty() ? "" : ", ") + sub->get_name();
        }
        if (!known) {
            std::fprintf(stderr, "vlmamba: error: unknown command '%s'; commands: %s\n", argv[1], names.c_str());
            return 1;
        }
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {
        return app.exit(e);  // --help, --version
    } catch (const CLI::ParseError& e) {
        app.exit(e);  // prints CLI11's message
        return 1;     // README: argument errors exit 1
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vlmamba: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
