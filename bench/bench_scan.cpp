// Selective scan benchmarks: every variant over L x N at d_inner 1536, and the mamba-2.8b layer
// shape (L 600, E 5120, N 16) on 1 and 2 threads. Counters: time per (t, channel) element, per
// (t, channel, state) and per scan (= ms per layer for the 2.8b shape), items/s.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "vlmamba/ops/selective_scan.hpp"

namespace {

using namespace vlmamba;

// Inputs of one scan with realistic ranges; all options on (D, z, delta_bias, softplus, h out).
struct ScanInputs {
    std::vector<float> u, delta, A, Bm, Cm, D, z, bias, h, y;
    ScanArgs args{};

    ScanInputs(int L, int E, int N) {
        std::mt19937 g(42);
        auto fill = [&](std::vector<float>& v, std::size_t n, float lo, float hi) {
            std::uniform_real_distribution<float> d(lo, hi);
            v.resize(n);
            for (auto& x : v) x = d(g);
        };
        const std::size_t le = std::size_t(L) * E, ln = std::size_t(L) * N;
        fill(u, le, -2.f, 2.f);                    // (1, L, E)
        fill(delta, le, -6.f, 1.f);                // (1, L, E) pre-softplus
        fill(A, std::size_t(E) * N, -16.f, -1.f);  // (E, N)
        fill(Bm, ln, -1.f, 1.f);                   // (1, L, N)
        fill(Cm, ln, -1.f, 1.f);                   // (1, L, N)
        fill(D, E, -1.f, 1.f);                     // (E)
        fill(z, le, -3.f, 3.f);                    // (1, L, E)
        fill(bias, E, -1.f, 0.5f);                 // (E)
        h.assign(std::size_t(E) * N, 0.f);         // (1, E, N)
        y.assign(le, 0.f);                         // (1, L, E)
        args.batch = 1, args.length = L, args.d_inner = E, args.d_state = N;
        args.u = u.data(), args.delta = delta.data(), args.A = A.data();
        args.Bm = Bm.data(), args.Cm = Cm.data(), args.D = D.data(), args.z = z.data();
        args.delta_bias = bias.data(), args.delta_softplus = true;
        args.h = h.data(), args.y = y.data();
    }
};

// Inverted rate counters print as times: per (t, channel) element, per (t, channel, state), per scan.
void set_counters(benchmark::State& state, std::int64_t L, std::int64_t E, std::int64_t N) {
    const auto per = benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert;
    const double elems = double(L) * E;
    state.SetItemsProcessed(state.iterations() * std::int64_t(elems));
    state.counters["per_elem"] = benchmark::Counter(elems, per);
    state.counters["per_state"] = benchmark::Counter(elems * N, per);
    state.counters["per_scan"] = benchmark::Counter(1, per);
}

// args: L, N, threads; d_inner fixed by E
template <class V>
void BM_scan(benchmark::State& state, int E) {
    const int L = int(state.range(0)), N = int(state.range(1)), nt = int(state.range(2));
    ScanInputs in(L, E, N);
    for (auto _ : state) {
        selective_scan<V>(in.args, nt);
        benchmark::DoNotOptimize(in.y.data());
        benchmark::ClobberMemory();
    }
    set_counters(state, L, E, N);
}

void sweep_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"L", "N", "threads"});
    for (int L : {1, 64, 600, 4096})
        for (int N : {8, 16, 64}) b->Args({L, N, 1});
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}

void layer_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"L", "N", "threads"});
    for (int nt : {1, 2}) b->Args({600, 16, nt});
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}

// Decode: one step for d_inner 5120, N 16 (batch 1).
template <class V>
void BM_state_update(benchmark::State& state) {
    const int E = 5120, N = 16;
    ScanInputs in(1, E, N);
    StateUpdateArgs s{};
    s.batch = 1, s.d_inner = E, s.d_state = N;
    s.h = in.h.data(), s.x = in.u.data(), s.delta = in.delta.data(), s.A = in.A.data();
    s.Bm = in.Bm.data(), s.Cm = in.Cm.data(), s.D = in.D.data(), s.z = in.z.data();
    s.delta_bias = in.bias.data(), s.y = in.y.data();
    for (auto _ : state) {
        selective_state_update<V>(s, 1);
        benchmark::DoNotOptimize(in.y.data());
        benchmark::ClobberMemory();
    }
    set_counters(state, 1, E, N);
}

void BM_scan_ref(benchmark::State& s, int E) { BM_scan<ScanRef>(s, E); }
void BM_scan_states(benchmark::State& s, int E) { BM_scan<ScanStates>(s, E); }
void BM_scan_channels(benchmark::State& s, int E) { BM_scan<ScanChannels>(s, E); }

}  // namespace

// (a) every variant over L x N at d_inner 1536, one thread
BENCHMARK_CAPTURE(BM_scan_ref, E1536, 1536)->Apply(sweep_args);
BENCHMARK_CAPTURE(BM_scan_states, E1536, 1536)->Apply(sweep_args);
BENCHMARK_CAPTURE(BM_scan_channels, E1536, 1536)->Apply(sweep_args);

// (b) the mamba-2.8b layer shape, 1 and 2 threads
BENCHMARK_CAPTURE(BM_scan_ref, mamba2_8b_E5120, 5120)->Apply(layer_args);
BENCHMARK_CAPTURE(BM_scan_states, mamba2_8b_E5120, 5120)->Apply(layer_args);
BENCHMARK_CAPTURE(BM_scan_channels, mamba2_8b_E5120, 5120)->Apply(layer_args);

// (c) one decode step, mamba-2.8b width
BENCHMARK_TEMPLATE(BM_state_update, ScanRef)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_state_update, ScanChannels)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
