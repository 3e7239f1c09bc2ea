// GPU benchmark table: the selective scan at mamba-2.8b layer shapes (µs, effective GB/s) against a device copy
// measured in the same run, and one layer's fused decode kernels (conv update + state update) at B 1/8/64.
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "vlmamba/cuda/api.hpp"

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

int main() {
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

    std::printf("%-5s %-4s %-6s %-6s %-4s %10s %10s %8s\n", "io", "B", "L", "E", "N", "us", "GB/s", "of copy");
    struct Shape { int B, L, E, N; };
    for (DType io : {DType::BF16, DType::F32}) {
        for (Shape s : {Shape{1, 600, 5120, 16}, Shape{1, 2048, 5120, 16}, Shape{1, 4096, 5120, 16},
                        Shape{8, 600, 5120, 16}}) {
            const std::size_t ne = std::size_t(s.B) * s.L * s.E, nb = std::size_t(s.B) * s.L * s.N;
            void* u = dev_random(ne, io, -1, 1, g);
            void* dl = dev_random(ne, io, -3, 1, g);
            void* z = dev_random(ne, io, -1, 1, g);
            void* Bm = dev_random(nb, io, -1, 1, g);
            void* Cm = dev_random(nb, io, -1, 1, g);
            void* y = cu::malloc(ne * vlmamba::dtype_size(io));
            void* A = dev_random(std::size_t(s.E) * s.N, DType::F32, -2, -0.05f, g);
            void* D = dev_random(s.E, DType::F32, -1, 1, g);
            void* bias = dev_random(s.E, DType::F32, -1, 0.5f, g);
            void* h = cu::malloc(std::size_t(s.B) * s.E * s.N * 4);
            vlmamba::ScanArgs a{s.B, s.L, s.E, s.N, (const float*)u, (const float*)dl, (const float*)A,
                                (const float*)Bm, (const float*)Cm};
            a.D = (const float*)D;
            a.z = (const float*)z;
            a.delta_bias = (const float*)bias;
            a.h = (float*)h;
            a.y = (float*)y;
            const double us = cu::time_us([&] { cu::selective_scan(a, io); }, 50);
            // bytes that must move: u, delta, z in, y out, B and C in, state out
            const double bytes = double(ne) * 4 * vlmamba::dtype_size(io) + double(nb) * 2 * vlmamba::dtype_size(io) +
                                 double(s.B) * s.E * s.N * 4;
            const double gbs = bytes / us * 1e-3;
            std::printf("%-5s %-4d %-6d %-6d %-4d %10.1f %10.1f %7.0f%%\n", io == DType::F32 ? "f32" : "bf16", s.B,
                        s.L, s.E, s.N, us, gbs, 100.0 * gbs / copy_gbs);
            for (void* p : {u, dl, z, Bm, Cm, y, A, D, bias, h}) cu::free(p);
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
    std::printf("\n%-4s %14s %14s\n", "B", "layer GEMMs us", "weight GB/s");
    for (int M : {1, 8, 64}) {
        const int d = 2560, E = 5120, R = 160, N = 16;
        struct G { int n, k; };
        const G gs[] = {{2 * E, d}, {R + 2 * N, E}, {E, R}, {d, E}};
        std::vector<void*> ws, xs, ys;
        double wbytes = 0;
        for (auto q : gs) {
            ws.push_back(dev_random(std::size_t(q.n) * q.k, DType::BF16, -1, 1, g));
            xs.push_back(dev_random(std::size_t(M) * q.k, DType::BF16, -1, 1, g));
            ys.push_back(cu::malloc(std::size_t(M) * q.n * 4));
            wbytes += double(q.n) * q.k * 2;
        }
        const double us = cu::time_us([&] {
            for (int i = 0; i < 4; ++i) cu::gemm({M, gs[i].n, gs[i].k, xs[i], ws[i], ys[i], DType::BF16, DType::F32});
        }, 50);
        std::printf("%-4d %14.1f %14.1f\n", M, us, wbytes / us * 1e-3);
        for (auto v : {ws, xs, ys})
            for (void* p : v) cu::free(p);
    }
    return 0;
}
