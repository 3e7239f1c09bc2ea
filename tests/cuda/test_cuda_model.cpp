// Whole-model parity of MambaLm on the GPU (tier ii and iii), the same class as on the CPU moved with
// to(Device::Cuda): against the CPU model and the transformers goldens of tests/data/mamba/<cfg>: fp32 <= 1e-4
// relative (tf32 <= 3e-3), bf16 weights <= 2e-2, greedy continuations identical in fp32; batched decode through the
// fused step's gemv path (B <= 8) and cuBLAS path (B > 8), graph replays, and the op-by-op step. Every case is
// skipped when no GPU is present.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <random>

#include "../unit/test_helpers.hpp"
#include "cuda_test_helpers.hpp"
#include "vlmamba/cuda/decode.hpp"
#include "vlmamba/cuda/device_buffer.hpp"
#include "vlmamba/models/load_mamba.hpp"
#include "vlmamba/ops/selective_scan.hpp"
#include "vlmamba/session/load.hpp"
#include "vlmamba/session/session.hpp"

using namespace vlmamba;
namespace fs = std::filesystem;
using vlmamba::test::rel_err;

namespace {

const fs::path kMambaData = fs::path(VLMAMBA_TEST_DATA_DIR) / "mamba";

std::vector<std::int32_t> to_ids(const Tensor& t) {
    std::vector<std::int32_t> v;
    for (std::int64_t i = 0; i < t.numel(); ++i) v.push_back(std::int32_t(t.data<std::int64_t>()[i]));
    return v;
}

Tensor row(const Tensor& t, std::int64_t i) { return t.slice(0, i, i + 1); }
Tensor host(const Tensor& t) { return t.to(Device::Cpu); }

std::int32_t argmax(const Tensor& r) {
    const Tensor c = r.to(Device::Cpu).contiguous();
    const float* l = c.data<float>();
    return std::int32_t(std::max_element(l, l + c.numel()) - l);
}

bool have(const fs::path& p) {
    if (fs::exists(p)) return true;
    MESSAGE("skipping: no fixture at " << p.string());
    return false;
}

// Prefill of one sequence into slot `slot` -> logits of its last position (1, V) on the host.
Tensor prefill(const MambaLm& lm, std::span<const std::int32_t> ids, MambaState& st, int slot = 0) {
    const Tensor h = lm.forward_hidden(lm.embed(ids), &st, slot);  // (L, D)
    return host(lm.logits(row(h, h.size(0) - 1)));
}

}  // namespace

TEST_CASE("cuda model: f32 and tf32 logits match the CPU model and transformers; greedy decode is identical") {
    SKIP_WITHOUT_GPU();
    for (const char* cfg : {"tiny-tied", "tiny-untied"}) {
        const fs::path base = kMambaData / cfg;
        if (!have(base / "golden.safetensors")) continue;
        CAPTURE(cfg);
        const WeightStore golden = WeightStore::open(base / "golden.safetensors");
        const auto ids = to_ids(golden.get("input_ids"));
        const auto greedy = to_ids(golden.get("greedy_ids"));
        const Tensor greedy_logits = golden.get("greedy_logits");
        const MambaLm lm = load_mamba_lm(base / "hf-f32");
        const Tensor cpu = lm.forward(ids);  // (L, V)

        const MambaLm gpu = lm.to(Device::Cuda);
        CHECK(gpu.device() == Device::Cuda);
        const Tensor logits = host(gpu.forward(ids));
        CHECK(rel_err(logits, cpu) <= 1e-4);
        CHECK(rel_err(logits, golden.get("logits")) <= 1e-4);
        set_cuda_tf32(true);
        const Tensor logits_tf32 = host(gpu.forward(ids));
        set_cuda_tf32(false);
        CHECK(rel_err(logits_tf32, golden.get("logits")) <= 3e-3);
        MESSAGE(cfg << " L " << ids.size() << ": f32 forward vs CPU " << rel_err(logits, cpu) << ", vs transformers "
                    << rel_err(logits, golden.get("logits")) << "; tf32 vs transformers "
                    << rel_err(logits_tf32, golden.get("logits")));

        // prefill + recurrent decode (eager first step, graph replays after), against the goldens and the CPU state
        MambaState st = gpu.new_state(1);
        Tensor last = prefill(gpu, ids, st);  // (1, V)
        CHECK(rel_err(last, row(cpu, cpu.size(0) - 1)) <= 1e-4);
        MambaState cst = lm.new_state(1);
        lm.forward_hidden(lm.embed(ids), &cst);
        const MambaState got = st.to(Device::Cpu);
        for (int i = 0; i < lm.cfg.n_layer; ++i) {
            CHECK(rel_err(got.conv[i], cst.conv[i]) <= 1e-5);
            CHECK(rel_err(got.ssm[i], cst.ssm[i]) <= 1e-4);
        }
        std::vector<std::int32_t> out, seq = ids;
        for (std::size_t i = 0; i < greedy.size(); ++i) {
            CAPTURE(i);
            CHECK(rel_err(last, row(greedy_logits, std::int64_t(i))) <= 1e-4);
            const std::int32_t id = argmax(last);
            out.push_back(id);
            seq.push_back(id);
            last = gpu.step(std::span<const std::int32_t>(&id, 1), st);
        }
        CHECK(out == greedy);
        const Tensor full = lm.forward(seq);
        CHECK(rel_err(last, row(full, full.size(0) - 1)) <= 1e-4);

        // step_greedy gives the argmax of the same step, and a copy (a snapshot) replays it
        MambaState snap = st;
        const std::int32_t tok = greedy.back();
        const Tensor l1 = gpu.step(std::span<const std::int32_t>(&tok, 1), st);
        const auto g1 = gpu.step_greedy(std::span<const std::int32_t>(&tok, 1), snap);
        CHECK(g1.at(0) == argmax(l1));

        // a prefill that continues a state on the GPU (the conv and SSM states read back in) equals one prefill
        MambaState two = gpu.new_state(1);
        const std::size_t cut = ids.size() / 2;
        prefill(gpu, std::span(ids).first(cut), two);
        const Tensor joined = prefill(gpu, std::span(ids).subspan(cut), two);
        CHECK(rel_err(joined, row(cpu, cpu.size(0) - 1)) <= 1e-4);
    }
}

TEST_CASE("cuda model: bf16 weights stay within 2e-2 of the CPU model") {
    SKIP_WITHOUT_GPU();
    for (const char* cfg : {"tiny-tied", "tiny-untied"}) {
        const fs::path base = kMambaData / cfg;
        if (!have(base / "hf-bf16")) continue;
        CAPTURE(cfg);
        const WeightStore golden = WeightStore::open(base / "golden.safetensors");
        const auto ids = to_ids(golden.get("input_ids"));
        const MambaLm lm = load_mamba_lm(base / "hf-bf16");  // bf16 values in f32 tensors
        const Tensor cpu = lm.forward(ids);
        const MambaLm gpu = lm.to(Device::Cuda, DType::BF16);
        const Tensor logits = host(gpu.forward(ids));
        CHECK(rel_err(logits, cpu) <= 2e-2);
        CHECK(rel_err(logits, golden.get("logits_bf16")) <= 2e-2);
        MESSAGE(cfg << " bf16 forward vs CPU: " << rel_err(logits, cpu));

        MambaState st = gpu.new_state(1);
        MambaState cst = lm.new_state(1);
        Tensor g = prefill(gpu, ids, st);
        Tensor c = lm.logits(row(lm.forward_hidden(lm.embed(ids), &cst), std::int64_t(ids.size()) - 1));
        CHECK(rel_err(g, c) <= 2e-2);
        for (int i = 0; i < 6; ++i) {  // the states carry the prefill's bf16 activation rounding
            const std::int32_t id = argmax(c);
            g = gpu.step(std::span<const std::int32_t>(&id, 1), st);
            c = lm.step(std::span<const std::int32_t>(&id, 1), cst);
            CHECK(rel_err(g, c) <= 2e-2);
        }
        // decode alone multiplies f32 activations by the bf16 weights, as the CPU does: f32-close
        MambaState st1 = gpu.new_state(1);
        MambaState cst1 = lm.new_state(1);
        for (std::int32_t id : ids) {
            g = gpu.step(std::span<const std::int32_t>(&id, 1), st1);
            c = lm.step(std::span<const std::int32_t>(&id, 1), cst1);
        }
        CHECK(rel_err(g, c) <= 1e-4);
    }
}

TEST_CASE("cuda model: batched decode (fused gemv and cuBLAS paths, op by op) equals the CPU batch") {
    SKIP_WITHOUT_GPU();
    const fs::path dir = kMambaData / "tiny-untied" / "hf-f32";
    if (!have(dir)) return;
    const MambaLm lm = load_mamba_lm(dir);
    const MambaLm gpu = lm.to(Device::Cuda);
    const int V = lm.cfg.vocab_size;
    for (auto [B, fused] : {std::pair{3, true}, std::pair{3, false}, std::pair{11, true}}) {
        CAPTURE(B);
        CAPTURE(fused);
        MambaState st = gpu.new_state(B);
        MambaState cst = lm.new_state(B);
        for (int b = 0; b < B; ++b) {
            std::vector<std::int32_t> p;
            for (int t = 0; t <= (b * 7) % 13; ++t) p.push_back((b * 31 + t * 17 + 5) % V);
            prefill(gpu, p, st, b);
            lm.forward_hidden(lm.embed(p), &cst, b);
        }
        std::vector<std::int32_t> toks(B);
        for (int s = 0; s < 4; ++s) {  // step 0 eager, steps 1.. graph replays
            CAPTURE(s);
            for (int b = 0; b < B; ++b) toks[b] = (b * 13 + s * 29 + 3) % V;
            const Tensor g = fused ? gpu.step(toks, st) : host(gpu.step_embeds(gpu.embed(toks), st));
            const Tensor c = lm.step(toks, cst);
            CHECK(rel_err(g, c) <= 1e-4);
        }
        // rows leave and join the batch on the device; the fused step rebinds to the new tensors
        const std::vector<int> keep{B - 1, 0};
        st = st.rows(keep);
        cst = cst.rows(keep);
        st.append(gpu.new_state(1));
        cst.append(lm.new_state(1));
        const std::vector<std::int32_t> t3{1, 2, 3};
        CHECK(rel_err(gpu.step(t3, st), lm.step(t3, cst)) <= 1e-4);
    }
}

TEST_CASE("cuda model: bad input gets clear errors") {
    SKIP_WITHOUT_GPU();
    const fs::path dir = kMambaData / "tiny-tied" / "hf-f32";
    if (!have(dir)) return;
    const MambaLm lm = load_mamba_lm(dir);
    const MambaLm gpu = lm.to(Device::Cuda);
    const std::vector<std::int32_t> bad{1, lm.cfg.vocab_size};
    CHECK_THROWS_WITH_AS(gpu.forward(bad), doctest::Contains("outside the embedding"), Error);
    CHECK_THROWS_WITH_AS(gpu.forward(std::vector<std::int32_t>{}), doctest::Contains("non-empty prompt"), Error);
    MambaState st = gpu.new_state(2);
    CHECK_THROWS_WITH_AS(gpu.step(std::vector<std::int32_t>{1}, st), doctest::Contains("expected 2 tokens"), Error);
    const std::vector<std::int32_t> ok{1, 2};
    CHECK_THROWS_WITH_AS(gpu.forward_hidden(gpu.embed(ok), &st, 2), doctest::Contains("state slot"), Error);
    MambaState on_cpu = lm.new_state(2);
    CHECK_THROWS_WITH_AS(gpu.step(std::vector<std::int32_t>{1, 2}, on_cpu), doctest::Contains("on cuda"), Error);
    CHECK_THROWS_WITH_AS(lm.logits(gpu.embed(ok)), doctest::Contains("expected every operand"), Error);
}

// Model::load(dir, {.device}) then a Session gives transformers' greedy continuation on the CPU and on the GPU.
TEST_CASE("cuda model: Model::load on cpu and cuda reproduces the greedy continuation through a Session") {
    SKIP_WITHOUT_GPU();
    const fs::path base = kMambaData / "tiny-untied";
    if (!have(base / "golden.safetensors")) return;
    const WeightStore golden = WeightStore::open(base / "golden.safetensors");
    const auto ids = to_ids(golden.get("input_ids"));
    const auto greedy = to_ids(golden.get("greedy_ids"));
    for (Device d : {Device::Cpu, Device::Cuda}) {
        CAPTURE(device_name(d));
        ModelOptions o;
        o.device = d;
        const Model m = Model::load(base / "hf-f32", o);
        CHECK(m.lm().device() == d);
        Session s(m);
        Request r;
        r.ids = ids;
        r.max_tokens = int(greedy.size());
        r.ignore_eos = true;
        CHECK(s.generate(r).ids == greedy);
    }
}

// ---- the decode kernels of cuda/decode.hpp at the sizes the tiny fixtures do not reach (16-byte paths, k splits) ----
namespace {

using vlmamba::test::DevBuf;
using vlmamba::test::uniform;

std::vector<std::uint16_t> bf16_of(std::vector<float>& v) {  // rounds v in place and returns the bits
    std::vector<std::uint16_t> r(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
        r[i] = f32_to_bf16(v[i]);
        v[i] = bf16_to_f32(r[i]);
    }
    return r;
}

double max_rel(const std::vector<float>& got, const std::vector<double>& want) {
    double num = 0, den = 1e-30;
    for (std::size_t i = 0; i < got.size(); ++i) {
        num = std::max(num, std::fabs(got[i] - want[i]));
        den = std::max(den, std::fabs(want[i]));
    }
    return num / den;
}

}  // namespace

TEST_CASE("cuda decode: gemv matches a double-precision product (f32 and bf16 weights, odd shapes, k splits)") {
    SKIP_WITHOUT_GPU();
    std::mt19937 g(17);
    for (auto [m, n, k, ldx] : {std::array{1, 1, 1, 0}, std::array{1, 10240, 2560, 0}, std::array{1, 192, 5120, 0},
                                std::array{3, 37, 23, 29}, std::array{8, 130, 264, 0}, std::array{5, 5120, 160, 192},
                                std::array{2, 96, 40, 0}, std::array{7, 33, 1000, 1004}}) {
        for (DType wt : {DType::F32, DType::BF16}) {
            CAPTURE(m); CAPTURE(n); CAPTURE(k); CAPTURE(ldx); CAPTURE(int(wt));
            const int lx = ldx ? ldx : k;
            auto x = uniform(g, std::size_t(m) * lx), w = uniform(g, std::size_t(n) * k);
            std::vector<double> ref(std::size_t(m) * n);
            DevBuf<float> dx(x), dy(std::size_t(m) * n);
            DeviceBuffer dw;
            if (wt == DType::BF16) {
                const auto bits = bf16_of(w);
                dw = DeviceBuffer(bits.size() * 2);
                cuda::copy_h2d(dw.get(), bits.data(), bits.size() * 2);
            } else {
                dw = DeviceBuffer(w.size() * 4);
                cuda::copy_h2d(dw.get(), w.data(), w.size() * 4);
            }
            for (int i = 0; i < m; ++i)
                for (int j = 0; j < n; ++j) {
                    double s = 0;
                    for (int q = 0; q < k; ++q) s += double(x[std::size_t(i) * lx + q]) * w[std::size_t(j) * k + q];
                    ref[std::size_t(i) * n + j] = s;
                }
            cuda::gemv({m, n, k, dx.p(), dw.get(), wt, dy.p(), ldx, 0});
            CHECK(max_rel(dy.get(), ref) <= 1e-5);
            // the fused pre-norm (x rows RMS-normalised, times norm_w) and the accumulating epilogue
            auto nw = uniform(g, std::size_t(k), 0.5f, 1.5f);
            std::vector<double> ref2(ref.size());
            for (int i = 0; i < m; ++i) {
                double ss = 0;
                for (int q = 0; q < k; ++q) ss += double(x[std::size_t(i) * lx + q]) * x[std::size_t(i) * lx + q];
                const double inv = 1.0 / std::sqrt(ss / k + 1e-5);
                for (int j = 0; j < n; ++j) {
                    double s = 0;
                    for (int q = 0; q < k; ++q)
                        s += double(x[std::size_t(i) * lx + q]) * inv * nw[q] * w[std::size_t(j) * k + q];
                    ref2[std::size_t(i) * n + j] = ref[std::size_t(i) * n + j] + s;  // y held the plain product
                }
            }
            DevBuf<float> dnw(nw);
            cuda::GemvArgs ga{m, n, k, dx.p(), dw.get(), wt, dy.p(), ldx, 0};
            ga.norm_w = dnw.p();
            ga.norm_eps = 1e-5f;
            ga.accumulate = true;
            cuda::gemv(ga);
            CHECK(max_rel(dy.get(), ref2) <= 1e-5);
        }
    }
}

TEST_CASE("cuda decode: the state update with dt_proj fused equals dt_proj then the reference update") {
    SKIP_WITHOUT_GPU();
    std::mt19937 g(23);
    for (auto [B, E, N, R, ld] : {std::array{1, 5120, 16, 160, 192}, std::array{3, 37, 16, 7, 0},
                                  std::array{8, 130, 17, 16, 50}, std::array{2, 64, 64, 40, 0}}) {
        for (DType wt : {DType::F32, DType::BF16}) {
            CAPTURE(B); CAPTURE(E); CAPTURE(N); CAPTURE(R); CAPTURE(int(wt));
            const int lx = ld ? ld : R;
            auto h0 = uniform(g, std::size_t(B) * E * N), x = uniform(g, std::size_t(B) * E);
            auto dtx = uniform(g, std::size_t(B) * lx, -0.3f, 0.3f), w = uniform(g, std::size_t(E) * R, -0.3f, 0.3f);
            auto A = uniform(g, std::size_t(E) * N, -2.0f, -0.05f), Bm = uniform(g, std::size_t(B) * N);
            auto Cm = uniform(g, std::size_t(B) * N), D = uniform(g, E), z = uniform(g, std::size_t(B) * E);
            auto bias = uniform(g, E, -2.0f, 0.5f);
            DeviceBuffer dw;
            if (wt == DType::BF16) {
                const auto bits = bf16_of(w);
                dw = DeviceBuffer(bits.size() * 2);
                cuda::copy_h2d(dw.get(), bits.data(), bits.size() * 2);
            } else {
                dw = DeviceBuffer(w.size() * 4);
                cuda::copy_h2d(dw.get(), w.data(), w.size() * 4);
            }
            std::vector<float> dt(std::size_t(B) * E);  // dt_proj on the host, in double
            for (int b = 0; b < B; ++b)
                for (int c = 0; c < E; ++c) {
                    double s = 0;
                    for (int r = 0; r < R; ++r) s += double(dtx[std::size_t(b) * lx + r]) * w[std::size_t(c) * R + r];
                    dt[std::size_t(b) * E + c] = float(s);
                }
            std::vector<float> h_ref = h0, y_ref(std::size_t(B) * E);
            StateUpdateArgs a{};
            a.batch = B, a.d_inner = E, a.d_state = N;
            a.h = h_ref.data(), a.x = x.data(), a.delta = dt.data(), a.A = A.data(), a.Bm = Bm.data(), a.Cm = Cm.data();
            a.D = D.data(), a.z = z.data(), a.delta_bias = bias.data(), a.y = y_ref.data();
            ref::selective_state_update(a);
            DevBuf<float> dh(h0), dx(x), ddtx(dtx), dA(A), dB(Bm), dC(Cm), dD(D), dz(z), dbias(bias), dy(y_ref.size());
            StateUpdateArgs d{};
            d.batch = B, d.d_inner = E, d.d_state = N;
            d.h = dh.p(), d.x = dx.p(), d.A = dA.p(), d.Bm = dB.p(), d.Cm = dC.p(), d.D = dD.p(), d.z = dz.p();
            d.delta_bias = dbias.p(), d.y = dy.p();
            cuda::selective_state_update_dt({d, ddtx.p(), dw.get(), wt, R, ld});
            std::vector<double> yd(y_ref.begin(), y_ref.end()), hd(h_ref.begin(), h_ref.end());
            CHECK(max_rel(dy.get(), yd) <= 1e-4);
            CHECK(max_rel(dh.get(), hd) <= 1e-4);
        }
    }
}
