// eval's sharding over processes: LLaVA's chunks, the rank from MPI or Slurm, shard files.
#pragma once
#include <sched.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <thread>
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "../common.hpp"
#include "vlmamba/core/parallel.hpp"

namespace cli::eval {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

// ---------------------------------------------------------------------------------------------
// Sharding
// ---------------------------------------------------------------------------------------------

// LLaVA's get_chunk: chunks of ceil(n / num_chunks) questions; chunk idx may be empty.
struct Chunk {
    std::size_t begin = 0, end = 0;
};

inline Chunk get_chunk(std::size_t n, int num_chunks, int idx) {
    if (n == 0) return {};
    const std::size_t size = (n + std::size_t(num_chunks) - 1) / std::size_t(num_chunks);
    const std::size_t b = std::min(n, size * std::size_t(idx));
    return {b, std::min(n, b + size)};
}

struct Rank {
    int idx = 0, size = 1;
    std::string source;  // the environment variable it came from; empty: flags or a single process
};

inline std::optional<long> env_int(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) return std::nullopt;
    char* end = nullptr;
    const long x = std::strtol(v, &end, 10);
    if (*end != '\0') vlmamba::fail("eval", "environment ", name, ": expected an integer, got '", v, "'");
    return x;
}

// The process's rank from MPI (Open MPI, PMI: MPICH, Intel MPI) or Slurm, if launched by one.
inline std::optional<Rank> rank_from_env() {
    static constexpr const char* pairs[][2] = {
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"}, {"PMI_RANK", "PMI_SIZE"}, {"SLURM_PROCID", "SLURM_NTASKS"}};
    for (const auto& [rank_var, size_var] : pairs) {
        const auto r = env_int(rank_var), s = env_int(size_var);
        if (!r || !s) continue;
        if (*s < 1 || *r < 0 || *r >= *s)
            vlmamba::fail("eval", "environment ", rank_var, "=", *r, " ", size_var, "=", *s,
                          ": expected 0 <= rank < size");
        return Rank{int(*r), int(*s), rank_var};
    }
    return std::nullopt;
}

// With several processes on one host and no explicit thread count, share the cores between them.
inline void share_cores(const CLI::App& root) {
    const CLI::Option* t = root.get_option_no_throw("--threads");
    if ((t && t->count() > 0) || std::getenv("VLMAMBA_THREADS") || std::getenv("OMP_NUM_THREADS")) return;
    std::optional<long> local = env_int("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!local) local = env_int("MPI_LOCALNRANKS");
    if (!local || *local <= 1) return;
    const long all = long(std::max(1u, std::thread::hardware_concurrency()));
    cpu_set_t mask;
    const long mine = sched_getaffinity(0, sizeof mask, &mask) == 0 ? long(CPU_COUNT(&mask)) : all;
    // Bound by the launcher (Open MPI binds to a core for np <= 2): its cores are its own; else share them.
    vlmamba::set_num_threads(int(std::max(1L, mine < all ? mine : all / *local)));
}

// A.jsonl -> A.<i>_of_<N>.jsonl (next to A.jsonl).
inline fs::path shard_path(const fs::path& out, int idx, int n) {
    const std::string name =
        out.stem().string() + "." + std::to_string(idx) + "_of_" + std::to_string(n) + out.extension().string();
    return out.parent_path() / name;
}

// All shards A.<i>_of_<N>.jsonl of A.jsonl, in chunk order; none: empty. Shards of several N, or a missing
// shard, are errors.
inline std::vector<fs::path> find_shards(const fs::path& out, const char* op) {
    const fs::path dir = out.parent_path().empty() ? fs::path(".") : out.parent_path();
    const std::string stem = out.stem().string() + ".", ext = out.extension().string();
    std::map<int, std::set<int>> found;  // N -> chunk indices
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string name = e.path().filename().string();
        if (name.size() <= stem.size() + ext.size() || name.compare(0, stem.size(), stem) != 0 ||
            name.compare(name.size() - ext.size(), ext.size(), ext) != 0)
            continue;
        const std::string mid = name.substr(stem.size(), name.size() - stem.size() - ext.size());  // "i_of_N"
        const auto of = mid.find("_of_");
        auto digits = [](const std::string& s) {
            return !s.empty() && s.size() < 9 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
        };
        if (of == std::string::npos || !digits(mid.substr(0, of)) || !digits(mid.substr(of + 4))) continue;
        const int i = std::stoi(mid.substr(0, of)), n = std::stoi(mid.substr(of + 4));
        if (n >= 1 && i < n) found[n].insert(i);
    }
    if (found.empty()) return {};
    if (found.size() > 1) {
        std::string ns;
        for (const auto& [n, _] : found) ns += (ns.empty() ? "" : ", ") + std::to_string(n);
        vlmamba::fail(op, out.string(), ": expected shards of one chunk count, got shards of ", ns,
                      " chunks; remove the stale ones");
    }
    const int n = found.begin()->first;
    std::vector<fs::path> shards;
    for (int i = 0; i < n; ++i) {
        const fs::path p = shard_path(out, i, n);
        if (!found.begin()->second.count(i))
            vlmamba::fail(op, "expected shard ", i, " of ", n, " at ", p.string(), ", got no such file");
        shards.push_back(p);
    }
    return shards;
}

// An answers argument: the file itself, or, if it does not exist, its shards.
inline std::vector<fs::path> expand_answers(const fs::path& arg, const char* op) {
    if (fs::exists(arg)) return {arg};
    std::vector<fs::path> shards = find_shards(arg, op);
    if (shards.empty())
        vlmamba::fail(op, arg.string(), ": expected an answers file or its shards ",
                      shard_path(arg, 0, 2).filename().string(), ", ..., got neither");
    return shards;
}


}  // namespace cli::eval
