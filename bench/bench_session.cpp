// Batches through the session API on the bundled model (zoo/shapes-vlmamba): the vision tower over B images in one
// forward against B single forwards (images/s), and generate_batch of B questions against B single sessions
// (generated tokens/s). Each B = 8 benchmark has its B = 1 baseline in the same run. BM_Callers: the same 8 questions
// answered by 1 caller thread or by 4 caller threads sharing the model (the threads budget of core/parallel.hpp).
#include <benchmark/benchmark.h>

#include <filesystem>
#include <thread>

#include "vlmamba/session/batch.hpp"
#include "vlmamba/session/load.hpp"
#include "vlmamba/session/session.hpp"

namespace vm = vlmamba;
namespace fs = std::filesystem;

namespace {

const vm::Model& model() {
    static const vm::Model m = vm::Model::load(fs::path(VLMAMBA_ZOO_DIR) / "shapes-vlmamba");
    return m;
}

vm::Tensor pixels(int B) {  // (B, 3, S, S): the bundled example images, repeated
    std::vector<vm::Tensor> px;
    for (const char* f : {"count.png", "relation.png", "describe.png"})
        px.push_back(model().pixels(fs::path(VLMAMBA_ZOO_DIR) / "shapes-vlmamba" / "examples" / f));
    const std::int64_t S = px[0].size(2);
    vm::Tensor out = vm::Tensor::empty({B, 3, S, S});
    for (int b = 0; b < B; ++b) {
        vm::Tensor dst = out.select(0, b);
        vm::copy_into(dst, px[std::size_t(b) % px.size()].select(0, 0));
    }
    return out;
}

// The tower: B images in one forward (batched), or one forward per image (singles).
void BM_VisionTower(benchmark::State& st) {
    const int B = int(st.range(0));
    const bool batched = st.range(1) != 0;
    const auto& enc = model().vl()->vision_encoder();
    const vm::Tensor px = pixels(B);
    for (auto _ : st) {
        if (batched) {
            benchmark::DoNotOptimize(enc.features_batch(px));
        } else {
            for (int b = 0; b < B; ++b) benchmark::DoNotOptimize(enc.features(px.select(0, b)));
        }
    }
    st.counters["images/s"] = benchmark::Counter(double(B) * double(st.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_VisionTower)->Args({8, 0})->Args({8, 1})->ArgNames({"B", "batched"})->Unit(benchmark::kMillisecond);

// B questions about B images, 32 tokens each (past EOS): generate_batch, or B sessions one after another.
void BM_Generate(benchmark::State& st) {
    const int B = int(st.range(0));
    const bool batched = st.range(1) != 0;
    std::vector<vm::Request> reqs;
    const char* img[] = {"count.png", "relation.png", "describe.png"};
    for (int b = 0; b < B; ++b) {
        vm::Request r;
        r.prompt = "What shapes are there, from left to right?";
        r.images = {fs::path(VLMAMBA_ZOO_DIR) / "shapes-vlmamba" / "examples" / img[b % 3]};
        r.max_tokens = 32;
        r.ignore_eos = true;
        reqs.push_back(r);
    }
    for (auto _ : st) {
        if (batched) {
            benchmark::DoNotOptimize(vm::generate_batch(model(), reqs));
        } else {
            for (const auto& r : reqs) benchmark::DoNotOptimize(vm::Session(model()).generate(r));
        }
    }
    st.counters["tokens/s"] = benchmark::Counter(32.0 * B * double(st.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Generate)->Args({1, 1})->Args({8, 0})->Args({8, 1})->ArgNames({"B", "batched"})
    ->Unit(benchmark::kMillisecond);

// 8 single-question sessions, by 1 caller or split over 4 caller threads that share the model and the cores.
void BM_Callers(benchmark::State& st) {
    const int callers = int(st.range(0));
    std::vector<vm::Request> reqs(8);
    const char* img[] = {"count.png", "relation.png", "describe.png"};
    for (std::size_t i = 0; i < reqs.size(); ++i) {
        reqs[i].prompt = "What shapes are there, from left to right?";
        reqs[i].images = {fs::path(VLMAMBA_ZOO_DIR) / "shapes-vlmamba" / "examples" / img[i % 3]};
        reqs[i].max_tokens = 32;
        reqs[i].ignore_eos = true;
    }
    for (auto _ : st) {
        std::vector<std::thread> threads;
        for (int c = 0; c < callers; ++c)
            threads.emplace_back([&, c] {
                for (std::size_t i = std::size_t(c); i < reqs.size(); i += std::size_t(callers))
                    benchmark::DoNotOptimize(vm::Session(model()).generate(reqs[i]));
            });
        for (auto& t : threads) t.join();
    }
    st.counters["tokens/s"] = benchmark::Counter(32.0 * 8 * double(st.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Callers)->Arg(1)->Arg(4)->ArgNames({"callers"})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
