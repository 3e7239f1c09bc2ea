// Selective scan: vectorised variants vs the scalar reference, the vector math vs libm, argument
// validation, and the decode step vs the scan run one step at a time.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "test_helpers.hpp"
#include "vlmamba/ops/selective_scan.hpp"

// GCC 12.2 bug 105593: spurious -Wuninitialized from AVX-512 intrinsics inlined into these tests.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace {

using namespace vlmamba;
using Vf = cpu::scan_detail::Vf;
using Arch = cpu::scan_detail::Arch;
constexpr int W = cpu::scan_detail::W;
using vlmamba::test::uniform;

// max |a - b| / max |b|
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        num = std::fmax(num, std::fabs(double(a[i]) - b[i]));
        den = std::fmax(den, std::fabs(double(b[i])));
    }
    return den > 0 ? num / den : num;
}

// Inputs of one scan in realistic ranges, owned; args() points into them.
struct ScanCase {
    int B, L, E, N;
    bool use_D, use_z, use_bias, softplus, h_in, h_out;
    int pad = 0;  // extra elements per row: exercises the ld_* strides
    std::vector<float> u, delta, A, Bm, Cm, D, z, bias, h, y;

    ScanCase(int B_, int L_, int E_, int N_, unsigned flags, std::uint32_t seed, int pad_ = 0)
        : B(B_), L(L_), E(E_), N(N_), use_D(flags & 1), use_z(flags & 2), use_bias(flags & 4),
          softplus(flags & 8), h_in(flags & 16), h_out(flags & 32), pad(pad_) {
        std::mt19937 g(seed);
        const std::size_t rows = std::size_t(B) * L, le = E + pad, ln = N + pad;
        u = uniform(g, rows * le, -2.f, 2.f);                                 // (B, L, E + pad)
        delta = softplus ? uniform(g, rows * le, -6.f, 1.f)                   // pre-softplus
                         : uniform(g, rows * le, 0.001f, 1.3f);               // dt itself
        A = uniform(g, std::size_t(E) * N, -16.f, -1.f);                      // (E, N)
        Bm = uniform(g, rows * ln, -1.5f, 1.5f);                              // (B, L, N + pad)
        Cm = uniform(g, rows * ln, -1.5f, 1.5f);                              // (B, L, N + pad)
        D = uniform(g, E, -1.f, 1.f);                                         // (E)
        z = uniform(g, rows * le, -4.f, 4.f);                                 // (B, L, E + pad)
        bias = uniform(g, E, -1.f, 0.5f);                                     // (E)
        h = uniform(g, std::size_t(B) * E * N, -1.f, 1.f);                    // (B, E, N)
        y.assign(rows * le, 0.f);                                             // (B, L, E + pad)
        if (pad) {  // the gaps must never be read
            const float nan = std::numeric_limits<float>::quiet_NaN();
            for (std::size_t r = 0; r < rows; ++r) {
                for (int c = E; c < E + pad; ++c) u[r * le + c] = delta[r * le + c] = z[r * le + c] = nan;
                for (int n = N; n < N + pad; ++n) Bm[r * ln + n] = Cm[r * ln + n] = nan;
            }
        }
    }

    ScanArgs args() {
        ScanArgs a{};
        a.batch = B, a.length = L, a.d_inner = E, a.d_state = N;
        a.u = u.data(), a.delta = delta.data(), a.A = A.data(), a.Bm = Bm.data(), a.Cm = Cm.data();
        a.D = use_D ? D.data() : nullptr;
        a.z = use_z ? z.data() : nullptr;
        a.delta_bias = use_bias ? bias.data() : nullptr;
        a.delta_softplus = softplus;
        a.h = h_in || h_out ? h.data() : nullptr;
        a.h_in = h_in;
        a.y = y.data();
        if (pad) a.ld_u = a.ld_delta = a.ld_z = a.ld_y = E + pad, a.ld_bc = N + pad;
        return a;
    }

    // y without the padding gaps
    std::vector<float> y_dense() const {
        std::vector<float> out;
        for (std::size_t r = 0; r < std::size_t(B) * L; ++r)
            for (int c = 0; c < E; ++c) out.push_back(y[r * (E + pad) + c]);
        return out;
    }
};

// Runs variant V and the reference on copies of one case; returns (y error, h error).
template <class V>
std::pair<double, double> compare_to_ref(const ScanCase& base, int n_threads = 0) {
    ScanCase r = base, f = base;
    selective_scan<ScanRef>(r.args());
    selective_scan<V>(f.args(), n_threads);
    return {rel_err(f.y_dense(), r.y_dense()), rel_err(f.h, r.h)};
}

// Error of a float result in ulps of the double-precision truth.
double ulps(float got, double want) {
    if (std::isnan(want)) return std::isnan(got) ? 0 : 1e9;
    if (std::isinf(want)) return got == float(want) ? 0 : 1e9;
    const float w = float(want);
    const double ulp = std::fabs(double(std::nextafter(w, std::numeric_limits<float>::infinity())) - w);
    return std::fabs(double(got) - want) / std::fmax(ulp, std::numeric_limits<float>::denorm_min());
}

// Max ulp error of f (batch) vs truth (double) over the points xs.
template <class F, class T>
double max_ulps(const std::vector<float>& xs, F f, T truth, float* worst_x = nullptr) {
    double worst = 0;
    alignas(64) float in[W], out[W];
    for (std::size_t i = 0; i < xs.size(); i += W) {
        for (int l = 0; l < W; ++l) in[l] = xs[std::min(i + l, xs.size() - 1)];
        f(Vf::load_aligned(in)).store_aligned(out);
        for (int l = 0; l < W; ++l) {
            const double e = ulps(out[l], truth(double(in[l])));
            if (e > worst) {
                worst = e;
                if (worst_x) *worst_x = in[l];
            }
        }
    }
    return worst;
}

std::vector<float> sweep(float lo, float hi, int n) {
    std::vector<float> xs(n);
    for (int i = 0; i < n; ++i) xs[i] = lo + (hi - lo) * float(i) / float(n - 1);
    return xs;
}

}  // namespace

TEST_CASE("vec math: exp, exp2, log, log1p, softplus, silu vs libm in double") {
    float wx = 0;
    // exp: normal results within 2 ulp; denormal results are absolute errors of a few 1e-45.
    const auto xs_exp = sweep(-87.3f, 88.7f, 400001);
    CHECK(max_ulps(xs_exp, [](Vf x) { return vec::exp<Arch>(x); }, [](double x) { return std::exp(x); }, &wx) <= 2.0);
    const auto xs_exp2 = sweep(-126.f, 127.9f, 400001);
    CHECK(max_ulps(xs_exp2, [](Vf x) { return vec::exp2<Arch>(x); }, [](double x) { return std::exp2(x); }) <= 2.0);
    // Tiny and huge: underflow to 0 (or a denormal), overflow to inf, NaN stays NaN.
    alignas(64) float in[W], out[W];
    const float special[8] = {-1e30f, -200.f, -104.f, 89.f, 1000.f, std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()};
    for (int l = 0; l < W; ++l) in[l] = special[l % 8];
    vec::exp<Arch>(Vf::load_aligned(in)).store_aligned(out);
    for (int l = 0; l < W; ++l) {
        CAPTURE(in[l]);
        const float want = std::exp(in[l]);
        if (std::isnan(want)) CHECK(std::isnan(out[l]));
        else if (std::isinf(want)) CHECK(out[l] == want);
        else CHECK(std::fabs(out[l] - want) <= 2e-45f);
    }
    vec::exp2<Arch>(Vf::load_aligned(in)).store_aligned(out);
    for (int l = 0; l < W; ++l) {
        CAPTURE(in[l]);
        const float want = std::exp2(in[l]);
        if (std::isnan(want)) CHECK(std::isnan(out[l]));
        else if (std::isinf(want)) CHECK(out[l] == want);
        else CHECK(std::fabs(out[l] - want) <= 2e-45f);
    }

    // log over positive normals (log-spaced), log1p down to tiny arguments.
    std::vector<float> xs_log;
    for (double e = -125.9; e < 127.9; e += 0.0007) xs_log.push_back(float(std::exp2(e)));
    CHECK(max_ulps(xs_log, [](Vf x) { return vec::log<Arch>(x); }, [](double x) { return std::log(x); }) <= 2.0);
    std::vector<float> xs_l1p;
    for (double e = -140; e < 40; e += 0.0007) xs_l1p.push_back(float(std::exp2(e)));
    CHECK(max_ulps(xs_l1p, [](Vf x) { return vec::log1p<Arch>(x); }, [](double x) { return std::log1p(x); }) <= 3.0);

    // softplus (threshold 20, as PyTorch) and silu over a wide range.
    const auto xs_act = sweep(-100.f, 100.f, 400001);
    auto softplus_truth = [](double x) { return x > 20 ? x : std::log1p(std::exp(x)); };
    CHECK(max_ulps(xs_act, [](Vf x) { return vec::softplus<Arch>(x); }, softplus_truth, &wx) <= 3.0);
    CAPTURE(wx);
    // silu carries the exp error: within 4 ulp while exp(-x) is finite.
    auto silu_truth = [](double x) { return x / (1 + std::exp(-x)); };
    CHECK(max_ulps(sweep(-88.f, 100.f, 400001), [](Vf x) { return vec::silu<Arch>(x); }, silu_truth, &wx) <= 4.0);
    // Below that it returns -0, as PyTorch's fp32 x / (1 + exp(-x)) does.
    for (int l = 0; l < W; ++l) in[l] = -89.f - 10.f * l;
    vec::silu<Arch>(Vf::load_aligned(in)).store_aligned(out);
    for (int l = 0; l < W; ++l) CHECK(out[l] == ref::silu(in[l]));
    // The scalar reference agrees with PyTorch's formula exactly at the threshold.
    CHECK(ref::softplus(20.5f) == 20.5f);
    CHECK(ref::softplus(-200.f) == 0.f);
}

TEST_CASE("selective_scan: vectorised variants match the reference over odd shapes and options") {
    std::mt19937 g(1234);
    int n_cases = 0;
    for (int L : {1, 2, 7, 64, 333, 1000})
        for (int E : {1, 3, 17, 40, 100})
            for (int N : {1, 8, 16, 64, 5}) {
                const unsigned flags = unsigned(g()) & 63u;  // D, z, bias, softplus, h_in, h_out
                const int B = (g() & 1) ? 3 : 1;
                ScanCase c(B, L, E, N, flags, std::uint32_t(g()));
                CAPTURE(B);
                CAPTURE(L);
                CAPTURE(E);
                CAPTURE(N);
                CAPTURE(flags);
                const auto [ey, eh] = compare_to_ref<ScanChannels>(c);
                CHECK(ey <= 1e-5);
                CHECK(eh <= 1e-5);
                const auto [sy, sh] = compare_to_ref<ScanStates>(c);
                CHECK(sy <= 1e-5);
                CHECK(sh <= 1e-5);
                ++n_cases;
            }
    CHECK(n_cases == 150);
}

TEST_CASE("selective_scan: every option combination, with strided rows") {
    for (unsigned flags = 0; flags < 64; ++flags) {
        for (int pad : {0, 3}) {
            ScanCase c(2, 37, 21, 16, flags, 99 + flags, pad);
            CAPTURE(flags);
            CAPTURE(pad);
            const auto [ey, eh] = compare_to_ref<ScanChannels>(c);
            CHECK(ey <= 1e-5);
            CHECK(eh <= 1e-5);
            const auto [sy, sh] = compare_to_ref<ScanStates>(c);
            CHECK(sy <= 1e-5);
            CHECK(sh <= 1e-5);
            ScanCase r = c;  // the padding gaps of y are left untouched
            selective_scan<ScanChannels>(r.args());
            for (std::size_t i = 0; i < r.y.size(); ++i)
                if (int(i % std::size_t(21 + pad)) >= 21) CHECK(r.y[i] == 0.f);
        }
    }
}

TEST_CASE("selective_scan: the result does not depend on the thread count") {
    ScanCase c(3, 129, 77, 16, 63, 7);
    ScanCase one = c, two = c, four = c;
    selective_scan<ScanChannels>(one.args(), 1);
    selective_scan<ScanChannels>(two.args(), 2);
    selective_scan<ScanChannels>(four.args(), 4);
    CHECK(one.y == two.y);
    CHECK(one.y == four.y);
    CHECK(one.h == two.h);
}

TEST_CASE("selective_scan: splitting the sequence and carrying h equals one scan") {
    for (int N : {16, 7}) {
        const int L = 50, L1 = 19, E = 35;
        ScanCase full(1, L, E, N, 1 | 2 | 4 | 8 | 32, 5);  // h out, no h in
        ScanCase parts = full;
        selective_scan<ScanChannels>(full.args());
        // First L1 steps, then the rest from the carried state.
        ScanArgs a = parts.args();
        a.length = L1;
        selective_scan<ScanChannels>(a);
        a.u += L1 * E, a.delta += L1 * E, a.z += L1 * E, a.y += L1 * E, a.Bm += L1 * N, a.Cm += L1 * N;
        a.length = L - L1;
        a.h_in = true;
        selective_scan<ScanChannels>(a);
        CAPTURE(N);
        CHECK(rel_err(parts.y, full.y) <= 1e-6);
        CHECK(rel_err(parts.h, full.h) <= 1e-6);
    }
}

TEST_CASE("selective_scan: sequences with their own A, D and dt bias (strides) equal one scan each") {
    const int B = 3, L = 21, E = 13, N = 5;
    std::mt19937 g(11);
    ScanCase all(B, L, E, N, 1 | 2 | 4 | 8 | 16 | 32, 7, /*pad=*/2);
    const std::vector<float> A = uniform(g, std::size_t(B) * E * N, -8.f, -0.5f), D = uniform(g, std::size_t(B) * E),
                             bias = uniform(g, std::size_t(B) * E, -1.f, 0.5f);
    ScanCase each = all;
    ScanArgs a = all.args();
    a.A = A.data(), a.D = D.data(), a.delta_bias = bias.data();
    a.stride_A = E * N, a.stride_D = a.stride_bias = E;
    selective_scan<ScanChannels>(a);
    for (int b = 0; b < B; ++b) {  // sequence b alone, with parameter set b
        ScanArgs s = each.args();
        const std::int64_t row = std::int64_t(b) * L * (E + 2), brow = std::int64_t(b) * L * (N + 2);
        s.batch = 1;
        s.u += row, s.delta += row, s.z += row, s.y += row, s.Bm += brow, s.Cm += brow;
        s.h += std::int64_t(b) * E * N;
        s.A = A.data() + b * E * N, s.D = D.data() + b * E, s.delta_bias = bias.data() + b * E;
        selective_scan<ScanRef>(s);
    }
    CHECK(rel_err(all.y_dense(), each.y_dense()) <= 1e-5);
    CHECK(rel_err(all.h, each.h) <= 1e-5);
}

TEST_CASE("selective_state_update equals the scan run one step at a time") {
    for (auto [N, E] : {std::pair{16, 19}, std::pair{5, 300}, std::pair{64, 33}}) {
        const int B = 2, L = 23;
        ScanCase c(B, L, E, N, 1 | 2 | 4 | 8 | 16 | 32, 11 + N);
        ScanCase scan = c;
        selective_scan<ScanRef>(scan.args());  // (B, L, E), final h
        std::vector<float> h_ref = c.h, h_vec = c.h;  // (B, E, N) initial
        std::vector<float> y_ref(std::size_t(B) * L * E), y_vec(y_ref.size());
        for (int t = 0; t < L; ++t) {
            for (int variant = 0; variant < 2; ++variant) {
                StateUpdateArgs s{};
                s.batch = B, s.d_inner = E, s.d_state = N;
                s.h = variant ? h_vec.data() : h_ref.data();
                // Row b of step t is at (b, t) in the (B, L, .) inputs: batch row stride L * E.
                s.x = c.u.data() + t * E, s.delta = c.delta.data() + t * E, s.z = c.z.data() + t * E;
                s.Bm = c.Bm.data() + t * N, s.Cm = c.Cm.data() + t * N;
                s.A = c.A.data(), s.D = c.D.data(), s.delta_bias = c.bias.data();
                s.delta_softplus = true;
                s.y = (variant ? y_vec.data() : y_ref.data()) + t * E;
                s.ld_x = s.ld_delta = s.ld_z = s.ld_y = L * E;
                s.ld_bc = L * N;
                if (variant) selective_state_update<ScanChannels>(s);
                else selective_state_update<ScanRef>(s);
            }
        }
        CAPTURE(N);
        CAPTURE(E);
        CHECK(rel_err(y_ref, scan.y) <= 1e-6);  // same arithmetic as the scan reference
        CHECK(rel_err(h_ref, scan.h) <= 1e-6);
        CHECK(rel_err(y_vec, scan.y) <= 1e-5);
        CHECK(rel_err(h_vec, scan.h) <= 1e-5);
    }
}

TEST_CASE("selective_scan: check() rejects bad arguments with a message") {
    ScanCase c(1, 4, 8, 16, 0, 3);
    auto throws_with = [](ScanArgs a, const std::string& part) {
        try {
            selective_scan<ScanChannels>(a);
        } catch (const Error& e) {
            const std::string msg = e.what();
            CAPTURE(msg);
            CHECK(msg.rfind("[selective_scan] expected", 0) == 0);
            CHECK(msg.find(part) != std::string::npos);
            return;
        }
        FAIL("no exception for ", part);
    };
    ScanArgs a = c.args();
    a.d_state = 65;
    throws_with(a, "got 65");
    a = c.args(), a.d_state = 0;
    throws_with(a, "d_state");
    a = c.args(), a.u = nullptr;
    throws_with(a, "null u");
    a = c.args(), a.Cm = nullptr;
    throws_with(a, "null Cm");
    a = c.args(), a.length = 0;
    throws_with(a, "length");
    a = c.args(), a.h_in = true, a.h = nullptr;
    throws_with(a, "h_in");
    a = c.args(), a.ld_u = 5;
    throws_with(a, "ld_u");
    CHECK_THROWS_AS(selective_scan<ScanRef>(a), Error);
    CHECK_THROWS_AS(selective_scan<ScanStates>(a), Error);

    StateUpdateArgs s{};
    s.batch = 1, s.d_inner = 8, s.d_state = 16;
    CHECK_THROWS_WITH_AS(selective_state_update(s),
                         "[selective_state_update] expected non-null h, x, delta, A, Bm, Cm and y, got null h", Error);
}
