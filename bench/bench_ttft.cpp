// Time to first token on the CPU for the paper's final shape (bench/paper_shape.hpp: SigLIP-SO400M/14-384 tower in
// f32, VSS-L2/BSM connector in f32, mamba-2.8b-shaped LM with bf16 matrices, random weights): from the pixels of one
// image to the token sampled (greedy) from the prefill's logits after its 729 rows and a 32-token question, and the
// first recurrent step after it. Counters: each phase in ms. The model is built once (about 7.5 GB); the full shape
// by default, VLMAMBA_TTFT_LM_LAYERS / VLMAMBA_TTFT_TOWER_LAYERS for a smaller one (each layer costs the same).
//   OMP_NUM_THREADS=2 build/release/bench/bench_ttft
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>

#include "paper_shape.hpp"

namespace {

int env_int(const char* name, int fallback) {
    const char* e = std::getenv(name);
    return e ? std::max(1, std::atoi(e)) : fallback;
}

struct PaperModel {
    vlmamba::VisionEncoder tower;
    bench::VssL2Bsm connector;
    vlmamba::MambaLm lm;
    vlmamba::Tensor pixels;
    std::vector<std::int32_t> question;
};

const PaperModel& model() {
    static const std::unique_ptr<PaperModel> m = [] {
        std::mt19937 g(1);
        bench::RandomPool r(g);
        auto p = std::make_unique<PaperModel>();
        p->tower = bench::siglip_so400m(r, env_int("VLMAMBA_TTFT_TOWER_LAYERS", 27));
        p->connector = bench::vss_l2_bsm(r, p->tower.cfg.hidden_size, 2560);
        p->lm = bench::mamba_2p8b(r, env_int("VLMAMBA_TTFT_LM_LAYERS", 64), g);
        p->pixels = r.f32({1, 3, 384, 384}, 30.0f);
        std::uniform_int_distribution<int> tok(0, p->lm.cfg.vocab_size - 1);
        for (int i = 0; i < 32; ++i) p->question.push_back(tok(g));
        return p;
    }();
    return *m;
}

void BM_TimeToFirstToken(benchmark::State& state) {
    const PaperModel& m = model();
    bench::Phases sum;
    for (auto _ : state) {
        const bench::Phases p = bench::time_to_first_token(m.tower, m.connector, m.lm, m.pixels, m.question);
        sum.tower += p.tower, sum.connector += p.connector, sum.prefill += p.prefill, sum.step += p.step;
    }
    const double n = double(state.iterations());
    state.counters["tower_ms"] = sum.tower / n;
    state.counters["connector_ms"] = sum.connector / n;
    state.counters["prefill_ms"] = sum.prefill / n;
    state.counters["first_token_ms"] = sum.first_token() / n;
    state.counters["first_step_ms"] = sum.step / n;
    state.counters["lm_layers"] = m.lm.cfg.n_layer;
    state.counters["tower_layers"] = m.tower.cfg.num_hidden_layers;
}
BENCHMARK(BM_TimeToFirstToken)->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
