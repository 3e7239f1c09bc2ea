// Connector tests: cross-scan orders, the SS2D VssBlock and the three connectors against a naive float64 model
// written here (direct loops over grid positions), a user-defined snake policy, loading and config errors, and the
// golden fixtures of the PyTorch reference (tests/data/connectors, skipped with a message when absent).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <map>
#include <vector>

#include "../../examples/custom_scan/snake_scan.hpp"  // SnakeScan: a user-defined policy, outside the library
#include "test_helpers.hpp"
#include "vlmamba/io/safetensors.hpp"
#include "vlmamba/io/weights.hpp"
#include "vlmamba/models/connector.hpp"
#include "vlmamba/models/load_mamba.hpp"

using namespace vlmamba;
namespace fs = std::filesystem;
using vlmamba::test::rel_err;

namespace {

// Not a policy: no K.
struct NoK {
    static constexpr const char* name = "x";
    static std::int64_t grid_index(int, std::int64_t t, std::int64_t, std::int64_t) { return t; }
};
static_assert(!ScanPolicy<NoK>);

// Visits the same cell twice when W > 1.
struct BadScan {
    static constexpr int K = 1;
    static constexpr const char* name = "bad";
    static std::int64_t grid_index(int, std::int64_t t, std::int64_t, std::int64_t W) { return t / W * W; }
};

using Grid = std::vector<std::array<std::int64_t, 2>>;  // sequence of (h, w)

// Direction sequences written out as nested loops, independent of the library's policies.
Grid rows(std::int64_t H, std::int64_t W) {
    Grid g;
    for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t w = 0; w < W; ++w) g.push_back({h, w});
    return g;
}
Grid cols(std::int64_t H, std::int64_t W) {
    Grid g;
    for (std::int64_t w = 0; w < W; ++w)
        for (std::int64_t h = 0; h < H; ++h) g.push_back({h, w});
    return g;
}
Grid snake(std::int64_t H, std::int64_t W) {
    Grid g;
    for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t j = 0; j < W; ++j) g.push_back({h, h % 2 ? W - 1 - j : j});
    return g;
}
Grid reversed(Grid g) {
    std::reverse(g.begin(), g.end());
    return g;
}
std::vector<Grid> directions(const std::string& scan, std::int64_t H, std::int64_t W) {
    if (scan == "bsm") return {rows(H, W), reversed(rows(H, W))};
    if (scan == "csm") return {rows(H, W), cols(H, W), reversed(rows(H, W)), reversed(cols(H, W))};
    return {snake(H, W), reversed(snake(H, W))};
}

// --- float64 naive model ----------------------------------------------------------------------------------------

using Mat = std::vector<std::vector<double>>;  // [row][col]

Mat to_mat(const Tensor& t) {
    const Tensor c = t.to(DType::F32);
    const std::int64_t R = c.size(0), C = c.numel() / std::max<std::int64_t>(R, 1);
    Mat m(R, std::vector<double>(C));
    for (std::int64_t r = 0; r < R; ++r)
        for (std::int64_t j = 0; j < C; ++j) m[r][j] = c.data<float>()[r * C + j];
    return m;
}
Tensor to_tensor(const Mat& m) {
    Tensor t = Tensor::empty({std::int64_t(m.size()), std::int64_t(m[0].size())});
    for (std::size_t r = 0; r < m.size(); ++r)
        for (std::size_t j = 0; j < m[0].size(); ++j) t.data<float>()[r * m[0].size() + j] = float(m[r][j]);
    return t;
}
// x (L, in) · w (out, in)ᵀ + b
Mat lin(const Mat& x, const Tensor& w, const Tensor& b = {}) {
    const Mat wm = to_mat(w);
    Mat y(x.size(), std::vector<double>(wm.size()));
    for (std::size_t r = 0; r < x.size(); ++r)
        for (std::size_t o = 0; o < wm.size(); ++o) {
            double acc = b.defined() ? b.at({std::int64_t(o)}) : 0.0;
            for (std::size_t i = 0; i < x[r].size(); ++i) acc += x[r][i] * wm[o][i];
            y[r][o] = acc;
        }
    return y;
}
double silu(double v) { return v / (1 + std::exp(-v)); }
double gelu(double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }
double softplus(double v) { return v > 20 ? v : std::log1p(std::exp(v)); }
Mat apply(Mat m, double (*f)(double)) {
    for (auto& r : m)
        for (auto& v : r) v = f(v);
    return m;
}
Mat add(Mat a, const Mat& b) {
    for (std::size_t r = 0; r < a.size(); ++r)
        for (std::size_t j = 0; j < a[r].size(); ++j) a[r][j] += b[r][j];
    return a;
}
Mat lnorm(const Mat& x, const Tensor& w, const Tensor& b) {
    Mat y = x;
    for (std::size_t r = 0; r < x.size(); ++r) {
        const double n = double(x[r].size());
        double mu = 0, var = 0;
        for (double v : x[r]) mu += v / n;
        for (double v : x[r]) var += (v - mu) * (v - mu) / n;
        for (std::size_t j = 0; j < x[r].size(); ++j)
            y[r][j] = (x[r][j] - mu) / std::sqrt(var + 1e-5) * w.at({std::int64_t(j)}) + b.at({std::int64_t(j)});
    }
    return y;
}

using Weights = std::map<std::string, Tensor>;

struct NaiveVss {
    std::vector<Mat> scan_out;  // per direction (L, D_i) in its own order
    Mat merged, output;
};

// SS2D over the grid, straight from SPEC §2.3; `p` is the tensors' name prefix ("...vss.").
NaiveVss naive_vss(const Weights& w, const std::string& p, const Mat& x, std::int64_t H, std::int64_t W,
                   const std::vector<Grid>& dirs) {
    const Tensor& conv_w = w.at(p + "conv2d.weight");  // (E, 1, k, k)
    const std::int64_t E = conv_w.size(0), k = conv_w.size(3), pad = k / 2;
    const std::int64_t N = w.at(p + "A_logs").size(1), R = w.at(p + "dt_projs_weight").size(2);
    const Mat xz = lin(x, w.at(p + "in_proj.weight"));
    // depthwise conv + SiLU, per grid cell
    Mat xc(H * W, std::vector<double>(E));
    for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t q = 0; q < W; ++q)
            for (std::int64_t c = 0; c < E; ++c) {
                double acc = w.at(p + "conv2d.bias").at({c});
                for (std::int64_t i = 0; i < k; ++i)
                    for (std::int64_t j = 0; j < k; ++j) {
                        const std::int64_t hh = h + i - pad, ww = q + j - pad;
                        if (hh >= 0 && hh < H && ww >= 0 && ww < W)
                            acc += conv_w.at({c, 0, i, j}) * xz[hh * W + ww][c];
                    }
                xc[h * W + q][c] = silu(acc);
            }
    const Tensor& xw = w.at(p + "x_proj_weight");    // (K, R + 2N, E)
    const Tensor& dw = w.at(p + "dt_projs_weight");  // (K, E, R)
    const Tensor& db = w.at(p + "dt_projs_bias");    // (K, E)
    const Tensor& al = w.at(p + "A_logs");           // (K·E, N)
    const Tensor& ds = w.at(p + "Ds");               // (K·E)
    NaiveVss out;
    out.merged.assign(H * W, std::vector<double>(E, 0.0));
    for (std::size_t d = 0; d < dirs.size(); ++d) {
        const std::int64_t kd = std::int64_t(d);
        Mat y(H * W, std::vector<double>(E));
        Mat st(E, std::vector<double>(N, 0.0));  // h[c][n]
        for (std::int64_t t = 0; t < H * W; ++t) {
            const auto [h, q] = dirs[d][t];
            const std::vector<double>& u = xc[h * W + q];
            std::vector<double> proj(R + 2 * N, 0.0);  // [dt_low, B, C] = x_proj[d] · u
            for (std::int64_t row = 0; row < R + 2 * N; ++row)
                for (std::int64_t e = 0; e < E; ++e) proj[row] += xw.at({kd, row, e}) * u[e];
            for (std::int64_t c = 0; c < E; ++c) {
                double dt = db.at({kd, c});
                for (std::int64_t r = 0; r < R; ++r) dt += dw.at({kd, c, r}) * proj[r];
                dt = softplus(dt);
                double yt = ds.at({kd * E + c}) * u[c];
                for (std::int64_t n = 0; n < N; ++n) {
                    const double A = -std::exp(double(al.at({kd * E + c, n})));
                    st[c][n] = std::exp(dt * A) * st[c][n] + dt * proj[R + n] * u[c];
                    yt += st[c][n] * proj[R + N + n];
                }
                y[t][c] = yt;
                out.merged[h * W + q][c] += yt;
            }
        }
        out.scan_out.push_back(y);
    }
    Mat g = lnorm(out.merged, w.at(p + "out_norm.weight"), w.at(p + "out_norm.bias"));
    for (std::int64_t r = 0; r < H * W; ++r)
        for (std::int64_t c = 0; c < E; ++c) g[r][c] *= silu(xz[r][E + c]);
    out.output = lin(g, w.at(p + "out_proj.weight"));
    return out;
}

// --- random weights ----------------------------------------------------------------------------------------------

Tensor uniform_tensor(Shape s, std::mt19937& g, float lo, float hi) {
    std::uniform_real_distribution<float> d(lo, hi);
    Tensor t = Tensor::empty(std::move(s));
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(g);
    return t;
}
Tensor normal(Shape s, std::mt19937& g, float std) {
    std::normal_distribution<float> d(0.f, std);
    Tensor t = Tensor::empty(std::move(s));
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(g);
    return t;
}

// SS2D weights with activations of order 1 (SPEC §8.4).
void add_vss_weights(Weights& w, const std::string& p, std::int64_t C, std::int64_t E, std::int64_t N,
                     std::int64_t R, std::int64_t K, std::int64_t k, std::mt19937& g) {
    w[p + "in_proj.weight"] = normal({2 * E, C}, g, 1.f / std::sqrt(float(C)));
    w[p + "conv2d.weight"] = normal({E, 1, k, k}, g, 0.4f);
    w[p + "conv2d.bias"] = normal({E}, g, 0.2f);
    w[p + "x_proj_weight"] = normal({K, R + 2 * N, E}, g, 1.f / std::sqrt(float(E)));
    w[p + "dt_projs_weight"] = normal({K, E, R}, g, 1.f / std::sqrt(float(R)));
    Tensor dtb = uniform_tensor({K, E}, g, std::log(1e-2f), std::log(0.5f));  // softplus(bias) in [0.01, 0.5]
    for (std::int64_t i = 0; i < dtb.numel(); ++i) {
        const float dt = std::exp(dtb.data<float>()[i]);
        dtb.data<float>()[i] = dt + std::log(-std::expm1(-dt));
    }
    w[p + "dt_projs_bias"] = dtb;
    Tensor al = uniform_tensor({K * E, N}, g, 0.f, std::log(16.f));
    w[p + "A_logs"] = al;
    w[p + "Ds"] = uniform_tensor({K * E}, g, 0.5f, 1.5f);
    w[p + "out_norm.weight"] = uniform_tensor({E}, g, 0.8f, 1.2f);
    w[p + "out_norm.bias"] = normal({E}, g, 0.1f);
    w[p + "out_proj.weight"] = normal({C, E}, g, 1.f / std::sqrt(float(E)));
}

void add_linear(Weights& w, const std::string& p, std::int64_t out, std::int64_t in, std::mt19937& g) {
    w[p + "weight"] = normal({out, in}, g, 1.f / std::sqrt(float(in)));
    w[p + "bias"] = normal({out}, g, 0.1f);
}

ParamSource map_source(const Weights& w) {
    return {[&w](const std::string& n) { return w.count(n) > 0; },
            [&w](const std::string& n, const Shape& s) {
                const Tensor& t = w.at(n);
                REQUIRE_MESSAGE(t.shape() == s, n);
                return t;
            }};
}

std::int64_t vss_width(const ConnectorConfig& c) {
    return c.type == ConnectorType::VssMlp ? c.vision_width : c.lm_width;
}

Weights random_connector(const ConnectorConfig& c, int K, std::uint32_t seed) {
    std::mt19937 g(seed);
    Weights w;
    const std::int64_t Cv = c.vision_width, d = c.lm_width, Wd = vss_width(c);
    const std::int64_t R = c.dt_rank > 0 ? c.dt_rank : (Wd + 15) / 16;
    if (c.type == ConnectorType::Mlp) {
        add_linear(w, "mm_projector.0.", d, Cv, g);
        add_linear(w, "mm_projector.2.", d, d, g);
        return w;
    }
    add_vss_weights(w, "mm_projector.vss.", Wd, c.expand * Wd, c.d_state, R, K, c.d_conv, g);
    w["mm_projector.norm.weight"] = uniform_tensor({Wd}, g, 0.8f, 1.2f);
    w["mm_projector.norm.bias"] = normal({Wd}, g, 0.1f);
    add_linear(w, "mm_projector.linear1.", d, Cv, g);
    add_linear(w, "mm_projector.linear2.", d, d, g);
    return w;
}

struct NaiveConnector {
    Mat vss_input;
    NaiveVss vss;
    Mat output;
};

// The SPEC §2.1 equations, one line each.
NaiveConnector naive_connector(const ConnectorConfig& c, const Weights& w, const Mat& v, std::int64_t H,
                               std::int64_t W) {
    const std::string p = "mm_projector.";
    NaiveConnector r;
    if (c.type == ConnectorType::Mlp) {
        r.output = lin(apply(lin(v, w.at(p + "0.weight"), w.at(p + "0.bias")), gelu), w.at(p + "2.weight"),
                       w.at(p + "2.bias"));
        return r;
    }
    const auto dirs = directions(c.scan, H, W);
    if (c.type == ConnectorType::VssMlp) {
        r.vss_input = v;
        r.vss = naive_vss(w, p + "vss.", v, H, W, dirs);
        const Mat n = lnorm(add(r.vss.output, v), w.at(p + "norm.weight"), w.at(p + "norm.bias"));
        r.output = lin(apply(lin(n, w.at(p + "linear1.weight"), w.at(p + "linear1.bias")), gelu),
                       w.at(p + "linear2.weight"), w.at(p + "linear2.bias"));
    } else {
        const Mat v1 = lin(v, w.at(p + "linear1.weight"), w.at(p + "linear1.bias"));
        r.vss_input = apply(v1, gelu);
        r.vss = naive_vss(w, p + "vss.", r.vss_input, H, W, dirs);
        const Mat n = lnorm(add(r.vss.output, v1), w.at(p + "norm.weight"), w.at(p + "norm.bias"));
        r.output = lin(n, w.at(p + "linear2.weight"), w.at(p + "linear2.bias"));
    }
    return r;
}

// Loads the connector named by cfg and runs it with a trace: (output, trace, K).
struct RunResult {
    Tensor output;
    ConnectorTrace trace;
    int K = 0;
};
RunResult run_connector(const ConnectorConfig& cfg, const ParamSource& src, const Tensor& v, int H, int W) {
    return visit_connector_type(cfg, [&]<class C>(std::type_identity<C>) {
        const C conn = C::load(cfg, "mm_projector.", src);
        RunResult r;
        r.output = conn.forward(v, H, W, &r.trace);
        if constexpr (!std::is_same_v<C, MlpConnector>) r.K = decltype(conn.vss)::K;
        return r;
    });
}

}  // namespace

TEST_CASE("scan policies visit the grid in SPEC §2.5 order") {
    for (auto [H, W] : {std::array<std::int64_t, 2>{3, 5}, {1, 1}, {4, 4}, {1, 7}, {6, 1}}) {
        CAPTURE(H);
        CAPTURE(W);
        for (const std::string scan : {"bsm", "csm", "snake"}) {
            const ScanOrder o = scan == "bsm"   ? scan_order<BidirectionalScan>(H, W)
                                : scan == "csm" ? scan_order<CrossScan>(H, W)
                                                : scan_order<SnakeScan>(H, W);
            const auto dirs = directions(scan, H, W);
            REQUIRE(o.K == int(dirs.size()));
            CHECK(o.name == scan);
            for (int k = 0; k < o.K; ++k)
                for (std::int64_t t = 0; t < H * W; ++t) {
                    CHECK(o.to_grid(k)[t] == dirs[k][t][0] * W + dirs[k][t][1]);
                    CHECK(o.to_seq(k)[o.to_grid(k)[t]] == t);
                }
        }
    }
}

TEST_CASE("cross_scan copies each direction once and cross_merge sums them back") {
    const std::int64_t H = 3, W = 5, C = 19;
    const Tensor x = test::randn({H * W, 2 * C}, 7).slice(1, 3, 3 + C);  // (L, C) view with row stride 2C
    const ScanOrder o = scan_order<CrossScan>(H, W);
    const Tensor xs = cross_scan(x, o);  // (4, L, C)
    const auto dirs = directions("csm", H, W);
    for (int k = 0; k < 4; ++k)
        for (std::int64_t t = 0; t < H * W; ++t)
            for (std::int64_t c = 0; c < C; ++c) CHECK(xs.at({k, t, c}) == x.at({dirs[k][t][0] * W + dirs[k][t][1], c}));
    // Merging the unfolded copies gives K · x exactly (each direction is a permutation).
    const Tensor m = cross_merge(xs, o);
    for (std::int64_t p = 0; p < H * W; ++p)
        for (std::int64_t c = 0; c < C; ++c) CHECK(m.at({p, c}) == doctest::Approx(4 * x.at({p, c})).epsilon(1e-6));
}

TEST_CASE("a policy that is not a permutation is refused with its name") {
    CHECK_THROWS_WITH_AS(scan_order<BadScan>(2, 3),
                         "[cross_scan] policy 'bad' direction 0 visits grid index 0 twice (steps 0 and 1), expected "
                         "a permutation of the grid (2, 3)",
                         Error);
    CHECK_NOTHROW(scan_order<BadScan>(4, 1));
}

TEST_CASE("depthwise conv2d matches direct loops") {
    for (auto [H, W, C, k] : {std::array<std::int64_t, 4>{3, 5, 21, 3}, {1, 1, 8, 3}, {4, 4, 33, 5}, {2, 7, 5, 1}}) {
        const Tensor x = test::randn({H * W, C}, 11), w = test::randn({C, 1, k, k}, 12), b = test::randn({C}, 13);
        const Tensor y = depthwise_conv2d(x, H, W, w, b, true);
        double worst = 0;
        for (std::int64_t h = 0; h < H; ++h)
            for (std::int64_t q = 0; q < W; ++q)
                for (std::int64_t c = 0; c < C; ++c) {
                    double acc = b.at({c});
                    for (std::int64_t i = 0; i < k; ++i)
                        for (std::int64_t j = 0; j < k; ++j) {
                            const std::int64_t hh = h + i - k / 2, ww = q + j - k / 2;
                            if (hh >= 0 && hh < H && ww >= 0 && ww < W) acc += double(w.at({c, 0, i, j})) * x.at({hh * W + ww, c});
                        }
                    worst = std::max(worst, std::fabs(silu(acc) - y.at({h * W + q, c})));
                }
        CHECK(worst < 1e-5);
    }
}

TEST_CASE("VssBlock matches the naive SS2D for BSM, CSM and a user-defined snake policy") {
    struct Case { std::int64_t H, W, C, N, k; };
    for (const Case cs : {Case{3, 5, 12, 4, 3}, Case{1, 1, 9, 16, 3}, Case{4, 4, 17, 8, 3}, Case{2, 6, 8, 5, 5}}) {
        for (const std::string scan : {"bsm", "csm", "snake"}) {
            CAPTURE(scan);
            CAPTURE(cs.H);
            CAPTURE(cs.W);
            const int K = scan == "csm" ? 4 : 2;
            const std::int64_t E = 2 * cs.C, R = (cs.C + 15) / 16;
            std::mt19937 g(std::uint32_t(cs.H * 100 + cs.W + K));
            Weights w;
            add_vss_weights(w, "vss.", cs.C, E, cs.N, R, K, cs.k, g);
            const Tensor x = test::randn({cs.H * cs.W, cs.C}, 5);
            const NaiveVss ref = naive_vss(w, "vss.", to_mat(x), cs.H, cs.W, directions(scan, cs.H, cs.W));
            auto check = [&]<class P>(std::type_identity<P>) {
                const auto cfg = VssBlock<P>::Config::make(int(cs.C), int(cs.N), 2, int(cs.k));
                const auto blk = VssBlock<P>::load(cfg, "vss.", map_source(w));
                VssTrace tr;
                const Tensor y = blk.forward(x, int(cs.H), int(cs.W), &tr);
                CHECK(rel_err(y, to_tensor(ref.output)) < 2e-5);
                CHECK(rel_err(tr.merged, to_tensor(ref.merged)) < 2e-5);
                for (int k = 0; k < K; ++k) CHECK(rel_err(tr.scan_out.select(0, k), to_tensor(ref.scan_out[k])) < 2e-5);
            };
            if (scan == "bsm") check(std::type_identity<BidirectionalScan>{});
            if (scan == "csm") check(std::type_identity<CrossScan>{});
            if (scan == "snake") check(std::type_identity<SnakeScan>{});
        }
    }
}

TEST_CASE("the three connectors match their SPEC §2.1 equations on random weights") {
    for (const char* type : {"mlp", "vss_mlp", "vss_l2"})
        for (const char* scan : {"bsm", "csm"})
            for (auto [H, W] : {std::array<int, 2>{3, 5}, {1, 1}, {4, 4}}) {
                CAPTURE(type);
                CAPTURE(scan);
                CAPTURE(H);
                ConnectorConfig cfg = parse_connector_config(std::string(R"({"type":")") + type + R"(","scan":")" +
                                                             scan + R"(","d_state":4,"dt_rank":"auto"})");
                cfg.vision_width = 11;
                cfg.lm_width = 14;
                const int K = std::string(scan) == "csm" ? 4 : 2;
                const Weights w = random_connector(cfg, K, std::uint32_t(H * 31 + W + K));
                const Tensor v = test::randn({std::int64_t(H) * W, cfg.vision_width}, 9);
                const NaiveConnector ref = naive_connector(cfg, w, to_mat(v), H, W);
                const RunResult got = run_connector(cfg, map_source(w), v, H, W);
                CHECK(rel_err(got.output, to_tensor(ref.output)) < 2e-5);
                if (cfg.type == ConnectorType::Mlp) continue;
                CHECK(got.K == K);
                CHECK(rel_err(got.trace.vss_input, to_tensor(ref.vss_input)) < 2e-5);
                CHECK(rel_err(got.trace.vss_output, to_tensor(ref.vss.output)) < 2e-5);
                CHECK(rel_err(got.trace.vss.merged, to_tensor(ref.vss.merged)) < 2e-5);
                for (int k = 0; k < K; ++k)
                    CHECK(rel_err(got.trace.vss.scan_out.select(0, k), to_tensor(ref.vss.scan_out[k])) < 2e-5);
            }
}

TEST_CASE("token count and grid errors name the grid") {
    ConnectorConfig cfg = parse_connector_config(R"({"type":"vss_l2","scan":"bsm","d_state":4})");
    cfg.vision_width = 6;
    cfg.lm_width = 8;
    const Weights w = random_connector(cfg, 2, 1);
    const auto conn = VssL2Connector<BidirectionalScan>::load(cfg, "mm_projector.", map_source(w));
    const Tensor v16 = test::randn({16, 6}, 2);
    CHECK_THROWS_WITH_AS(conn.forward(v16, 3, 5), "[connector] expected H·W = 15 tokens for grid (3, 5), got 16", Error);
    CHECK_THROWS_WITH_AS(conn.vss.forward(test::randn({16, 8}, 2), 3, 5),
                         "[vss] expected H·W = 15 tokens for grid (3, 5), got 16", Error);
    CHECK(conn.forward(v16).shape() == Shape{16, 8});  // square grid inferred
    CHECK_THROWS_AS(conn.forward(test::randn({15, 6}, 2)), Error);
    CHECK_THROWS_AS(conn.forward(test::randn({15, 7}, 2), 3, 5), Error);
}

TEST_CASE("connector config parsing and its errors") {
    const ConnectorConfig c = parse_connector_config(
        R"({"type":"vss_mlp","scan":"csm","d_state":8,"expand":3,"d_conv":5,"dt_rank":7,"grid":[3,5],"vision_width":24,"lm_width":32})");
    CHECK(c.type == ConnectorType::VssMlp);
    CHECK(c.scan == "csm");
    CHECK((c.d_state == 8 && c.expand == 3 && c.d_conv == 5 && c.dt_rank == 7));
    CHECK((c.vision_width == 24 && c.lm_width == 32));
    const ConnectorConfig d = parse_connector_config(R"({"type":"mlp"})");
    CHECK((d.scan == "bsm" && d.d_state == 16 && d.expand == 2 && d.d_conv == 3 && d.dt_rank == 0));
    CHECK_THROWS_WITH_AS(parse_connector_config(R"({"type":"qformer"})"),
                         "[connector] connector_config: unknown connector type 'qformer', expected one of: mlp, "
                         "vss_mlp, vss_l2",
                         Error);
    CHECK_THROWS_WITH_AS(parse_connector_config(R"({"type":"vss_l2","scan":"diag"})"),
                         "[connector] connector_config: unknown scan 'diag', expected one of: bsm (bidirectional, K = "
                         "2), csm (cross, K = 4)",
                         Error);
    CHECK_THROWS_AS(parse_connector_config(R"({"scan":"bsm"})"), Error);
    CHECK_THROWS_AS(parse_connector_config(R"({"type":"mlp","dt_rank":"big"})"), Error);
    CHECK_THROWS_AS(parse_connector_config(R"({"type":"mlp","d_conv":4})"), Error);
    CHECK_THROWS_AS(parse_connector_config(R"({"type":"mlp","d_state":"16"})"), Error);
    CHECK_THROWS_AS(parse_connector_config("{"), Error);
    // A type that does not match the config.
    ConnectorConfig m = d;
    m.vision_width = m.lm_width = 4;
    const Weights none;
    CHECK_THROWS_WITH_AS(VssL2Connector<CrossScan>::load(m, "mm_projector.", map_source(none)),
                         "[connector] config names type 'mlp', expected 'vss_l2' for VssL2Connector", Error);
}

TEST_CASE("loading reports every missing and mis-shaped tensor at once") {
    ConnectorConfig cfg = parse_connector_config(R"({"type":"vss_l2","scan":"csm","d_state":4})");
    cfg.vision_width = 6;
    cfg.lm_width = 8;
    Weights w = random_connector(cfg, 4, 3);
    w.erase("mm_projector.vss.A_logs");
    w.erase("mm_projector.linear2.bias");
    w["mm_projector.vss.Ds"] = Tensor::zeros({5});
    std::vector<std::pair<std::string, Tensor>> list(w.begin(), w.end());
    const fs::path file = fs::temp_directory_path() / "vlmamba_test_connector_missing.safetensors";
    save_safetensors(file, list);
    const WeightStore store = WeightStore::open(file);
    WeightLoader loader(store);
    (void)VssL2Connector<CrossScan>::load(cfg, "mm_projector.", param_source(loader));
    std::string msg;
    try {
        loader.finish();
    } catch (const Error& e) {
        msg = e.what();
    }
    fs::remove(file);
    CHECK(msg.find("mm_projector.vss.A_logs") != std::string::npos);
    CHECK(msg.find("mm_projector.linear2.bias") != std::string::npos);
    CHECK(msg.find("mm_projector.vss.Ds") != std::string::npos);
}

TEST_CASE("connectors match the PyTorch reference fixtures") {
    const fs::path dir = fs::path(VLMAMBA_TEST_DATA_DIR) / "connectors";
    int seen = 0;
    for (const char* type : {"mlp", "vss_mlp_bsm", "vss_mlp_csm", "vss_l2_bsm", "vss_l2_csm"})
        for (const char* grid : {"3x5", "1x1", "4x4"}) {
            const fs::path file = dir / (std::string(type) + "_" + grid + ".safetensors");
            if (!fs::exists(file)) {
                MESSAGE("skipping: no fixture " << file.string());
                continue;
            }
            ++seen;
            CAPTURE(file.string());
            const SafetensorsFile sf = SafetensorsFile::open(file);
            REQUIRE(sf.metadata().count("connector_config"));
            const std::string meta = sf.metadata().at("connector_config");
            CAPTURE(meta);
            const ConnectorConfig cfg = parse_connector_config(meta);
            const auto j = nlohmann::json::parse(meta);
            const int H = j.at("grid").at(0).get<int>(), W = j.at("grid").at(1).get<int>();
            const WeightStore store = WeightStore::open(file);
            WeightLoader loader(store);
            const RunResult got = run_connector(cfg, param_source(loader), store.get("input"), H, W);
            loader.finish();
            CHECK(rel_err(got.output, store.get("output")) <= 2e-5);
            if (cfg.type == ConnectorType::Mlp) continue;
            CHECK(rel_err(got.trace.vss_input, store.get("vss.input")) <= 2e-5);
            CHECK(rel_err(got.trace.vss_output, store.get("vss.output")) <= 2e-5);
            CHECK(rel_err(got.trace.vss.merged, store.get("vss.merged")) <= 2e-5);
            for (int k = 0; k < got.K; ++k) {
                CAPTURE(k);
                CHECK(rel_err(got.trace.vss.scan_out.select(0, k), store.get("vss.scan_out." + std::to_string(k))) <=
                      2e-5);
            }
        }
    if (seen == 0) MESSAGE("skipping: no connector fixtures in " << dir.string());
}
