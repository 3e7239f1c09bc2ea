#include <doctest/doctest.h>

#include "test_helpers.hpp"
#include "vlmamba/ops/elementwise.hpp"
#include "vlmamba/ops/gemm.hpp"
#include "vlmamba/ops/norm.hpp"
#include "vlmamba/ops/reduce.hpp"
#include "vlmamba/ops/softmax.hpp"

using namespace vlmamba;
using vlmamba::test::randn;
using vlmamba::test::rel_err;

TEST_CASE("tensor: owning storage is 64-byte aligned and views share it") {
    Tensor t = Tensor::zeros({3, 17});
    CHECK(reinterpret_cast<std::uintptr_t>(t.raw()) % 64 == 0);
    Tensor v = t.slice(1, 2, 5);
    CHECK(v.shape() == Shape{3, 3});
    CHECK_FALSE(v.is_contiguous());
    v.data<float>()[0] = 7.f;
    CHECK(t.at({0, 2}) == 7.f);
    Tensor tr = t.transpose(0, 1);
    CHECK(tr.shape() == Shape{17, 3});
    CHECK(tr.at({2, 0}) == 7.f);
    CHECK(t.reshape({-1}).shape() == Shape{51});
    CHECK(t.select(0, 1).shape() == Shape{17});
    CHECK(t.unsqueeze(0).shape() == Shape{1, 3, 17});
}

TEST_CASE("tensor: shape errors name the op and the shapes") {
    Tensor t = Tensor::zeros({2, 3});
    CHECK_THROWS_WITH_AS(t.reshape({4, 2}), doctest::Contains("[reshape] expected 6 elements"), Error);
    CHECK_THROWS_WITH_AS(t.slice(1, 2, 5), doctest::Contains("[slice]"), Error);
    CHECK_THROWS_WITH_AS(t.transpose(0, 1).reshape({6}), doctest::Contains("contiguous"), Error);
    CHECK_THROWS_AS(matmul(t, t), Error);
}

TEST_CASE("tensor: dtype round trips") {
    Tensor x = randn({5, 7}, 1);
    Tensor b = x.to(DType::BF16).to(DType::F32);
    Tensor h = x.to(DType::F16).to(DType::F32);
    CHECK(rel_err(b, x) < 1e-2);
    CHECK(rel_err(h, x) < 1e-3);
    CHECK(f32_to_bf16(1.0f) == 0x3f80);
    CHECK(f16_to_f32(f32_to_f16(65504.f)) == 65504.f);
    CHECK(f16_to_f32(f32_to_f16(5.9604645e-08f)) == 5.9604645e-08f);  // smallest subnormal
    CHECK(bf16_to_f32(f32_to_bf16(3.140625f)) == 3.140625f);
}

TEST_CASE("expr: a fused chain equals the scalar formula, with broadcasting and views") {
    for (std::int64_t n : {1, 3, 17, 1000}) {
        Tensor x = randn({4, n}, 2), y = randn({4, n}, 3), z = randn({4, n}, 4), D = randn({n}, 5);
        Tensor out = y * silu(z) + x * D;  // (4, n)
        Tensor xt = randn({n, 4}, 6).transpose(0, 1);  // non-contiguous operand
        Tensor out2 = gelu(xt) - exp(x * 0.5f) / (softplus(y) + 1.f);
        Tensor out3 = gelu_tanh(x) + quick_gelu(y) * 2.f + sigmoid(z) - (-x);
        for (std::int64_t r = 0; r < 4; ++r)
            for (std::int64_t c = 0; c < n; ++c) {
                const float xv = x.at({r, c}), yv = y.at({r, c}), zv = z.at({r, c}), tv = xt.at({r, c});
                const float e1 = yv * zv / (1 + std::exp(-zv)) + xv * D.at({c});
                const float sp = yv > 20 ? yv : std::log1p(std::exp(yv));
                const float e2 = 0.5f * tv * (1 + std::erf(tv / std::sqrt(2.f))) - std::exp(xv * 0.5f) / (sp + 1);
                const float gt = 0.5f * xv * (1 + std::tanh(0.7978845608f * (xv + 0.044715f * xv * xv * xv)));
                const float e3 = gt + yv / (1 + std::exp(-1.702f * yv)) * 2 + 1 / (1 + std::exp(-zv)) + xv;
                CHECK(out.at({r, c}) == doctest::Approx(e1).epsilon(1e-5));
                CHECK(out2.at({r, c}) == doctest::Approx(e2).epsilon(1e-5));
                CHECK(out3.at({r, c}) == doctest::Approx(e3).epsilon(1e-5));
            }
    }
    CHECK_THROWS_WITH_AS(eval(randn({3, 4}, 1) + randn({4, 3}, 2)), doctest::Contains("does not broadcast"), Error);
}

TEST_CASE("reductions and softmax match the reference on odd sizes and views") {
    for (std::int64_t n : {1, 3, 17, 1000}) {
        Tensor x = randn({n, 5}, 7).transpose(0, 1);  // (5, n) non-contiguous
        CHECK(rel_err(sum(x), ref::sum(x)) < 1e-5);
        CHECK(rel_err(softmax(x), ref::softmax(x)) < 1e-6);
        Tensor m = max(x);
        for (int r = 0; r < 5; ++r) {
            float e = -INFINITY;
            for (std::int64_t c = 0; c < n; ++c) e = std::fmax(e, x.at({r, c}));
            CHECK(m.at({r}) == e);
        }
        CHECK(mean(x).at({0}) == doctest::Approx(ref::sum(x).at({0}) / float(n)).epsilon(1e-5));
    }
}

TEST_CASE("matmul and linear match the reference for views, bf16/f16 weights and odd sizes") {
    for (auto [m, k, n] : {std::array<std::int64_t, 3>{1, 1, 1}, {3, 17, 5}, {17, 3, 1000}, {64, 100, 33}}) {
        Tensor a = randn({m, k}, 8), b = randn({k, n}, 9);
        CHECK(rel_err(matmul(a, b), ref::matmul(a, b)) < 1e-5);
        Tensor bt = randn({n, k}, 10);
        CHECK(rel_err(matmul(a, bt.transpose(0, 1)), ref::matmul(a, bt.transpose(0, 1))) < 1e-5);
        Tensor bias = randn({n}, 11);
        Tensor y = linear(a, bt, bias);  // (m, n)
        Tensor yr = ref::matmul(a, bt.transpose(0, 1));
        for (std::int64_t i = 0; i < m; ++i)
            for (std::int64_t j = 0; j < n; ++j) yr.data<float>()[i * n + j] += bias.at({j});
        CHECK(rel_err(y, yr) < 1e-5);
        Tensor wb = bt.to(DType::BF16);
        CHECK(rel_err(linear(a, wb), ref::matmul(a, wb.to(DType::F32).transpose(0, 1))) < 1e-5);
    }
    // The decode path (M <= 4: threaded rows of W, f32 or bf16 read in registers) on odd sizes.
    for (auto [m, k, n] : {std::array<std::int64_t, 3>{1, 1, 1}, {1, 17, 3}, {3, 100, 1000}, {4, 1000, 33}}) {
        Tensor x = randn({m, k}, 17), w = randn({n, k}, 18);
        CHECK(rel_err(linear(x, w), ref::matmul(x, w.transpose(0, 1))) < 1e-5);
        Tensor wb = w.to(DType::BF16);
        CHECK(rel_err(linear(x, wb), ref::matmul(x, wb.to(DType::F32).transpose(0, 1))) < 1e-5);
        Tensor xs = randn({m, k + 5}, 19).slice(1, 2, k + 2);  // strided rows
        CHECK(rel_err(linear(xs, w), ref::matmul(xs, w.transpose(0, 1))) < 1e-5);
    }
    // bf16 and f16 weights on every path: gemv (M <= 16, rows of x in blocks of 4 and a remainder of 1-3), panels of
    // 128 rows (M > 16; N not a multiple of the panel), K not a multiple of the vector width, strided x.
    for (auto [m, k, n] : {std::array<std::int64_t, 3>{1, 5, 3}, {2, 37, 130}, {3, 100, 257}, {5, 257, 129},
                           {7, 16, 1}, {16, 100, 300}, {17, 100, 300}, {40, 33, 129}, {129, 65, 257}}) {
        Tensor x = randn({m, k}, 20), w = randn({n, k}, 21), bias = randn({n}, 22);
        for (DType dt : {DType::BF16, DType::F16}) {
            Tensor wh = w.to(dt);
            Tensor yr = ref::matmul(x, wh.to(DType::F32).transpose(0, 1));  // the stored values, widened
            CHECK_MESSAGE(rel_err(linear(x, wh), yr) < 1e-5, dtype_name(dt), " m ", m, " k ", k, " n ", n);
            Tensor xs = randn({m, k + 5}, 23).slice(1, 2, k + 2);  // strided rows
            CHECK(rel_err(linear(xs, wh), ref::matmul(xs, wh.to(DType::F32).transpose(0, 1))) < 1e-5);
            Tensor yb = linear(x, wh, bias);
            for (std::int64_t i = 0; i < m; ++i)
                for (std::int64_t j = 0; j < n; ++j) yr.data<float>()[i * n + j] += bias.at({j});
            CHECK(rel_err(yb, yr) < 1e-5);
        }
        CHECK(rel_err(linear(x, w), ref::matmul(x, w.transpose(0, 1))) < 1e-5);
    }
    Tensor a3 = randn({2, 3, 4}, 12), b3 = randn({2, 4, 5}, 13);
    Tensor c3 = matmul(a3, b3);
    CHECK(rel_err(c3.select(0, 1), ref::matmul(a3.select(0, 1), b3.select(0, 1))) < 1e-5);
    CHECK_THROWS_WITH_AS(linear(a3, randn({5, 3}, 1)), doctest::Contains("[linear]"), Error);
}

TEST_CASE("norms match the reference") {
    for (std::int64_t n : {1, 3, 17, 1000}) {
        Tensor x = randn({4, n}, 14, 3.f), w = randn({n}, 15), b = randn({n}, 16);
        CHECK(rel_err(rms_norm(x, w, 1e-5f), ref::rms_norm(x, w, 1e-5f)) < 1e-5);
        CHECK(rel_err(layer_norm(x, w, b, 1e-6f), ref::layer_norm(x, w, b, 1e-6f)) < 1e-5);
    }
    CHECK_THROWS_WITH_AS(rms_norm(randn({2, 4}, 1), randn({5}, 2), 1e-5f),
                         doctest::Contains("weight has shape (5,), expected (4,)"), Error);
}
