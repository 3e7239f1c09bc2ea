// CPU vs CUDA parity per op (tier ii): scan (f32, bf16), decode step, conv1d, norm, gather, GEMM, graph replay.
// Every case is skipped when no GPU is present.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "cuda_test_helpers.hpp"
#include "../../cuda/tuning.hpp"
#include "vlmamba/cuda/api.hpp"
#include "vlmamba/ops/selective_scan.hpp"

namespace cu = vlmamba::cuda;
using vlmamba::DType;

namespace {

using vlmamba::test::DevBuf;
using vlmamba::test::uniform;

std::vector<std::uint16_t> to_bf16(const std::vector<float>& v) {
    std::vector<std::uint16_t> r(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) r[i] = vlmamba::f32_to_bf16(v[i]);
    return r;
}
std::vector<float> from_bf16(const std::vector<std::uint16_t>& v) {
    std::vector<float> r(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) r[i] = vlmamba::bf16_to_f32(v[i]);
    return r;
}

// max |got - want| / max(max |want|, tiny): relative to the tensor's scale.
double rel_err(const std::vector<float>& got, const std::vector<float>& want) {
    REQUIRE(got.size() == want.size());
    double num = 0.0, den = 1e-30;
    for (std::size_t i = 0; i < got.size(); ++i) {
        num = std::max(num, double(std::fabs(got[i] - want[i])));
        den = std::max(den, double(std::fabs(want[i])));
    }
    return num / den;
}

struct ScanCase {
    int B, L, E, N;
    bool z, D, bias, h_in;
    int ld_u;  // 0 or > E
};

}  // namespace

TEST_CASE("cuda: selective_scan f32 and bf16 match ref::selective_scan") {
    SKIP_WITHOUT_GPU();
    std::mt19937 g(7);
    const ScanCase cases[] = {{1, 1, 1, 1, false, false, false, false, 0}, {2, 7, 5, 3, true, true, true, false, 0},
                              {1, 33, 37, 16, true, true, true, true, 0},  {3, 70, 130, 16, true, false, true, false, 131},
                              {2, 65, 19, 17, false, true, false, true, 0}, {1, 100, 41, 64, true, true, true, true, 0},
                              {1, 600, 300, 16, true, true, true, false, 0}};
    for (const auto& k : cases) {
        for (DType io : {DType::F32, DType::BF16}) {
            CAPTURE(k.B); CAPTURE(k.L); CAPTURE(k.E); CAPTURE(k.N); CAPTURE(k.ld_u); CAPTURE(int(io));
            const int ldu = k.ld_u ? k.ld_u : k.E;
            const std::size_t ne = std::size_t(k.B) * k.L * k.E, nb = std::size_t(k.B) * k.L * k.N;
            auto u = uniform(g, std::size_t(k.B) * k.L * ldu), dl = uniform(g, ne, -3.0f, 1.0f), z = uniform(g, ne);
            auto Bm = uniform(g, nb), Cm = uniform(g, nb), A = uniform(g, std::size_t(k.E) * k.N, -2.0f, -0.05f);
            auto D = uniform(g, k.E), bias = uniform(g, k.E, -1.0f, 0.5f), h0 = uniform(g, std::size_t(k.B) * k.E * k.N);
            if (io == DType::BF16)  // the reference sees the bf16-rounded inputs
                for (auto* v : {&u, &dl, &z, &Bm, &Cm}) *v = from_bf16(to_bf16(*v));
            std::vector<float> y_ref(ne), h_ref = h0;
            vlmamba::ScanArgs a{k.B, k.L, k.E, k.N, u.data(), dl.data(), A.data(), Bm.data(), Cm.data()};
            a.D = k.D ? D.data() : nullptr;
            a.z = k.z ? z.data() : nullptr;
            a.delta_bias = k.bias ? bias.data() : nullptr;
            a.h = h_ref.data();
            a.h_in = k.h_in;
            a.y = y_ref.data();
            a.ld_u = k.ld_u;
            vlmamba::ref::selective_scan(a);

            // every states-per-thread variant of the kernel (0: the automatic choice)
            for (int spt : {0, 1, 2, 4}) {
            if (spt == 1 && k.N > 16) continue;
            CAPTURE(spt);
            cu::set_scan_states_per_thread(spt);
            DevBuf<float> dA(A), dD(D), dbias(bias), dh(h0);
            std::vector<float> y, h;
            auto run = [&](auto& du, auto& ddl, auto& dz, auto& dB, auto& dC, auto& dy) {
                vlmamba::ScanArgs d = a;
                d.u = reinterpret_cast<const float*>(du.p());
                d.delta = reinterpret_cast<const float*>(ddl.p());
                d.z = k.z ? reinterpret_cast<const float*>(dz.p()) : nullptr;
                d.Bm = reinterpret_cast<const float*>(dB.p());
                d.Cm = reinterpret_cast<const float*>(dC.p());
                d.y = reinterpret_cast<float*>(dy.p());
                d.A = dA.p();
                d.D = k.D ? dD.p() : nullptr;
                d.delta_bias = k.bias ? dbias.p() : nullptr;
                d.h = dh.p();
                cu::selective_scan(d, io);
                cu::synchronize();
            };
            if (io == DType::F32) {
                DevBuf<float> du(u), ddl(dl), dz(z), dB(Bm), dC(Cm), dy(ne);
                run(du, ddl, dz, dB, dC, dy);
                y = dy.get();
            } else {
                DevBuf<std::uint16_t> du(to_bf16(u)), ddl(to_bf16(dl)), dz(to_bf16(z)), dB(to_bf16(Bm)), dC(to_bf16(Cm)),
                    dy(ne);
                run(du, ddl, dz, dB, dC, dy);
                y = from_bf16(dy.get());
            }
            h = dh.get();
            const double tol = io == DType::F32 ? 1e-4 : 2e-2;
            CHECK(rel_err(y, y_ref) <= tol);
            CHECK(rel_err(h, h_ref) <= (io == DType::F32 ? 1e-4 : 1e-4));
            }
            cu::set_scan_states_per_thread(0);
        }
    }
}

TEST_CASE("cuda: selective_state_update and conv update match the references") {
    SKIP_WITHOUT_GPU();
    std::mt19937 g(11);
    for (auto [B, E, N, K] : {std::array{1, 1, 1, 4}, std::array{3, 37, 16, 4}, std::array{8, 130, 17, 3},
                              std::array{2, 64, 64, 4}}) {
        CAPTURE(B); CAPTURE(E); CAPTURE(N); CAPTURE(K);
        auto h0 = uniform(g, std::size_t(B) * E * N), x = uniform(g, std::size_t(B) * E), dl = uniform(g, std::size_t(B) * E, -3, 1);
        auto A = uniform(g, std::size_t(E) * N, -2.0f, -0.05f), Bm = uniform(g, std::size_t(B) * N), Cm = uniform(g, std::size_t(B) * N);
        auto D = uniform(g, E), z = uniform(g, std::size_t(B) * E), bias = uniform(g, E);
        std::vector<float> h_ref = h0, y_ref(std::size_t(B) * E);
        vlmamba::StateUpdateArgs a{B, E, N, h_ref.data(), x.data(), dl.data(), A.data(), Bm.data(), Cm.data()};
        a.D = D.data();
        a.z = z.data();
        a.delta_bias = bias.data();
        a.y = y_ref.data();
        vlmamba::ref::selective_state_update(a);
        DevBuf<float> dh(h0), dx(x), ddl(dl), dA(A), dB(Bm), dC(Cm), dD(D), dz(z), dbias(bias), dy(y_ref.size());
        vlmamba::StateUpdateArgs d{B, E, N, dh.p(), dx.p(), ddl.p(), dA.p(), dB.p(), dC.p()};
        d.D = dD.p();
        d.z = dz.p();
        d.delta_bias = dbias.p();
        d.y = dy.p();
        cu::selective_state_update(d);
        CHECK(rel_err(dy.get(), y_ref) <= 1e-4);
        CHECK(rel_err(dh.get(), h_ref) <= 1e-4);

        // conv update: state (B, E, K) oldest first
        auto st = uniform(g, std::size_t(B) * E * K), w = uniform(g, std::size_t(E) * K), cb = uniform(g, E);
        std::vector<float> st_ref = st, cy_ref(std::size_t(B) * E);
        for (int b = 0; b < B; ++b)
            for (int c = 0; c < E; ++c) {
                float* s = &st_ref[(std::size_t(b) * E + c) * K];
                for (int j = 0; j + 1 < K; ++j) s[j] = s[j + 1];
                s[K - 1] = x[std::size_t(b) * E + c];
                float acc = cb[c];
                for (int j = 0; j < K; ++j) acc += s[j] * w[std::size_t(c) * K + j];
                cy_ref[std::size_t(b) * E + c] = vlmamba::ref::silu(acc);
            }
        DevBuf<float> dst(st), dw(w), dcb(cb), dcy(cy_ref.size());
        cu::causal_conv1d_update({B, E, K, dst.p(), dx.p(), dw.p(), dcb.p(), true, dcy.p()});
        CHECK(rel_err(dcy.get(), cy_ref) <= 1e-5);
        CHECK(rel_err(dst.get(), st_ref) == 0.0);
    }
}

TEST_CASE("cuda: causal_conv1d matches the scalar definition, with the decode state") {
    SKIP_WITHOUT_GPU();
    std::mt19937 g(3);
    for (auto [B, L, E, K, ld] : {std::array{1, 1, 1, 4, 0}, std::array{2, 3, 37, 4, 0}, std::array{3, 50, 130, 4, 260},
                                  std::array{1, 9, 5, 2, 0}}) {
        CAPTURE(B); CAPTURE(L); CAPTURE(E); CAPTURE(K); CAPTURE(ld);
        const int ldx = ld ? ld : E;
        auto x = uniform(g, std::size_t(B) * L * ldx), w = uniform(g, std::size_t(E) * K), cb = uniform(g, E);
        std::vector<float> y_ref(std::size_t(B) * L * E), st_ref(std::size_t(B) * E * K);
        for (int b = 0; b < B; ++b)
            for (int t = 0; t < L; ++t)
                for (int c = 0; c < E; ++c) {
                    float acc = cb[c];
                    for (int j = 0; j < K; ++j) {
                        const int tt = t - K + 1 + j;
                        if (tt >= 0) acc += w[std::size_t(c) * K + j] * x[(std::size_t(b) * L + tt) * ldx + c];
                    }
                    y_ref[(std::size_t(b) * L + t) * E + c] = vlmamba::ref::silu(acc);
                    if (t == 0)
                        for (int j = 0; j < K; ++j) {
                            const int tt = L - K + j;
                            st_ref[(std::size_t(b) * E + c) * K + j] = tt >= 0 ? x[(std::size_t(b) * L + tt) * ldx + c] : 0.0f;
                        }
                }
        DevBuf<float> dx(x), dw(w), dcb(cb), dy(y_ref.size()), dst(st_ref.size());
        cu::Conv1dArgs a{B, L, E, K, dx.p(), dw.p(), dcb.p(), true, dy.p(), dst.p(), ld};
        cu::causal_conv1d(a);
        CHECK(rel_err(dy.get(), y_ref) <= 1e-5);
        CHECK(rel_err(dst.get(), st_ref) == 0.0);
    }
}

TEST_CASE("cuda: rms_norm with residual add, embedding, add, convert, argmax") {
    SKIP_WITHOUT_GPU();
    std::mt19937 g(5);
    for (auto [R, Dm] : {std::array{1, 1}, std::array{3, 37}, std::array{5, 2560}}) {
        CAPTURE(R); CAPTURE(Dm);
        auto x = uniform(g, std::size_t(R) * Dm), res = uniform(g, std::size_t(R) * Dm), w = uniform(g, Dm, 0.5f, 1.5f);
        std::vector<float> res_ref(res.size()), out_ref(res.size());
        for (int r = 0; r < R; ++r) {
            double ss = 0;
            for (int i = 0; i < Dm; ++i) {
                const std::size_t j = std::size_t(r) * Dm + i;
                res_ref[j] = res[j] + x[j];
                ss += double(res_ref[j]) * res_ref[j];
            }
            const float inv = float(1.0 / std::sqrt(ss / Dm + 1e-5));
            for (int i = 0; i < Dm; ++i) out_ref[std::size_t(r) * Dm + i] = res_ref[std::size_t(r) * Dm + i] * inv * w[i];
        }
        DevBuf<float> dx(x), dres(res), dw(w), dout(x.size());
        cu::RmsNormArgs a{R, Dm, dx.p(), dres.p(), dw.p(), DType::F32, dout.p(), DType::F32, 1e-5f};
        cu::rms_norm(a);
        CHECK(rel_err(dres.get(), res_ref) <= 1e-6);
        CHECK(rel_err(dout.get(), out_ref) <= 1e-5);
        // bf16 weights and output, no residual
        DevBuf<std::uint16_t> dwb(to_bf16(w)), doutb(x.size());
        DevBuf<float> dx2(res_ref);
        cu::rms_norm({R, Dm, dx2.p(), nullptr, dwb.p(), DType::BF16, doutb.p(), DType::BF16, 1e-5f});
        CHECK(rel_err(from_bf16(doutb.get()), out_ref) <= 2e-2);
    }
    // embedding from a bf16 table, add, convert, argmax with ties
    const int V = 11, Dm = 13;
    auto table = from_bf16(to_bf16(uniform(g, std::size_t(V) * Dm)));
    std::vector<std::int32_t> ids{3, 0, 10, 3};
    DevBuf<std::uint16_t> dt(to_bf16(table));
    DevBuf<std::int32_t> dids(ids);
    DevBuf<float> demb(ids.size() * Dm);
    cu::embedding(demb.p(), dt.p(), DType::BF16, dids.p(), int(ids.size()), Dm, V);
    auto emb = demb.get();
    for (std::size_t r = 0; r < ids.size(); ++r)
        for (int i = 0; i < Dm; ++i) CHECK(emb[r * Dm + i] == table[std::size_t(ids[r]) * Dm + i]);
    DevBuf<float> dsum(emb.size());
    cu::add(dsum.p(), demb.p(), demb.p(), std::int64_t(emb.size()));
    auto sum = dsum.get();
    for (std::size_t i = 0; i < emb.size(); ++i) CHECK(sum[i] == 2.0f * emb[i]);
    std::vector<float> rows(3 * 3000, 0.0f);
    rows[5] = 2.0f; rows[2999] = 2.0f; rows[3000 + 1234] = 1.0f; rows[6000 + 2999] = 0.5f;
    DevBuf<float> drows(rows);
    DevBuf<std::int32_t> dam(3);
    cu::argmax_rows(dam.p(), drows.p(), 3, 3000);
    CHECK(dam.get() == std::vector<std::int32_t>{5, 1234, 2999});
}

TEST_CASE("cuda: gemm f32 (strict and tf32) and bf16 match a double-precision product") {
    SKIP_WITHOUT_GPU();
    std::mt19937 g(9);
    for (auto [M, N, K] : {std::array{1, 1, 1}, std::array{7, 33, 65}, std::array{64, 130, 257}, std::array{1, 5120, 2560}}) {
        CAPTURE(M); CAPTURE(N); CAPTURE(K);
        auto A = uniform(g, std::size_t(M) * K), Bw = uniform(g, std::size_t(N) * K);
        auto ref = [&](const std::vector<float>& a, const std::vector<float>& b) {
            std::vector<float> c(std::size_t(M) * N);
            for (int i = 0; i < M; ++i)
                for (int j = 0; j < N; ++j) {
                    double s = 0;
                    for (int k = 0; k < K; ++k) s += double(a[std::size_t(i) * K + k]) * b[std::size_t(j) * K + k];
                    c[std::size_t(i) * N + j] = float(s);
                }
            return c;
        };
        const auto c_ref = ref(A, Bw);
        DevBuf<float> dA(A), dB(Bw), dC(c_ref.size());
        cu::GemmArgs a{M, N, K, dA.p(), dB.p(), dC.p()};
        a.tf32 = false;
        cu::gemm(a);
        CHECK(rel_err(dC.get(), c_ref) <= 1e-4);
        a.tf32 = true;
        cu::gemm(a);
        CHECK(rel_err(dC.get(), c_ref) <= 3e-3);
        const auto Ab = from_bf16(to_bf16(A)), Bb = from_bf16(to_bf16(Bw));
        const auto cb_ref = ref(Ab, Bb);
        DevBuf<std::uint16_t> dAb(to_bf16(A)), dBb(to_bf16(Bw)), dCb(c_ref.size());
        cu::GemmArgs b{M, N, K, dAb.p(), dBb.p(), dCb.p(), DType::BF16, DType::BF16};
        cu::gemm(b);
        CHECK(rel_err(from_bf16(dCb.get()), cb_ref) <= 2e-2);
    }
}

TEST_CASE("cuda: a captured decode step replays like direct launches") {
    SKIP_WITHOUT_GPU();
    std::mt19937 g(13);
    const int B = 4, E = 96, N = 16, K = 4;
    auto h0 = uniform(g, std::size_t(B) * E * N), x = uniform(g, std::size_t(B) * E), dl = uniform(g, std::size_t(B) * E, -3, 1);
    auto A = uniform(g, std::size_t(E) * N, -2.0f, -0.05f), Bm = uniform(g, std::size_t(B) * N), Cm = uniform(g, std::size_t(B) * N);
    auto st0 = uniform(g, std::size_t(B) * E * K), w = uniform(g, std::size_t(E) * K);
    DevBuf<float> dx(x), ddl(dl), dA(A), dB(Bm), dC(Cm), dw(w), dxc(x.size()), dy(x.size());
    auto steps = [&](DevBuf<float>& dh, DevBuf<float>& dst, cu::Stream s, bool graph) {
        auto step = [&] {
            cu::causal_conv1d_update({B, E, K, dst.p(), dx.p(), dw.p(), nullptr, true, dxc.p()}, s);
            vlmamba::StateUpdateArgs a{B, E, N, dh.p(), dxc.p(), ddl.p(), dA.p(), dB.p(), dC.p()};
            a.y = dy.p();
            cu::selective_state_update(a, s);
        };
        if (graph) {
            cu::Graph gr = cu::graph_capture(s, step);
            for (int i = 0; i < 5; ++i) cu::graph_launch(gr, s);
            cu::synchronize();
            cu::graph_destroy(gr);
        } else {
            for (int i = 0; i < 5; ++i) step();
            cu::synchronize();
        }
        return dh.get();
    };
    cu::Stream s = cu::stream_create();
    DevBuf<float> h1(h0), s1(st0), h2(h0), s2(st0);
    const auto direct = steps(h1, s1, s, false);
    const auto replay = steps(h2, s2, s, true);
    cu::stream_destroy(s);
    CHECK(rel_err(replay, direct) == 0.0);
}

TEST_CASE("cuda: stubs and checks report errors in the library's form") {
#ifndef VLMAMBA_WITH_CUDA
    CHECK_FALSE(cu::available());
    CHECK_THROWS_WITH(cu::malloc(4), doctest::Contains("built without CUDA"));
    return;
#endif
    SKIP_WITHOUT_GPU();
    vlmamba::ScanArgs a{};
    a.batch = 0;
    CHECK_THROWS_WITH(cu::selective_scan(a), doctest::Contains("[selective_scan] expected"));
}
