// GPU benchmark table: the selective scan at mamba-2.8b layer shapes (µs, effective GB/s) against a device copy
// measured in the same run, one layer's fused decode kernels (conv update + state update) at B 1/8/64, and
// whole-model decode tokens/s of a random mamba-2.8b-shaped MambaLm moved to the GPU with bf16 weights against the
// weight-read floor (a device read of the same number of bytes, measured in the same run).
// Usage: bench_cuda [--layers N]   (the decode model's layer count; 64 by default)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "../../cuda/tuning.hpp"
#include "vlmamba/cuda/api.hpp"
#include "vlmamba/cuda/decode.hpp"
#include "vlmamba/cuda/device_buffer.hpp"
#include "../paper_shape.hpp"

namespace cu = vlmamba::cuda;
using vlmamba::DType;

namespace {

void* dev_random(std::size_t n, DType t, float lo, float hi, std::mt19937& g) {
    std::uniform_real_distribution<float> d(lo, hi);
    void* p = cu::malloc(n * vlmamba::dtype_size(t));
    if (t == DType::F32) {
        std::vector<float> h(n);
        for (auto& x : h) x = d(g);
        cu::copy_h2d(p, h.data(), n * 4);
    } else {
        std::vector<std::uint16_t> h(n);
        for (auto& x : h) x = vlmamba::f32_to_bf16(d(g));
        cu::copy_h2d(p, h.data(), n * 2);
    }
    return p;
}

}  // namespace

vlmamba::MambaLm bench_decode(int n_layer, std::mt19937& g);
vlmamba::VisionEncoder bench_vision(std::mt19937& g, int layers);
void bench_ttft(const vlmamba::MambaLm& lm, const vlmamba::VisionEncoder& tower, std::mt19937& g);

int main(int argc, char** argv) {
    int n_layer = 64;
    for (int i = 1; i < argc; ++i)
        if (std::strcmp(argv[i], "--layers") == 0 && i + 1 < argc) n_layer = std::atoi(argv[++i]);
    if (!cu::available()) {
        std::printf("no CUDA device: nothing to measure\n");
        return 0;
    }
    std::printf("device: %s (%d SMs)\n", cu::device_name(), cu::sm_count());
    std::mt19937 g(1);

    // device copy bandwidth, bytes read + written
    const std::size_t cb = std::size_t(1) << 30;
    void* src = cu::malloc(cb);
    void* dst = cu::malloc(cb);
    cu::memset0(src, cb);
    const double copy_us = cu::time_us([&] { cu::copy_d2d(dst, src, cb); }, 10);
    const double copy_gbs = 2.0 * double(cb) / copy_us * 1e-3;
    std::printf("device copy: %.1f GB/s (read + write)\n\n", copy_gbs);
    cu::free(src);
    cu::free(dst);

    // The scan: each timed call reads another of `sets` input sets (together over 128 MB, past the 50 MB L2).
    std::printf("%-5s %-4s %-6s %-6s %-4s %-7s %10s %10s %8s\n", "io", "B", "L", "E", "N", "kernel", "us", "GB/s",
                "of copy");
    struct Shape { int B, L, E, N; };
    for (DType io : {DType::BF16, DType::F32}) {
        for (Shape s : {Shape{1, 600, 5120, 16}, Shape{1, 2048, 5120, 16}, Shape{1, 4096, 5120, 16},
                        Shape{8, 600, 5120, 16}}) {
            const std::size_t ne = std::size_t(s.B) * s.L * s.E, nb = std::size_t(s.B) * s.L * s.N;
            const double set_bytes = double(ne) * 4 * vlmamba::dtype_size(io);
            const int sets = int(std::min(8.0, std::max(1.0, std::ceil(128e6 / set_bytes))));
            std::vector<vlmamba::ScanArgs> args;
            std::vector<void*> bufs;
            void* A = dev_random(std::size_t(s.E) * s.N, DType::F32, -2, -0.05f, g);
            void* D = dev_random(s.E, DType::F32, -1, 1, g);
            void* bias = dev_random(s.E, DType::F32, -1, 0.5f, g);
            void* h = cu::malloc(std::size_t(s.B) * s.E * s.N * 4);
            for (int k = 0; k < sets; ++k) {
                void* u = dev_random(ne, io, -1, 1, g);
                void* dl = dev_random(ne, io, -3, 1, g);
                void* z = dev_random(ne, io, -1, 1, g);
                void* Bm = dev_random(nb, io, -1, 1, g);
                void* Cm = dev_random(nb, io, -1, 1, g);
                void* y = cu::malloc(ne * vlmamba::dtype_size(io));
                vlmamba::ScanArgs a{s.B, s.L, s.E, s.N, (const float*)u, (const float*)dl, (const float*)A,
                                    (const float*)Bm, (const float*)Cm};
                a.D = (const float*)D;
                a.z = (const float*)z;
                a.delta_bias = (const float*)bias;
                a.h = (float*)h;
                a.y = (float*)y;
                args.push_back(a);
                for (void* p : {u, dl, z, Bm, Cm, y}) bufs.push_back(p);
            }
            // bytes that must move: u, delta, z in, y out, B and C in, state out
            const double bytes = double(ne) * 4 * vlmamba::dtype_size(io) + double(nb) * 2 * vlmamba::dtype_size(io) +
                                 double(s.B) * s.E * s.N * 4;
            const bool variants = s.L == 600;  // every states-per-thread choice at L 600 (B 1 and 8)
            for (int spt : variants ? std::vector<int>{0, 1, 2, 4} : std::vector<int>{0}) {
                cu::set_scan_states_per_thread(spt);
                int k = 0;
                const double us = cu::time_us([&] { cu::selective_scan(args[std::size_t(k++ % sets)], io); }, 60);
                const double gbs = bytes / us * 1e-3;
                char name[16];
                std::snprintf(name, sizeof name, spt ? "spt %d" : "auto", spt);
                std::printf("%-5s %-4d %-6d %-6d %-4d %-7s %10.1f %10.1f %7.0f%%\n", io == DType::F32 ? "f32" : "bf16",
                            s.B, s.L, s.E, s.N, name, us, gbs, 100.0 * gbs / copy_gbs);
            }
            cu::set_scan_states_per_thread(0);
            for (void* p : bufs) cu::free(p);
            for (void* p : {A, D, bias, h}) cu::free(p);
        }
    }

    // decode kernels of one mamba-2.8b layer (E 5120, N 16, K 4): conv update + fused state update
    std::printf("\n%-4s %12s\n", "B", "decode us/layer (conv + state kernels)");
    for (int B : {1, 8, 64}) {
        const int E = 5120, N = 16, K = 4;
        float* st = (float*)dev_random(std::size_t(B) * E * K, DType::F32, -1, 1, g);
        float* x = (float*)dev_random(std::size_t(B) * 2 * E, DType::F32, -1, 1, g);
        float* w = (float*)dev_random(std::size_t(E) * K, DType::F32, -1, 1, g);
        float* xc = (float*)cu::malloc(std::size_t(B) * E * 4);
        float* dl = (float*)dev_random(std::size_t(B) * E, DType::F32, -3, 1, g);
        float* A = (float*)dev_random(std::size_t(E) * N, DType::F32, -2, -0.05f, g);
        float* bc = (float*)dev_random(std::size_t(B) * 2 * N, DType::F32, -1, 1, g);
        float* h = (float*)dev_random(std::size_t(B) * E * N, DType::F32, -1, 1, g);
        float* y = (float*)cu::malloc(std::size_t(B) * E * 4);
        cu::Stream s = cu::stream_create();
        auto step = [&] {
            cu::causal_conv1d_update({B, E, K, st, x, w, nullptr, true, xc, 2 * E}, s);
            vlmamba::StateUpdateArgs a{B, E, N, h, xc, dl, A, bc, bc + N};
            a.z = x + E;
            a.ld_z = 2 * E;
            a.ld_bc = 2 * N;
            a.y = y;
            cu::selective_state_update(a, s);
        };
        cu::Graph gr = cu::graph_capture(s, [&] { for (int i = 0; i < 64; ++i) step(); });
        const double us = cu::time_us([&] { cu::graph_launch(gr, s); }, 20, 3, s) / 64.0;
        std::printf("%-4d %12.2f\n", B, us);
        cu::graph_destroy(gr);
        cu::stream_destroy(s);
        for (void* p : {(void*)st, (void*)x, (void*)w, (void*)xc, (void*)dl, (void*)A, (void*)bc, (void*)h, (void*)y})
            cu::free(p);
    }

    // bf16 GEMV-shaped products of a mamba-2.8b layer at B 1 (in_proj, x_proj, dt_proj, out_proj): weight-read bound
    std::printf("\n%-4s %14s %14s %14s %14s\n", "B", "layer GEMMs us", "weight GB/s", "gemv us", "gemv GB/s");
    for (int M : {1, 8, 64}) {
        const int d = 2560, E = 5120, R = 160, N = 16;
        struct G { int n, k; };
        const G gs[] = {{2 * E, d}, {R + 2 * N, E}, {E, R}, {d, E}};
        std::vector<void*> ws, xs, ys;
        double wbytes = 0;
        for (auto q : gs) {
            ws.push_back(dev_random(std::size_t(q.n) * q.k, DType::BF16, -1, 1, g));
            xs.push_back(dev_random(std::size_t(M) * q.k, DType::F32, -1, 1, g));  // f32: room for bf16 or f32
            ys.push_back(cu::malloc(std::size_t(M) * q.n * 4));
            wbytes += double(q.n) * q.k * 2;
        }
        const double us = cu::time_us([&] {
            for (int i = 0; i < 4; ++i) cu::gemm({M, gs[i].n, gs[i].k, xs[i], ws[i], ys[i], DType::BF16, DType::F32});
        }, 50);
        // the same four products through the decode gemv (f32 activations, bf16 weights; m <= 8)
        double gus = 0.0;
        if (M <= 8)
            gus = cu::time_us([&] {
                for (int i = 0; i < 4; ++i)
                    cu::gemv({M, gs[i].n, gs[i].k, (const float*)xs[i], ws[i], DType::BF16, (float*)ys[i]});
            }, 50);
        std::printf("%-4d %14.1f %14.1f %14.1f %14.1f\n", M, us, wbytes / us * 1e-3, gus,
                    gus > 0 ? wbytes / gus * 1e-3 : 0.0);
        for (auto v : {ws, xs, ys})
            for (void* p : v) cu::free(p);
    }
    const vlmamba::MambaLm lm = bench_decode(n_layer, g);
    const vlmamba::VisionEncoder tower = bench_vision(g, 27);
    bench_ttft(lm, tower, g);
    return 0;
}

// A random SigLIP-SO400M/14-384-shaped tower (C 1152, I 4304, 16 heads, 729 tokens) on the GPU: time to the
// penultimate layer (the features) in f32 and tf32, GFLOP/s against one large cuBLAS product in the same mode.
vlmamba::VisionEncoder bench_vision(std::mt19937& g, int layers) {
    using vlmamba::Tensor;
    bench::RandomPool r(g);
    const vlmamba::VisionEncoder e = bench::siglip_so400m(r, layers);
    const auto& c = e.cfg;
    const std::int64_t C = c.hidden_size, I = c.intermediate_size, N = c.num_positions();
    const Tensor px = r.f32({1, 3, 384, 384}, 30.0f);
    const int upto = c.feature_index();
    const double flop = double(upto) * (2.0 * N * (4.0 * C * C + 2.0 * C * I) + 4.0 * double(N) * N * C);
    std::printf("\nvision tower, random SigLIP-SO400M/14-384 shape, %d layers to the features: %.0f GFLOP\n", upto,
                flop * 1e-9);
    std::printf("%-5s %10s %10s %16s %10s\n", "mode", "ms", "GFLOP/s", "GEMM GFLOP/s", "of GEMM");
    const vlmamba::VisionEncoder v = e.to(vlmamba::Device::Cuda);
    for (bool tf32 : {false, true}) {
        vlmamba::set_cuda_tf32(tf32);
        v.features(px).to(vlmamba::Device::Cpu);  // warm-up (memory pool, cuBLAS); the copy waits for the GPU
        const int reps = 5;
        const auto t0 = std::chrono::steady_clock::now();
        for (int r = 0; r < reps; ++r) v.features(px).to(vlmamba::Device::Cpu);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
        // the ceiling: one (N, I) x (I, C)-sized product in the same mode, timed alone
        const std::size_t m = 4096, n = 4096, k = 4096;
        void* A = dev_random(m * k, DType::F32, -1, 1, g);
        void* B = dev_random(n * k, DType::F32, -1, 1, g);
        void* Cc = cu::malloc(m * n * 4);
        const double gus = cu::time_us([&] { cu::gemm({int(m), int(n), int(k), A, B, Cc, DType::F32, DType::F32, tf32}); }, 10);
        const double gemm_gflops = 2.0 * double(m) * n * k / gus * 1e-3;
        for (void* p : {A, B, Cc}) cu::free(p);
        std::printf("%-5s %10.2f %10.0f %16.0f %9.0f%%\n", tf32 ? "tf32" : "f32", s * 1e3, flop / s * 1e-9, gemm_gflops,
                    100.0 * flop / s * 1e-9 / gemm_gflops);
    }
    vlmamba::set_cuda_tf32(false);
    return v;
}

// Decode of a random mamba-2.8b-shaped model (d_model 2560, d_inner 5120, N 16, dt_rank 160, vocab 50280, tied
// head) with bf16 weights: tokens/s at B 1, 8, 64 through MambaLm::step_greedy on the GPU (the fused step: graph
// replay, host syncs and the token/argmax copies included), against the read floor of the weights one step reads.
vlmamba::MambaLm bench_decode(int n_layer, std::mt19937& g) {
    using vlmamba::Tensor;
    bench::RandomPool r(g);
    const vlmamba::MambaLm lm = bench::mamba_2p8b(r, n_layer, g).to(vlmamba::Device::Cuda, DType::BF16);
    const vlmamba::MambaConfig& c = lm.cfg;

    // the floor: one device read of as many bytes as a step reads
    const std::size_t wbytes = (lm.step_weight_bytes() + 15) / 16 * 16;
    double floor_us = 0.0;
    {
        vlmamba::DeviceBuffer probe(wbytes), sink(4);
        cu::memset0(probe.get(), wbytes);
        floor_us = cu::time_us([&] { cu::read_probe(probe.get(), wbytes, sink.as<std::uint32_t>()); }, 10);
    }
    std::printf("\nwhole-model decode, random mamba-2.8b shape, bf16 weights, %d layers: %.2f GB read per step\n",
                n_layer, double(wbytes) * 1e-9);
    std::printf("device read of the same bytes: %.1f us (%.0f GB/s) -> floor %.0f steps/s\n", floor_us,
                double(wbytes) / floor_us * 1e-3, 1e6 / floor_us);
    std::uniform_int_distribution<int> tok(0, c.vocab_size - 1);
    std::printf("%-4s %-8s %-5s %12s %12s %14s %10s\n", "B", "step", "pdl", "ms/step", "tokens/s", "floor tok/s",
                "of floor");
    struct Run { int B; bool fused, pdl; };
    // (the fused step uses PDL except for 2 <= B <= 8: cuda/mamba_step.cu)
    for (Run r : {Run{1, true, true}, Run{1, true, false}, Run{1, false, true}, Run{8, true, false},
                  Run{64, true, true}, Run{64, true, false}}) try {
        const int B = r.B;
        cu::set_programmatic_launch(r.pdl);  // kernels start while their predecessor finishes
        vlmamba::MambaState st = lm.new_state(B);
        std::vector<std::int32_t> ids(static_cast<std::size_t>(B), 0);
        for (auto& x : ids) x = tok(g);
        auto one = [&] {
            if (r.fused) ids = lm.step_greedy(ids, st);
            else lm.step_embeds(lm.embed(ids), st).to(vlmamba::Device::Cpu);  // op by op, for comparison
        };
        for (int i = 0; i < 3; ++i) one();  // eager step + capture, then replays
        const int steps = B == 64 ? 20 : 40;
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < steps; ++i) one();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
        const double floor_tps = B * 1e6 / floor_us;
        std::printf("%-4d %-8s %-5s %12.3f %12.0f %14.0f %9.0f%%\n", B, r.fused ? "fused" : "ops",
                    r.pdl ? "on" : "off", s * 1e3, B / s, floor_tps, 100.0 * (B / s) / floor_tps);
    } catch (const std::exception& e) {
        std::printf("%-4d failed: %s\n", r.B, e.what());
    }
    cu::set_programmatic_launch(true);
    // whole-model prefill of 600 tokens (cuBLAS bf16 products + the f32 scan), for reference
    {
        vlmamba::MambaState st = lm.new_state(1);
        std::vector<std::int32_t> ids(600);
        for (auto& x : ids) x = tok(g);
        auto prefill = [&] {
            const Tensor h = lm.forward_hidden(lm.embed(ids), &st, 0);  // (L, D)
            lm.logits(h.slice(0, h.size(0) - 1, h.size(0))).to(vlmamba::Device::Cpu);
        };
        prefill();
        const int reps = 5;
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; ++i) prefill();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
        std::printf("prefill L 600 (B 1, all layers, last-position logits): %.2f ms\n", s * 1e3);
    }
    return lm;
}

// Time to first token of the paper's final shape: SigLIP-SO400M/14-384 tower (tf32) -> VSS-L2/BSM connector (f32,
// d 2560) -> the bf16 mamba-2.8b-shaped LM above, all on the GPU, from pixels to the token sampled (greedy) from the
// prefill's logits after 729 image rows and a 32-token question; then the first recurrent step. Each phase ends with
// the device idle (a small copy to the host), so the phases add up to the whole.
void bench_ttft(const vlmamba::MambaLm& lm, const vlmamba::VisionEncoder& tower, std::mt19937& g) {
    bench::RandomPool r(g);
    const bench::VssL2Bsm conn = bench::vss_l2_bsm(r, tower.cfg.hidden_size, lm.cfg.d_model).to(vlmamba::Device::Cuda);
    const vlmamba::Tensor px = r.f32({1, 3, tower.cfg.image_size, tower.cfg.image_size}, 30.0f);
    const int side = tower.cfg.image_size / tower.cfg.patch_size;
    std::vector<std::int32_t> question(32);
    std::uniform_int_distribution<int> tok(0, lm.cfg.vocab_size - 1);
    for (auto& x : question) x = tok(g);
    bench::time_to_first_token(tower, conn, lm, px, question, true);  // warm-up: memory pool, cuBLAS, the graph
    const int reps = 5;
    bench::Phases sum;
    for (int i = 0; i < reps; ++i) {
        const bench::Phases p = bench::time_to_first_token(tower, conn, lm, px, question, /*tf32_tower=*/true);
        sum.tower += p.tower / reps, sum.connector += p.connector / reps, sum.prefill += p.prefill / reps;
        sum.step += p.step / reps;
    }
    std::printf("\ntime to first token, SigLIP-SO400M/14-384 (tf32) + VSS-L2/BSM (f32) + mamba-2.8b shape (bf16), "
                "%d image rows + 32 question tokens, mean of %d:\n", side * side, reps);
    std::printf("tower %.2f ms, connector %.2f ms, prefill %.2f ms -> first token %.2f ms; first step %.2f ms\n",
                sum.tower, sum.connector, sum.prefill, sum.first_token(), sum.step);
}
