// Tensor-core benchmarks, each against a baseline in the same run:
//   fused chain y*silu(z) + x*D (GB/s) vs a plain copy; linear() vs Eigen called directly vs OpenBLAS sgemm (GFLOP/s).
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>

#include "vlmamba/vlmamba.hpp"
#ifdef VLMAMBA_BENCH_CBLAS
#include <cblas.h>
#endif

namespace vm = vlmamba;

static vm::Tensor random_tensor(vm::Shape s, unsigned seed) {
    std::mt19937 g(seed);
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    vm::Tensor t = vm::Tensor::empty(std::move(s));
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(g);
    return t;
}

constexpr std::int64_t kRows = 600, kCols = 5120;  // a mamba-2.8b activation (L, d_inner)

static void BM_copy(benchmark::State& st) {
    vm::Tensor x = random_tensor({kRows, kCols}, 1), y = vm::Tensor::empty({kRows, kCols});
    for (auto _ : st) {
        std::memcpy(y.raw(), x.raw(), x.nbytes());
        benchmark::ClobberMemory();
    }
    st.counters["GB/s"] = benchmark::Counter(2.0 * x.nbytes() * st.iterations(), benchmark::Counter::kIsRate);
}

static void BM_fused_gate(benchmark::State& st) {
    vm::Tensor x = random_tensor({kRows, kCols}, 1), y = random_tensor({kRows, kCols}, 2),
               z = random_tensor({kRows, kCols}, 3), D = random_tensor({kCols}, 4);
    vm::Tensor out = vm::Tensor::empty({kRows, kCols});
    for (auto _ : st) {
        vm::assign(out, y * vm::silu(z) + x * D);
        benchmark::ClobberMemory();
    }
    // Bytes moved: three inputs read, one output written (D stays in cache).
    st.counters["GB/s"] = benchmark::Counter(4.0 * out.nbytes() * st.iterations(), benchmark::Counter::kIsRate);
}

constexpr std::int64_t M = 600, K = 2560, N = 10240;  // (600 x 2560)·(2560 x 10240): mamba-2.8b in_proj at L 600
constexpr double kFlop = 2.0 * M * K * N;

static void BM_linear_vlmamba(benchmark::State& st) {
    vm::Tensor x = random_tensor({M, K}, 5), w = random_tensor({N, K}, 6), y = vm::Tensor::empty({M, N});
    for (auto _ : st) vm::linear_into(y, x, w);
    st.counters["GFLOP/s"] = benchmark::Counter(kFlop * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}

static void BM_linear_eigen_direct(benchmark::State& st) {
    using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Mat x = Mat::Random(M, K), w = Mat::Random(N, K), y(M, N);
    for (auto _ : st) y.noalias() = x * w.transpose();
    st.counters["GFLOP/s"] = benchmark::Counter(kFlop * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}

#ifdef VLMAMBA_BENCH_CBLAS
static void BM_linear_openblas(benchmark::State& st) {
    vm::Tensor x = random_tensor({M, K}, 5), w = random_tensor({N, K}, 6), y = vm::Tensor::empty({M, N});
    for (auto _ : st)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.f, x.data<float>(), K, w.data<float>(), K, 0.f,
                    y.data<float>(), N);
    st.counters["GFLOP/s"] = benchmark::Counter(kFlop * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_linear_openblas)->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

BENCHMARK(BM_copy)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_fused_gate)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_linear_eigen_direct)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_linear_vlmamba)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
