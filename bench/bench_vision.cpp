// Vision-tower benchmarks, each against the GEMM rate measured in the same run:
//   a SigLIP-SO400M/14-384-shaped tower (729 tokens, 1152 wide, 16 heads, MLP 4304) and a CLIP-L/14-336-shaped one
//   (577 tokens, 1024 wide, 16 heads, MLP 4096), random weights, patch embed + VLMAMBA_BENCH_LAYERS encoder layers
//   (default 3; the full towers have 27 and 24, every layer costs the same);
//   attention alone at the SigLIP shape; linear() 729×1152 -> 4304 as the baseline.
// FLOPs: per layer 2·N·(4C² + 2C·I) for the linears + 4·N²·C for attention; patch embed 2·N·C·3P².
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "vlmamba/models/vision_encoder.hpp"
#include "vlmamba/ops/attention.hpp"

namespace vm = vlmamba;

namespace {

struct TowerShape {
    const char* name;
    int hidden, heads, intermediate, image, patch, full_layers;
    vm::VisionFamily family;
};
constexpr TowerShape kSiglip{"siglip-so400m-384", 1152, 16, 4304, 384, 14, 27, vm::VisionFamily::Siglip};
constexpr TowerShape kClip{"clip-vit-l-336", 1024, 16, 4096, 336, 14, 24, vm::VisionFamily::Clip};

int bench_layers() {
    const char* e = std::getenv("VLMAMBA_BENCH_LAYERS");
    return e ? std::max(1, std::atoi(e)) : 3;
}

// Uniform with the variance of N(0, scale²), from a fast generator (weights only need realistic magnitudes).
vm::Tensor random_tensor(vm::Shape s, std::uint64_t seed, float scale) {
    vm::Tensor t = vm::Tensor::empty(std::move(s));
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    const float a = scale * std::sqrt(3.f);
    for (std::int64_t i = 0; i < t.numel(); ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        t.data<float>()[i] = a * (float(x >> 40) / float(1 << 24) * 2.f - 1.f);
    }
    return t;
}

vm::VisionConfig config_of(const TowerShape& s, int layers) {
    vm::VisionConfig c;
    c.family = s.family;
    c.hidden_size = s.hidden;
    c.intermediate_size = s.intermediate;
    c.num_hidden_layers = layers;
    c.num_attention_heads = s.heads;
    c.image_size = s.image;
    c.patch_size = s.patch;
    c.act = s.family == vm::VisionFamily::Clip ? vm::VitAct::QuickGelu : vm::VitAct::GeluTanh;
    c.layer_norm_eps = 1e-6f;
    return c;
}

// Random weights of the right shapes: matrices N(0, 1/fan_in), vectors: LayerNorm-like around 1 or small biases.
vm::ParamSource random_params() {
    auto counter = std::make_shared<std::uint64_t>(1);
    return {[](const std::string&) { return true; },
            [counter](const std::string& name, const vm::Shape& s) {
                const std::uint64_t seed = (*counter)++;
                if (s.size() >= 2) return random_tensor(s, seed, 1.f / std::sqrt(float(vm::shape_numel(s) / s[0])));
                vm::Tensor t = random_tensor(s, seed, 0.1f);
                if (name.find("norm") != std::string::npos && name.find("weight") != std::string::npos)
                    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] += 1.f;
                return t;
            }};
}

double layer_flops(double N, double C, double I) { return 2 * N * (4 * C * C + 2 * C * I) + 4 * N * N * C; }

// Rates of the final run of each benchmark: mean over iterations, and best iteration (robust to a shared, loaded
// machine, where other processes steal whole time slices).
struct Rate { double mean = 0, best = 0; };
Rate g_linear, g_attention, g_tower[2];
double g_ms_per_layer[2] = {0, 0};

// Runs the loop and returns the GFLOP/s of the final run; also sets them as counters.
template <class F>
Rate timed_loop(benchmark::State& st, double flops, F&& body) {
    double total = 0, best = 1e30;
    for (auto _ : st) {
        const auto t0 = std::chrono::steady_clock::now();
        body();
        const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        total += t;
        best = std::min(best, t);
    }
    const Rate r{flops * double(st.iterations()) / total / 1e9, flops / best / 1e9};
    st.counters["GFLOP/s"] = r.mean;
    st.counters["GFLOP/s_best"] = r.best;
    return r;
}

void BM_tower(benchmark::State& st, const TowerShape& s, int which) {
    const int L = bench_layers();
    const vm::VisionConfig cfg = config_of(s, L);
    const vm::VisionEncoder enc = vm::VisionEncoder::load(cfg, "", random_params());
    const vm::Tensor pixels = random_tensor({1, 3, s.image, s.image}, 99, 1.f);
    const double N = cfg.num_positions(), C = s.hidden, I = s.intermediate;
    const double patch = 2.0 * (N - (cfg.class_token() ? 1 : 0)) * C * 3 * s.patch * s.patch;
    const double flops = patch + L * layer_flops(N, C, I);
    g_tower[which] = timed_loop(st, flops, [&] {
        vm::Tensor h = enc.hidden_state(pixels, L);  // (N, C)
        benchmark::DoNotOptimize(h.data<float>());
    });
    g_ms_per_layer[which] = flops / (g_tower[which].best * 1e9) / L * 1e3;
    st.counters["tokens"] = N;
    st.counters["layers"] = L;
}

void BM_attention(benchmark::State& st) {
    const std::int64_t N = 729, C = 1152;
    const vm::Tensor qkv = random_tensor({N, 3 * C}, 5, 1.f);  // (N, 3C)
    vm::Tensor out = vm::Tensor::empty({N, C});
    g_attention = timed_loop(st, 4.0 * N * N * C, [&] {
        vm::attention_into(out, qkv.slice(1, 0, C), qkv.slice(1, C, 2 * C), qkv.slice(1, 2 * C, 3 * C), 16,
                           1.f / std::sqrt(72.f));
        benchmark::ClobberMemory();
    });
}

void BM_linear(benchmark::State& st) {
    const std::int64_t M = 729, K = 1152, N = 4304;
    const vm::Tensor x = random_tensor({M, K}, 6, 1.f), w = random_tensor({N, K}, 7, 0.03f),
                     b = random_tensor({N}, 8, 0.1f);
    vm::Tensor y = vm::Tensor::empty({M, N});
    g_linear = timed_loop(st, 2.0 * M * K * N, [&] {
        vm::linear_into(y, x, w, b);
        benchmark::ClobberMemory();
    });
}

}  // namespace

BENCHMARK(BM_linear)->Name("linear_729x1152x4304")->Unit(benchmark::kMillisecond)->MinTime(1.0)->UseRealTime();
BENCHMARK(BM_attention)->Name("attention_729x16x72")->Unit(benchmark::kMillisecond)->MinTime(1.0)->UseRealTime();
BENCHMARK_CAPTURE(BM_tower, siglip_so400m_384, kSiglip, 0)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();
BENCHMARK_CAPTURE(BM_tower, clip_vit_l_336, kClip, 1)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    std::printf("threads: %d, encoder layers per tower run: %d\n", vm::num_threads(), bench_layers());
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    if (g_linear.best <= 0) return 0;
    std::printf("\nrates: mean | best iteration, GFLOP/s\n");
    std::printf("baseline linear(): %.1f | %.1f GFLOP/s\n", g_linear.mean, g_linear.best);
    auto ratio = [](const Rate& r) {
        std::printf("%.1f | %.1f GFLOP/s = %.0f%% | %.0f%% of linear()", r.mean, r.best, 100 * r.mean / g_linear.mean,
                    100 * r.best / g_linear.best);
    };
    if (g_attention.best > 0) {
        std::printf("attention: ");
        ratio(g_attention);
        std::printf("\n");
    }
    const TowerShape* shapes[2] = {&kSiglip, &kClip};
    for (int i = 0; i < 2; ++i) {
        if (g_tower[i].best <= 0) continue;
        const TowerShape& s = *shapes[i];
        // A VLM runs the tower to the penultimate layer (SPEC §1.4): full_layers − 1 layers (best-iteration time).
        std::printf("%s: ", s.name);
        ratio(g_tower[i]);
        std::printf("; %.0f ms per layer, ~%.2f s to the penultimate layer (%d layers, extrapolated)\n",
                    g_ms_per_layer[i], g_ms_per_layer[i] * (s.full_layers - 1) / 1e3, s.full_layers - 1);
    }
    return 0;
}
