// Shared helpers of the libFuzzer targets (tests/fuzz/*.cpp). A target is one file:
//
//   #include "fuzz_common.hpp"
//   extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
//       const auto path = vlmamba::fuzz::write_input("config.json", data, size);  // parsers that take a path
//       vlmamba::fuzz::refused_or_ok([&] { (void)vlmamba::load_mamba_config(path); });
//       return 0;
//   }
//
// Bad input must end in vlmamba::Error (a one-line message) or succeed; any other exception escapes and libFuzzer
// reports it as a crash, as it does sanitizer reports, timeouts and allocations over -malloc_limit_mb.
// The target is listed in tests/fuzz/CMakeLists.txt and its seeds in scripts/fuzz (seeds_of).
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "vlmamba/core/error.hpp"

namespace vlmamba::fuzz {

// A directory of this process on tmpfs (/dev/shm when present, else $TMPDIR or /tmp), removed at exit.
inline const std::filesystem::path& scratch_dir() {
    static const std::filesystem::path dir = [] {
        namespace fs = std::filesystem;
        fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
        fs::path d = base / ("vlmamba-fuzz-" + std::to_string(::getpid()));
        fs::create_directories(d);
        static const fs::path removed_at_exit = d;
        std::atexit([] {
            std::error_code ec;
            fs::remove_all(removed_at_exit, ec);
        });
        return d;
    }();
    return dir;
}

// Writes `data` to scratch_dir()/name (replacing it) and returns the path.
inline std::filesystem::path write_input(const std::string& name, const std::uint8_t* data, std::size_t size) {
    const std::filesystem::path p = scratch_dir() / name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    out.close();
    if (!out) {
        std::fprintf(stderr, "fuzz: cannot write %s\n", p.c_str());
        std::abort();
    }
    return p;
}

// Copies a file of tests/data (VLMAMBA_TEST_DATA_DIR) to scratch_dir()/name, for fixed companions of the input.
inline void copy_test_data(const std::string& rel, const std::string& name) {
    namespace fs = std::filesystem;
    const fs::path dst = scratch_dir() / name;
    fs::create_directories(dst.parent_path());
    fs::copy_file(fs::path(VLMAMBA_TEST_DATA_DIR) / rel, dst, fs::copy_options::overwrite_existing);
}

// Runs f; a vlmamba::Error is a clean refusal. Anything else propagates to libFuzzer.
template <class F>
void refused_or_ok(F&& f) {
    try {
        f();
    } catch (const vlmamba::Error& e) {
        if (std::getenv("VLMAMBA_FUZZ_VERBOSE")) std::fprintf(stderr, "refused: %s\n", e.what());
    }
}

}  // namespace vlmamba::fuzz
