// The vision tower moved to the GPU against the CPU VisionEncoder and the transformers goldens of
// tests/data/vision/{clip,siglip} (zoo/fixtures/make_vision.py): every hidden state in f32 <= 1e-4 relative, tf32 <= 3e-3; features() equal the
// CPU's. The ViT ops alone (LayerNorm, activations, softmax, batched GEMM) against host references. Skipped
// without a GPU.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <vector>

#include "../unit/test_helpers.hpp"
#include "cuda_test_helpers.hpp"
#include "vlmamba/cuda/device_buffer.hpp"
#include "vlmamba/models/vision_encoder.hpp"
#include "vlmamba/ops/gemm.hpp"
#include "vlmamba/ops/softmax.hpp"

using namespace vlmamba;
namespace fs = std::filesystem;
using vlmamba::test::rel_err;

namespace {
const fs::path kVisionData = fs::path(VLMAMBA_TEST_DATA_DIR) / "vision";

Tensor host_of(const DeviceBuffer& b, Shape s) {
    Tensor t = Tensor::empty(std::move(s));
    cuda::synchronize();
    cuda::copy_d2h(t.data<float>(), b.get(), t.nbytes());
    return t;
}
DeviceBuffer device_of(const Tensor& t) {
    const Tensor c = t.to(DType::F32);  // contiguous f32
    DeviceBuffer b(c.nbytes());
    cuda::copy_h2d(b.get(), c.raw(), c.nbytes());
    return b;
}
Tensor rnd(std::mt19937& g, Shape s, float lo = -1.0f, float hi = 1.0f) {
    Tensor t = Tensor::empty(std::move(s));
    std::uniform_real_distribution<float> d(lo, hi);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(g);
    return t;
}
}  // namespace

TEST_CASE("cuda vision: ViT ops match host references") {
    SKIP_WITHOUT_GPU();
    std::mt19937 g(5);
    const int rows = 37, dim = 70;
    const Tensor x = rnd(g, {rows, dim}, -3, 3), w = rnd(g, {dim}), b = rnd(g, {dim});
    DeviceBuffer dx = device_of(x), dw = device_of(w), db = device_of(b), dy(x.nbytes());
    cuda::layer_norm({rows, dim, dx.as<float>(), dw.as<float>(), db.as<float>(), dy.as<float>(), 1e-5f});
    CHECK(rel_err(host_of(dy, {rows, dim}), layer_norm(x, w, b, 1e-5f)) <= 1e-5);

    const std::pair<cuda::Activation, Tensor> acts[] = {
        {cuda::Activation::QuickGelu, quick_gelu(x + b)}, {cuda::Activation::Gelu, gelu(x + b)},
        {cuda::Activation::GeluTanh, gelu_tanh(x + b)}, {cuda::Activation::None, x + b}};
    for (const auto& [act, want] : acts) {
        CAPTURE(int(act));
        DeviceBuffer d = device_of(x);
        cuda::bias_act(d.as<float>(), db.as<float>(), rows, dim, act);
        CHECK(rel_err(host_of(d, {rows, dim}), want) <= 1e-5);
    }
    DeviceBuffer sm = device_of(x);
    cuda::softmax_rows(sm.as<float>(), rows, dim, 0.37f);
    CHECK(rel_err(host_of(sm, {rows, dim}), softmax(x * 0.37f)) <= 1e-5);

    // 3 products (m, n, k) = (5, 7, 9) of column slices, b transposed and not
    const Tensor A = rnd(g, {3, 5, 9}), B = rnd(g, {3, 7, 9}), Bn = rnd(g, {3, 9, 7});
    DeviceBuffer dA = device_of(A), dB = device_of(B), dBn = device_of(Bn), dC(3 * 5 * 7 * 4), dCn(3 * 5 * 7 * 4);
    cuda::gemm_batched({5, 7, 9, dA.get(), dB.get(), dC.get(), DType::F32, DType::F32, false}, {3, 45, 63, 35, true});
    cuda::gemm_batched({5, 7, 9, dA.get(), dBn.get(), dCn.get(), DType::F32, DType::F32, false},
                       {3, 45, 63, 35, false});
    const Tensor C = host_of(dC, {3, 5, 7}), Cn = host_of(dCn, {3, 5, 7});
    for (int i = 0; i < 3; ++i) {
        CHECK(rel_err(C.select(0, i), matmul(A.select(0, i), B.select(0, i).transpose(0, 1))) <= 1e-5);
        CHECK(rel_err(Cn.select(0, i), matmul(A.select(0, i), Bn.select(0, i))) <= 1e-5);
    }
}

TEST_CASE("cuda vision: the tower moved to cuda matches the CPU tower and transformers") {
    SKIP_WITHOUT_GPU();
    for (const char* family : {"clip", "siglip"}) {
        CAPTURE(family);
        const fs::path root = kVisionData / family;
        if (!fs::exists(root / "golden.safetensors")) continue;
        const SafetensorsFile golden = SafetensorsFile::open(root / "golden.safetensors");
        const Tensor pixels = golden.get("pixel_values");  // (1, 3, S, S)
        const VisionEncoder cpu = load_vision_tower(root / "hub");
        const VisionEncoder gpu = cpu.to(Device::Cuda);
        for (bool tf32 : {false, true}) {
            CAPTURE(tf32);
            set_cuda_tf32(tf32);
            const double tol = tf32 ? 3e-3 : 1e-4;
            for (int i = 0; i <= cpu.cfg.num_hidden_layers; ++i) {
                CAPTURE(i);
                const Tensor want = golden.get("hidden_states." + std::to_string(i)).select(0, 0);  // (N, C)
                CHECK(rel_err(gpu.hidden_state(pixels, i).to(Device::Cpu), want) <= tol);
            }
            CHECK(rel_err(gpu.features(pixels).to(Device::Cpu), cpu.features(pixels)) <= tol);
            // two images in one batch: one product per weight over both, attention per image
            Tensor two = Tensor::empty({2, pixels.size(1), pixels.size(2), pixels.size(3)});
            for (int b = 0; b < 2; ++b) {
                Tensor dst = two.select(0, b);
                copy_into(dst, pixels.select(0, 0));
            }
            const Tensor fb = gpu.features_batch(two).to(Device::Cpu);  // (2, N', C)
            CHECK(rel_err(fb.select(0, 1), cpu.features(pixels)) <= tol);
        }
        set_cuda_tf32(false);
    }
}
