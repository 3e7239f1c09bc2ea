// Decode tokens/s for a random Mamba LM shaped like mamba-130m, with f32, bf16 or f16 matrices, against the
// weight-read floor: a STREAM-like read of the same weight bytes measured in the same run. Also prompt tokens/s at
// L = 16 and 600. The first argument of each benchmark is the matrices' dtype: 0 f32, 1 bf16, 2 f16.
#include <benchmark/benchmark.h>

#include <random>

#include "vlmamba/models/mamba_lm.hpp"

namespace vm = vlmamba;

static vm::MambaLm random_lm(vm::DType dtype) {
    vm::MambaConfig c;
    c.d_model = 768;
    c.n_layer = 24;
    c.vocab_size = 50280;
    c.d_inner = 1536;
    c.dt_rank = 48;
    std::mt19937 g(7);
    vm::ParamSource src{[](const std::string&) { return false; },
                        [&](const std::string& name, const vm::Shape& s) {
                            vm::Tensor t = vm::Tensor::empty(s);
                            const float scale = name.ends_with("A_log") ? 1.f : 0.02f;
                            std::uniform_real_distribution<float> d(-scale, scale);
                            for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(g);
                            const bool matrix = s.size() == 2 && !name.ends_with("A_log");
                            return matrix ? t.to(dtype) : t;
                        }};
    return vm::MambaLm::load(c, src);
}

static vm::DType dtype_arg(std::int64_t a) {
    return a == 1 ? vm::DType::BF16 : a == 2 ? vm::DType::F16 : vm::DType::F32;
}

static std::size_t weight_bytes(const vm::MambaLm& lm) {
    std::size_t n = lm.lm_head.nbytes() + lm.norm_f_weight.nbytes();
    for (const auto& l : lm.layers) {
        const auto& m = l.mixer;
        n += l.norm_weight.nbytes() + m.in_proj_weight.nbytes() + m.conv1d_weight.nbytes() + m.conv1d_bias.nbytes() +
             m.x_proj_weight.nbytes() + m.dt_proj_weight.nbytes() + m.dt_proj_bias.nbytes() + m.A.nbytes() +
             m.D.nbytes() + m.out_proj_weight.nbytes();
    }
    return n;
}

static void BM_weight_read_floor(benchmark::State& st) {
    const vm::MambaLm lm = random_lm(dtype_arg(st.range(0)));
    std::vector<const vm::Tensor*> ts{&lm.lm_head};
    for (const auto& l : lm.layers)
        for (const vm::Tensor* t : {&l.mixer.in_proj_weight, &l.mixer.x_proj_weight, &l.mixer.dt_proj_weight,
                                    &l.mixer.out_proj_weight})
            ts.push_back(t);
    const std::size_t bytes = weight_bytes(lm);
    for (auto _ : st) {
        float total = 0;
        for (const vm::Tensor* t : ts) {
            // Vectorised, four independent accumulators per thread: bound by memory, not by the add latency.
            using B = xsimd::batch<float>;
            constexpr std::int64_t W = B::size;
            const std::int64_t n = std::int64_t(t->nbytes() / 4) / (4 * W) * (4 * W);
            const float* p = reinterpret_cast<const float*>(t->raw());
            float acc = 0;
#pragma omp parallel reduction(+ : acc)
            {
                B a0(0.f), a1(0.f), a2(0.f), a3(0.f);
#pragma omp for schedule(static)
                for (std::int64_t i = 0; i < n; i += 4 * W) {
                    a0 += B::load_unaligned(p + i);
                    a1 += B::load_unaligned(p + i + W);
                    a2 += B::load_unaligned(p + i + 2 * W);
                    a3 += B::load_unaligned(p + i + 3 * W);
                }
                acc += xsimd::hadd(a0 + a1 + a2 + a3);
            }
            total += acc;
        }
        benchmark::DoNotOptimize(total);
    }
    st.counters["GB/s"] = benchmark::Counter(double(bytes) * st.iterations(), benchmark::Counter::kIsRate);
    st.counters["floor_tok/s"] = benchmark::Counter(double(st.iterations()), benchmark::Counter::kIsRate);
}

static void BM_decode(benchmark::State& st) {
    const vm::MambaLm lm = random_lm(dtype_arg(st.range(0)));
    const int batch = int(st.range(1));
    vm::MambaState s = lm.new_state(batch);
    std::vector<std::int32_t> tok(batch, 17);
    for (auto _ : st) benchmark::DoNotOptimize(lm.step(tok, s));
    st.counters["tok/s"] = benchmark::Counter(double(batch) * st.iterations(), benchmark::Counter::kIsRate);
    st.counters["GB/s"] = benchmark::Counter(double(weight_bytes(lm)) * st.iterations(), benchmark::Counter::kIsRate);
}

static void BM_prefill(benchmark::State& st) {
    const vm::MambaLm lm = random_lm(dtype_arg(st.range(0)));
    std::vector<std::int32_t> ids(std::size_t(st.range(1)));
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = std::int32_t(i * 37 % 50000);
    for (auto _ : st) benchmark::DoNotOptimize(lm.forward_hidden(lm.embed(ids)));
    st.counters["tok/s"] = benchmark::Counter(double(ids.size()) * st.iterations(), benchmark::Counter::kIsRate);
}

// Args: {dtype, batch} or {dtype, prompt length}
BENCHMARK(BM_weight_read_floor)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_decode)->ArgsProduct({{0, 1, 2}, {1, 4, 16}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_prefill)->ArgsProduct({{0, 1, 2}, {16, 600}})->Unit(benchmark::kMillisecond)->UseRealTime()
    ->Iterations(2);
BENCHMARK_MAIN();
