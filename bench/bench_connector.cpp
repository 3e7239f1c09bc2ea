// VSS-L2 connector forward at the paper's final shape: 729 tokens (27×27) of SigLIP width 1152 into Mamba-2.8B width
// 2560 (D_i 5120, N 16, dt_rank 160), BSM and CSM, random weights, 2 threads. Besides the forward, each iteration also
// runs the forward's GEMMs alone (the same linear() calls on the same shapes), so the counters give the ratio
// total / GEMMs; everything outside the GEMMs (conv, cross-scan, scans, merge, norms, GELU) is the excess.
// glibc is told to keep freed memory (no mmap, no trim), as a long-running process would: in a VM a fresh page can
// cost tens of µs on first touch, which would otherwise dominate the non-GEMM steps (and blur the GEMMs).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <chrono>
#include <map>
#include <random>
#include <string>

#include "vlmamba/models/connector.hpp"

namespace {

using namespace vlmamba;
using Clock = std::chrono::steady_clock;

constexpr int kGrid = 27, kVision = 1152, kLm = 2560, kThreads = 2;

Tensor random(Shape s, std::mt19937& g, float lo, float hi) {
    std::uniform_real_distribution<float> d(lo, hi);
    Tensor t = Tensor::empty(std::move(s));
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(g);
    return t;
}

// Weights with O(1) activations: uniform(±sqrt(3/fan_in)) linears, dt in [1e-3, 1e-1], A_log = log U(1, 16).
std::map<std::string, Tensor> make_weights(int K, std::int64_t E, std::int64_t N, std::int64_t R) {
    std::mt19937 g(1);
    std::map<std::string, Tensor> w;
    auto lin = [&](const std::string& n, std::int64_t out, std::int64_t in, bool bias) {
        const float a = std::sqrt(3.f / float(in));
        w[n + "weight"] = random({out, in}, g, -a, a);
        if (bias) w[n + "bias"] = random({out}, g, -0.1f, 0.1f);
    };
    const std::string p = "mm_projector.", v = p + "vss.";
    const std::int64_t C = kLm;
    lin(p + "linear1.", kLm, kVision, true);
    lin(p + "linear2.", kLm, kLm, true);
    lin(v + "in_proj.", 2 * E, C, false);
    lin(v + "out_proj.", C, E, false);
    w[v + "conv2d.weight"] = random({E, 1, 3, 3}, g, -0.5f, 0.5f);
    w[v + "conv2d.bias"] = random({E}, g, -0.1f, 0.1f);
    const float ax = std::sqrt(3.f / float(E)), ad = std::sqrt(3.f / float(R));
    w[v + "x_proj_weight"] = random({K, R + 2 * N, E}, g, -ax, ax);
    w[v + "dt_projs_weight"] = random({K, E, R}, g, -ad, ad);
    Tensor b = random({K, E}, g, std::log(1e-3f), std::log(1e-1f));
    for (std::int64_t i = 0; i < b.numel(); ++i) {
        const float dt = std::exp(b.data<float>()[i]);
        b.data<float>()[i] = dt + std::log(-std::expm1(-dt));  // softplus⁻¹(dt)
    }
    w[v + "dt_projs_bias"] = b;
    w[v + "A_logs"] = random({K * E, N}, g, 0.f, std::log(16.f));
    w[v + "Ds"] = Tensor::full({K * E}, 1.f);
    w[v + "out_norm.weight"] = Tensor::full({E}, 1.f);
    w[v + "out_norm.bias"] = Tensor::zeros({E});
    w[p + "norm.weight"] = Tensor::full({kLm}, 1.f);
    w[p + "norm.bias"] = Tensor::zeros({kLm});
    return w;
}

template <class Scan>
void BM_vss_l2_connector(benchmark::State& state) {
    set_num_threads(kThreads);
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    constexpr int K = Scan::K;
    ConnectorConfig cfg;
    cfg.type = ConnectorType::VssL2;
    cfg.scan = Scan::name;
    cfg.vision_width = kVision;
    cfg.lm_width = kLm;
    const std::int64_t L = kGrid * kGrid, C = kLm, E = 2 * C, N = cfg.d_state, R = (C + 15) / 16, Q = R + 2 * N;
    const auto w = make_weights(K, E, N, R);
    const ParamSource src{[&](const std::string& n) { return w.count(n) > 0; },
                          [&](const std::string& n, const Shape&) { return w.at(n); }};
    const auto conn = VssL2Connector<Scan>::load(cfg, "mm_projector.", src);
    std::mt19937 g(2);
    const Tensor v = random({L, kVision}, g, -1.f, 1.f);  // (729, 1152)

    // The forward's GEMM operands, laid out as the forward lays them out.
    const Tensor h = random({L, C}, g, -1.f, 1.f);          // (L, C)
    const Tensor xe = random({L, E}, g, -1.f, 1.f);         // (L, E)
    const Tensor x_dbl = random({K, L, Q}, g, -1.f, 1.f);   // (K, L, Q)
    Tensor dts = Tensor::empty({K, L, E});                  // (K, L, E)
    auto gemms = [&] {
        benchmark::DoNotOptimize(linear(v, conn.linear1_weight, conn.linear1_bias).raw());                // Linear1
        benchmark::DoNotOptimize(linear(h, conn.vss.in_proj_weight).raw());                               // in_proj
        benchmark::DoNotOptimize(linear(xe, conn.vss.x_proj_weight.reshape({K * Q, E})).raw());           // x_proj
        for (int k = 0; k < K; ++k) {                                                                     // dt_projs
            Tensor dk = dts.select(0, k);
            linear_into(dk, x_dbl.select(0, k).slice(1, 0, R), conn.vss.dt_projs_weight.select(0, k));
        }
        benchmark::DoNotOptimize(linear(xe, conn.vss.out_proj_weight).raw());                             // out_proj
        benchmark::DoNotOptimize(linear(h, conn.linear2_weight, conn.linear2_bias).raw());                // Linear2
    };

    const double gemm_flop = 2.0 * L * (double(kVision) * C + C * 2.0 * E + double(E) * K * Q + double(K) * R * E +
                                        double(E) * C + double(C) * C);
    const double other_flop = double(L) * E * (2.0 * 9 + K * 9.0 * N);  // conv, scans (SPEC: 9·E·N per step)
    {
        Tensor warm = conn.forward(v, kGrid, kGrid);  // touches the workspace once
        gemms();
    }
    double t_total = 0, t_gemm = 0;
    for (auto _ : state) {
        const auto t0 = Clock::now();
        Tensor out = conn.forward(v, kGrid, kGrid);  // (729, 2560)
        benchmark::DoNotOptimize(out.raw());
        const auto t1 = Clock::now();
        gemms();
        const auto t2 = Clock::now();
        const double a = std::chrono::duration<double>(t1 - t0).count();
        t_total += a;
        t_gemm += std::chrono::duration<double>(t2 - t1).count();
        state.SetIterationTime(a);
    }
    const double n = double(state.iterations());
    state.counters["ms"] = 1e3 * t_total / n;
    state.counters["gemm_ms"] = 1e3 * t_gemm / n;
    state.counters["total/gemm"] = t_total / t_gemm;
    state.counters["GFLOP/s"] = (gemm_flop + other_flop) * n / t_total * 1e-9;
    state.counters["gemm_GFLOP/s"] = gemm_flop * n / t_gemm * 1e-9;
    state.counters["GFLOP"] = (gemm_flop + other_flop) * 1e-9;
}

BENCHMARK_TEMPLATE(BM_vss_l2_connector, BidirectionalScan)->Name("vss_l2/bsm/729x1152->2560")
    ->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);
BENCHMARK_TEMPLATE(BM_vss_l2_connector, CrossScan)->Name("vss_l2/csm/729x1152->2560")
    ->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);

}  // namespace

BENCHMARK_MAIN();
