// Load time of the same f32 weights as a PyTorch checkpoint (pytorch_model.bin, torch.save's zip format) and as
// safetensors, through WeightStore, in the two modes a loader uses:
//   mapped: open + every tensor as a view + one read per 4 KiB page (the pages come from the page cache);
//   copied: open + every tensor copied once into owned memory (clone()).
// The files (Args: total MiB) are written once per size into a temporary directory before timing (warm page
// cache) and removed at exit. The .bin is written by a small torch.save-format writer below (stored zip entries,
// 64-byte aligned data, one OrderedDict of _rebuild_tensor_v2 calls, as torch 1.13 writes them), 2-D tensors of
// 2560 x 2560 and 2560 x 10240 like mamba-2.8b's.
//
//   build/pickle/bench/bench_checkpoint_load --benchmark_filter='1024' --benchmark_min_time=2s
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <utility>
#include <string>
#include <vector>

#include "vlmamba/io/safetensors.hpp"
#include "vlmamba/io/weights.hpp"
#include "vlmamba/io/zip.hpp"

namespace fs = std::filesystem;
namespace vm = vlmamba;

namespace {

// ---- a minimal torch.save writer (zip format, protocol 2 pickle) ----

void put_u16(std::string& s, std::uint32_t v) { s += char(v & 0xff), s += char(v >> 8 & 0xff); }
void put_u32(std::string& s, std::uint32_t v) { put_u16(s, v & 0xffff), put_u16(s, v >> 16); }
void put_str(std::string& p, const std::string& v) { p += 'X', put_u32(p, std::uint32_t(v.size())), p += v; }
void put_int(std::string& p, std::int64_t v) { p += 'J', put_u32(p, std::uint32_t(std::int32_t(v))); }

std::string state_dict_pickle(const std::vector<std::pair<std::string, vm::Tensor>>& tensors) {
    std::string p = "\x80\x02";
    p += "ccollections\nOrderedDict\n)R(";
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        const vm::Tensor& t = tensors[i].second;
        put_str(p, tensors[i].first);
        p += "ctorch._utils\n_rebuild_tensor_v2\n((";
        put_str(p, "storage");
        p += "ctorch\nFloatStorage\n";
        put_str(p, std::to_string(i));
        put_str(p, "cpu");
        put_int(p, t.numel());
        p += "tQ";
        put_int(p, 0);
        put_int(p, t.size(0)), put_int(p, t.size(1)), p += '\x86';
        put_int(p, t.size(1)), put_int(p, 1), p += '\x86';
        p += "\x89" "ccollections\nOrderedDict\n)Rt" "R";
    }
    return p + "u.";
}

void write_torch_zip(const fs::path& path, const std::vector<std::pair<std::string, vm::Tensor>>& tensors) {
    std::vector<std::pair<std::string, std::string_view>> entries;
    const std::string pkl = state_dict_pickle(tensors), version = "3\n";
    entries.emplace_back("archive/data.pkl", pkl);
    for (std::size_t i = 0; i < tensors.size(); ++i)
        entries.emplace_back("archive/data/" + std::to_string(i),
                             std::string_view(reinterpret_cast<const char*>(tensors[i].second.raw()),
                                              tensors[i].second.nbytes()));
    entries.emplace_back("archive/version", version);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    std::string central;
    std::uint64_t pos = 0;
    for (const auto& [name, data] : entries) {
        const std::uint32_t crc = vm::crc32(reinterpret_cast<const std::byte*>(data.data()), data.size());
        const std::uint64_t base = pos + 30 + name.size() + 4;
        const std::uint32_t pad = std::uint32_t((64 - base % 64) % 64);
        std::string h;
        put_u32(h, 0x04034b50), put_u16(h, 20), put_u16(h, 0), put_u16(h, 0), put_u32(h, 0), put_u32(h, crc);
        put_u32(h, std::uint32_t(data.size())), put_u32(h, std::uint32_t(data.size()));
        put_u16(h, std::uint32_t(name.size())), put_u16(h, 4 + pad), h += name;
        put_u16(h, 0x4246), put_u16(h, pad), h.append(pad, 'Z');
        std::string c;
        put_u32(c, 0x02014b50), put_u16(c, 20), put_u16(c, 20), put_u16(c, 0), put_u16(c, 0), put_u32(c, 0);
        put_u32(c, crc), put_u32(c, std::uint32_t(data.size())), put_u32(c, std::uint32_t(data.size()));
        put_u16(c, std::uint32_t(name.size())), put_u16(c, 0), put_u16(c, 0), put_u16(c, 0), put_u16(c, 0);
        put_u32(c, 0), put_u32(c, std::uint32_t(pos)), c += name;
        central += c;
        out.write(h.data(), std::streamsize(h.size()));
        out.write(data.data(), std::streamsize(data.size()));
        pos += h.size() + data.size();
    }
    std::string e;
    put_u32(e, 0x06054b50), put_u16(e, 0), put_u16(e, 0), put_u16(e, std::uint32_t(entries.size()));
    put_u16(e, std::uint32_t(entries.size())), put_u32(e, std::uint32_t(central.size()));
    put_u32(e, std::uint32_t(pos)), put_u16(e, 0);
    out.write(central.data(), std::streamsize(central.size()));
    out.write(e.data(), std::streamsize(e.size()));
}

// ---- the files, once per size ----

struct Files {
    fs::path bin, safetensors;
    std::uint64_t bytes = 0;
};

fs::path temp_root() {
    static const fs::path root = [] {
        fs::path r = fs::temp_directory_path() / ("vlmamba_bench_ckpt_" + std::to_string(::getpid()));
        fs::create_directories(r);
        std::atexit([] {
            std::error_code ec;
            fs::remove_all(fs::temp_directory_path() / ("vlmamba_bench_ckpt_" + std::to_string(::getpid())), ec);
        });
        return r;
    }();
    return root;
}

const Files& files_for(std::int64_t mib) {
    static std::map<std::int64_t, Files> cache;
    auto it = cache.find(mib);
    if (it != cache.end()) return it->second;
    std::vector<std::pair<std::string, vm::Tensor>> tensors;
    std::mt19937 g(1);
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    std::uint64_t bytes = 0, target = std::uint64_t(mib) << 20;
    for (int i = 0; bytes < target; ++i) {
        const std::int64_t cols = i % 2 ? 10240 : 2560;
        const std::int64_t rows = std::min<std::int64_t>(2560, std::int64_t((target - bytes) / 4 / cols) + 1);
        vm::Tensor t = vm::Tensor::empty({rows, cols});
        for (std::int64_t k = 0; k < t.numel(); ++k) t.data<float>()[k] = d(g);
        bytes += t.nbytes();
        tensors.emplace_back("backbone.layers." + std::to_string(i) + ".weight", std::move(t));
    }
    Files f;
    f.bin = temp_root() / (std::to_string(mib) + ".bin");
    f.safetensors = temp_root() / (std::to_string(mib) + ".safetensors");
    f.bytes = bytes;
    write_torch_zip(f.bin, tensors);
    vm::save_safetensors(f.safetensors, tensors);
    ::sync();  // no writeback of the fresh files while timing
    for (const fs::path& p : {f.bin, f.safetensors}) {  // and both wholly in the page cache
        const vm::WeightStore s = vm::WeightStore::open(p);
        for (const auto& name : s.names()) benchmark::DoNotOptimize(s.get(name).raw()[0]);
    }
    return cache.emplace(mib, std::move(f)).first->second;
}

void load(benchmark::State& st, bool pytorch, bool copy) {
    const Files& f = files_for(st.range(0));
    const fs::path& path = pytorch ? f.bin : f.safetensors;
    for (auto _ : st) {
        const vm::WeightStore store = vm::WeightStore::open(path);
        float sum = 0;
        for (const auto& name : store.names()) {
            const vm::Tensor t = copy ? store.get(name) : store.view(name);  // get: ordinary memory (the default)
            const float* p = t.data<float>();
            for (std::int64_t k = 0; k < t.numel(); k += 1024) sum += p[k];  // one read per 4 KiB page
        }
        benchmark::DoNotOptimize(sum);
    }
    st.counters["GB/s"] = benchmark::Counter(double(f.bytes) * double(st.iterations()), benchmark::Counter::kIsRate);
    st.counters["MiB"] = double(f.bytes) / (1 << 20);
}

void BM_load_mapped_safetensors(benchmark::State& st) { load(st, false, false); }
void BM_load_mapped_pytorch(benchmark::State& st) { load(st, true, false); }
void BM_load_copied_safetensors(benchmark::State& st) { load(st, false, true); }
void BM_load_copied_pytorch(benchmark::State& st) { load(st, true, true); }

}  // namespace

// Repetitions, interleaved by size: the machine may be shared; compare the medians.
#define VLM_LOAD_BENCH(fn) \
    BENCHMARK(fn)->Arg(64)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime()->Repetitions(5)->ReportAggregatesOnly(true)
VLM_LOAD_BENCH(BM_load_mapped_safetensors);
VLM_LOAD_BENCH(BM_load_mapped_pytorch);
VLM_LOAD_BENCH(BM_load_copied_safetensors);
VLM_LOAD_BENCH(BM_load_copied_pytorch);

BENCHMARK_MAIN();
