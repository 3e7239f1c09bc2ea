// The three MultiModal Connectors of VL-Mamba (SPEC §2.1), each exactly its equation, with the tensor names of
// SPEC §2.5 (all under "mm_projector."):
//   MlpConnector            V_out = W2 · GELU(W1 · V + b1) + b2                 (LLaVA mlp2x_gelu)
//   VssMlpConnector<Scan>   V_out = MLP(Norm(VSS(V) + V))                        (VSS at the vision width C_v)
//   VssL2Connector<Scan>    V' = Linear1(V);  V_out = Linear2(Norm(VSS(GELU(V')) + V'))   (VSS at the LM width d)
// and Cobra's projector (cobra/util/nn_utils.py: FusedMLPProjector, "fused-gelu-mlp"), named as Cobra saves it:
//   FusedMlpConnector       V_out = W4 · GELU(W2 · GELU(W0 · V + b0) + b2) + b4    (C_v -> 4·C_v -> d -> d)
// GELU is the exact erf form; Norm is LayerNorm(eps 1e-5, affine) (SPEC §8.1). Tokens are (L_v, C_v) of an H×W grid
// in row-major order; forward(v) assumes a square grid.
#pragma once
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <type_traits>

#include "vlmamba/io/json_config.hpp"
#include "vlmamba/layers/param.hpp"
#include "vlmamba/layers/scan_policies.hpp"
#include "vlmamba/layers/vss_block.hpp"
#include "vlmamba/ops/elementwise.hpp"
#include "vlmamba/ops/gemm.hpp"
#include "vlmamba/ops/norm.hpp"

namespace vlmamba {

// ---------------------------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------------------------

enum class ConnectorType { Mlp, VssMlp, VssL2, FusedMlp };

// A model config's "connector_config" (SPEC §8.2), plus the two widths that come from the vision and text configs.
struct ConnectorConfig {
    ConnectorType type = ConnectorType::VssL2;
    std::string scan = "bsm";  // a scan policy's name: "bsm" (BidirectionalScan) or "csm" (CrossScan)
    int d_state = 16, expand = 2, d_conv = 3;
    int dt_rank = 0;           // 0 = "auto": ceil(width / 16) of the VSS's own width
    int vision_width = 0;      // C_v
    int lm_width = 0;          // d
    float norm_eps = 1e-5f;
};

// Parses {"type": "mlp"|"vss_mlp"|"vss_l2", "scan": "bsm"|"csm", "d_state", "expand", "d_conv", "dt_rank": "auto"|int}
// and, when present, "vision_width" and "lm_width". Errors name `where` and the supported values.
ConnectorConfig connector_config_from_json(const nlohmann::json& j, const std::string& where = "connector_config");
// The same, from JSON text (e.g. a safetensors __metadata__ value).
ConnectorConfig parse_connector_config(std::string_view json_text, const std::string& where = "connector_config");
const char* connector_type_name(ConnectorType t);  // "mlp", "vss_mlp", "vss_l2", "fused_mlp"

// Intermediates of one connector forward, for golden tests (VSS connectors only).
struct ConnectorTrace {
    Tensor vss_input;   // (L, width) what the VSS received
    VssTrace vss;       // per-direction scan outputs and their merged sum
    Tensor vss_output;  // (L, width)
};

namespace detail {
// Copies a defined tensor to d as f32 (an undefined one stays undefined).
inline auto to_f32_on(Device d) {
    return [d](const Tensor& t) { return t.defined() ? t.to(DType::F32).to(d) : Tensor(); };
}
}  // namespace detail

struct MlpConnector {
    using Config = ConnectorConfig;
    Config cfg;
    Tensor linear0_weight, linear0_bias;  // mm_projector.0: (d, C_v), (d)
    Tensor linear2_weight, linear2_bias;  // mm_projector.2: (d, d), (d)

    // `prefix` is "mm_projector." in a VL-Mamba file. Missing tensors are recorded by `src`, not thrown.
    static MlpConnector load(const Config& c, const std::string& prefix, const ParamSource& src);
    MlpConnector to(Device d) const {  // f32 on d
        auto f = detail::to_f32_on(d);
        return {cfg, f(linear0_weight), f(linear0_bias), f(linear2_weight), f(linear2_bias)};
    }
    Tensor forward(const Tensor& v, int H, int W, ConnectorTrace* trace = nullptr) const;  // (L, C_v) -> (L, d)
    Tensor forward(const Tensor& v) const;                                                 // square grid
};

// Cobra's fused-gelu-mlp (no VL-Mamba config names it: Cobra's arch_specifier does).
struct FusedMlpConnector {
    using Config = ConnectorConfig;
    Config cfg;
    Tensor linear0_weight, linear0_bias;  // projector.0: (4·C_v, C_v), (4·C_v)
    Tensor linear2_weight, linear2_bias;  // projector.2: (d, 4·C_v), (d)
    Tensor linear4_weight, linear4_bias;  // projector.4: (d, d), (d)

    // `prefix` ends with "projector." (Cobra's checkpoint: "model.projector.projector.").
    static FusedMlpConnector load(const Config& c, const std::string& prefix, const ParamSource& src);
    FusedMlpConnector to(Device d) const {
        auto f = detail::to_f32_on(d);
        return {cfg, f(linear0_weight), f(linear0_bias), f(linear2_weight), f(linear2_bias), f(linear4_weight),
                f(linear4_bias)};
    }
    Tensor forward(const Tensor& v, int H, int W, ConnectorTrace* trace = nullptr) const;  // (L, C_v) -> (L, d)
    Tensor forward(const Tensor& v) const;
};

template <ScanPolicy Scan>
struct VssMlpConnector {
    using Config = ConnectorConfig;
    Config cfg;
    VssBlock<Scan> vss;                   // mm_projector.vss.*, width C_v
    Tensor norm_weight, norm_bias;        // mm_projector.norm: (C_v)
    Tensor linear1_weight, linear1_bias;  // (d, C_v), (d)
    Tensor linear2_weight, linear2_bias;  // (d, d), (d)

    static VssMlpConnector load(const Config& c, const std::string& prefix, const ParamSource& src);
    VssMlpConnector to(Device d) const {
        auto f = detail::to_f32_on(d);
        return {cfg, vss.to(d), f(norm_weight), f(norm_bias), f(linear1_weight), f(linear1_bias), f(linear2_weight),
                f(linear2_bias)};
    }
    Tensor forward(const Tensor& v, int H, int W, ConnectorTrace* trace = nullptr) const;  // (L, C_v) -> (L, d)
    Tensor forward(const Tensor& v) const;
};

template <ScanPolicy Scan>
struct VssL2Connector {
    using Config = ConnectorConfig;
    Config cfg;
    Tensor linear1_weight, linear1_bias;  // (d, C_v), (d)
    VssBlock<Scan> vss;                   // mm_projector.vss.*, width d
    Tensor norm_weight, norm_bias;        // mm_projector.norm: (d)
    Tensor linear2_weight, linear2_bias;  // (d, d), (d)

    static VssL2Connector load(const Config& c, const std::string& prefix, const ParamSource& src);
    VssL2Connector to(Device d) const {
        auto f = detail::to_f32_on(d);
        return {cfg, f(linear1_weight), f(linear1_bias), vss.to(d), f(norm_weight), f(norm_bias), f(linear2_weight),
                f(linear2_bias)};
    }
    Tensor forward(const Tensor& v, int H, int W, ConnectorTrace* trace = nullptr) const;  // (L, C_v) -> (L, d)
    Tensor forward(const Tensor& v) const;
};

// Calls f(std::type_identity<C>{}) with the connector type that cfg names, e.g. VssL2Connector<BidirectionalScan>
// for {"type": "vss_l2", "scan": "bsm"}; returns what f returns.
template <class F>
decltype(auto) visit_connector_type(const ConnectorConfig& cfg, F&& f);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline const char* connector_type_name(ConnectorType t) {
    switch (t) {
        case ConnectorType::Mlp: return "mlp";
        case ConnectorType::VssMlp: return "vss_mlp";
        case ConnectorType::VssL2: return "vss_l2";
        case ConnectorType::FusedMlp: return "fused_mlp";
    }
    return "?";
}

inline ConnectorConfig connector_config_from_json(const nlohmann::json& j, const std::string& where) {
    constexpr const char* op = "connector";
    VLM_CHECK(j.is_object(), op, where, ": expected a JSON object, got ", detail::json_brief(j));
    ConnectorConfig c;
    auto str = [&](const char* key) -> std::string {
        const auto& v = j.at(key);
        VLM_CHECK(v.is_string(), op, where, ": key '", key, "' has value ", detail::json_brief(v), ", expected a string");
        return v.get<std::string>();
    };
    auto integer = [&](const char* key, int fallback, int lo, int hi = kMaxConfigWidth) {
        if (!j.contains(key) || j.at(key).is_null()) return fallback;
        const auto& v = j.at(key);
        const bool in_range = v.is_number_unsigned() ? v.get<std::uint64_t>() <= std::uint64_t(hi)
                                                     : v.is_number_integer() && v.get<std::int64_t>() >= lo &&
                                                           v.get<std::int64_t>() <= hi;
        VLM_CHECK(in_range && v.get<std::int64_t>() >= lo, op, where, ": key '", key, "' has value ",
                  detail::json_brief(v), ", expected an integer in [", lo, ", ", hi, "]");
        return v.get<int>();
    };
    VLM_CHECK(j.contains("type"), op, where, ": expected key 'type' (one of: mlp, vss_mlp, vss_l2), got none");
    const std::string type = str("type");
    if (type == "mlp") c.type = ConnectorType::Mlp;
    else if (type == "vss_mlp") c.type = ConnectorType::VssMlp;
    else if (type == "vss_l2") c.type = ConnectorType::VssL2;
    else fail(op, where, ": unknown connector type '", type, "', expected one of: mlp, vss_mlp, vss_l2");
    if (j.contains("scan") && !j.at("scan").is_null()) {
        c.scan = str("scan");
        VLM_CHECK(c.scan == BidirectionalScan::name || c.scan == CrossScan::name, op, where, ": unknown scan '",
                  c.scan, "', expected one of: bsm (bidirectional, K = 2), csm (cross, K = 4)");
    }
    c.d_state = integer("d_state", c.d_state, 1);
    VLM_CHECK(c.d_state <= scan_max_state, op, where, ": key 'd_state' has value ", c.d_state, ", expected <= ",
              scan_max_state);
    c.expand = integer("expand", c.expand, 1, 64);
    c.d_conv = integer("d_conv", c.d_conv, 1, 63);
    VLM_CHECK(c.d_conv % 2 == 1, op, where, ": key 'd_conv' has value ", c.d_conv, ", expected an odd kernel size");
    if (j.contains("dt_rank") && !j.at("dt_rank").is_null()) {
        const auto& v = j.at("dt_rank");
        if (v.is_string()) {
            VLM_CHECK(v.get<std::string>() == "auto", op, where, ": key 'dt_rank' has value ", detail::json_brief(v),
                      ", expected \"auto\" or a positive integer");
            c.dt_rank = 0;
        } else {
            c.dt_rank = integer("dt_rank", 0, 1);
        }
    }
    c.vision_width = integer("vision_width", 0, 1);
    c.lm_width = integer("lm_width", 0, 1);
    return c;
}

inline ConnectorConfig parse_connector_config(std::string_view text, const std::string& where) {
    detail::check_json_depth(text, where, "connector");
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) fail("connector", where, ": invalid JSON");
    return connector_config_from_json(j, where);
}

namespace detail {
inline void check_connector(const ConnectorConfig& c, ConnectorType want, std::string_view scan, const char* what) {
    constexpr const char* op = "connector";
    VLM_CHECK(c.type == want, op, "config names type '", connector_type_name(c.type), "', expected '",
              connector_type_name(want), "' for ", what);
    VLM_CHECK(scan.empty() || c.scan == scan, op, "config names scan '", c.scan, "', expected '", scan, "' for ",
              what);
    VLM_CHECK(c.vision_width >= 1 && c.lm_width >= 1, op,
              "expected vision_width and lm_width >= 1 (from the vision and text configs), got (", c.vision_width,
              ", ", c.lm_width, ")");
}

inline void check_tokens(const Tensor& v, int H, int W, std::int64_t width) {
    constexpr const char* op = "connector";
    VLM_CHECK(H >= 1 && W >= 1, op, "expected a grid of at least (1, 1), got (", H, ", ", W, ")");
    VLM_CHECK(v.ndim() == 2, op, "tokens have shape ", shape_str(v.shape()), ", expected (H·W, C_v)");
    VLM_CHECK(v.size(0) == std::int64_t(H) * W, op, "expected H·W = ", std::int64_t(H) * W, " tokens for grid (", H,
              ", ", W, "), got ", v.size(0));
    check_shape(op, "tokens", v, {std::int64_t(H) * W, width});
}

// The side of a square grid of L tokens.
inline int square_side(std::int64_t L) {
    const auto s = std::int64_t(std::llround(std::sqrt(double(L))));
    VLM_CHECK(L >= 1 && s * s == L, "connector", "expected a square number of tokens to infer the grid, got ", L,
              "; pass the grid (H, W)");
    return int(s);
}

template <ScanPolicy Scan>
typename VssBlock<Scan>::Config vss_config(const ConnectorConfig& c, int width) {
    auto v = VssBlock<Scan>::Config::make(width, c.d_state, c.expand, c.d_conv, c.dt_rank);
    v.norm_eps = c.norm_eps;
    return v;
}
}  // namespace detail

// --- MLP -------------------------------------------------------------------------------------------------------

inline MlpConnector MlpConnector::load(const Config& c, const std::string& p, const ParamSource& src) {
    detail::check_connector(c, ConnectorType::Mlp, {}, "MlpConnector");
    const std::int64_t Cv = c.vision_width, d = c.lm_width;
    MlpConnector m;
    m.cfg = c;
    m.linear0_weight = src.fetch(p + "0.weight", {d, Cv});
    m.linear0_bias = src.fetch(p + "0.bias", {d});
    m.linear2_weight = src.fetch(p + "2.weight", {d, d});
    m.linear2_bias = src.fetch(p + "2.bias", {d});
    return m;
}

inline Tensor MlpConnector::forward(const Tensor& v, int H, int W, ConnectorTrace* trace) const {
    detail::check_tokens(v, H, W, cfg.vision_width);
    if (trace) *trace = {};
    // LLaVA builder.py mlp2x_gelu: Linear, GELU, Linear
    Tensor h = linear(v, linear0_weight, linear0_bias);  // (L, d)
    gelu_(h);
    return linear(h, linear2_weight, linear2_bias);      // (L, d)
}

inline Tensor MlpConnector::forward(const Tensor& v) const {
    const int s = detail::square_side(v.size(0));
    return forward(v, s, s);
}

// --- fused MLP (Cobra) ------------------------------------------------------------------------------------------

inline FusedMlpConnector FusedMlpConnector::load(const Config& c, const std::string& p, const ParamSource& src) {
    detail::check_connector(c, ConnectorType::FusedMlp, {}, "FusedMlpConnector");
    const std::int64_t Cv = c.vision_width, d = c.lm_width, H = 4 * Cv;  // initial_projection_dim = 4 · fused dim
    FusedMlpConnector m;
    m.cfg = c;
    m.linear0_weight = src.fetch(p + "0.weight", {H, Cv});
    m.linear0_bias = src.fetch(p + "0.bias", {H});
    m.linear2_weight = src.fetch(p + "2.weight", {d, H});
    m.linear2_bias = src.fetch(p + "2.bias", {d});
    m.linear4_weight = src.fetch(p + "4.weight", {d, d});
    m.linear4_bias = src.fetch(p + "4.bias", {d});
    return m;
}

inline Tensor FusedMlpConnector::forward(const Tensor& v, int H, int W, ConnectorTrace* trace) const {
    detail::check_tokens(v, H, W, cfg.vision_width);
    if (trace) *trace = {};
    // nn_utils.py FusedMLPProjector: Linear, GELU, Linear, GELU, Linear
    Tensor h0 = linear(v, linear0_weight, linear0_bias);   // (L, 4·C_v)
    gelu_(h0);
    Tensor h2 = linear(h0, linear2_weight, linear2_bias);  // (L, d)
    gelu_(h2);
    return linear(h2, linear4_weight, linear4_bias);       // (L, d)
}

inline Tensor FusedMlpConnector::forward(const Tensor& v) const {
    const int s = detail::square_side(v.size(0));
    return forward(v, s, s);
}

// --- VSS-MLP ---------------------------------------------------------------------------------------------------

template <ScanPolicy Scan>
VssMlpConnector<Scan> VssMlpConnector<Scan>::load(const Config& c, const std::string& p, const ParamSource& src) {
    detail::check_connector(c, ConnectorType::VssMlp, Scan::name, "VssMlpConnector");
    const std::int64_t Cv = c.vision_width, d = c.lm_width;
    VssMlpConnector m;
    m.cfg = c;
    m.vss = VssBlock<Scan>::load(detail::vss_config<Scan>(c, c.vision_width), p + "vss.", src);
    m.norm_weight = src.fetch(p + "norm.weight", {Cv});
    m.norm_bias = src.fetch(p + "norm.bias", {Cv});
    m.linear1_weight = src.fetch(p + "linear1.weight", {d, Cv});
    m.linear1_bias = src.fetch(p + "linear1.bias", {d});
    m.linear2_weight = src.fetch(p + "linear2.weight", {d, d});
    m.linear2_bias = src.fetch(p + "linear2.bias", {d});
    return m;
}

template <ScanPolicy Scan>
Tensor VssMlpConnector<Scan>::forward(const Tensor& v, int H, int W, ConnectorTrace* trace) const {
    detail::check_tokens(v, H, W, cfg.vision_width);
    VssTrace* vt = trace ? &trace->vss : nullptr;
    const Tensor vs = vss.forward(v, H, W, vt);                                 // V_scan = VSS(V)      (L, C_v)
    const Tensor s = add(vs, v);                                                // V_scan + V           (L, C_v)
    const Tensor n = layer_norm(s, norm_weight, norm_bias, cfg.norm_eps);       // Norm(.)              (L, C_v)
    Tensor h = linear(n, linear1_weight, linear1_bias);                         // MLP: GELU(W1 · + b1) (L, d)
    gelu_(h);
    if (trace) {
        trace->vss_input = v;
        trace->vss_output = vs;
    }
    return linear(h, linear2_weight, linear2_bias);                             // W2 · + b2            (L, d)
}

template <ScanPolicy Scan>
Tensor VssMlpConnector<Scan>::forward(const Tensor& v) const {
    const int s = detail::square_side(v.size(0));
    return forward(v, s, s);
}

// --- VSS-L2 ----------------------------------------------------------------------------------------------------

template <ScanPolicy Scan>
VssL2Connector<Scan> VssL2Connector<Scan>::load(const Config& c, const std::string& p, const ParamSource& src) {
    detail::check_connector(c, ConnectorType::VssL2, Scan::name, "VssL2Connector");
    const std::int64_t Cv = c.vision_width, d = c.lm_width;
    VssL2Connector m;
    m.cfg = c;
    m.linear1_weight = src.fetch(p + "linear1.weight", {d, Cv});
    m.linear1_bias = src.fetch(p + "linear1.bias", {d});
    m.vss = VssBlock<Scan>::load(detail::vss_config<Scan>(c, c.lm_width), p + "vss.", src);
    m.norm_weight = src.fetch(p + "norm.weight", {d});
    m.norm_bias = src.fetch(p + "norm.bias", {d});
    m.linear2_weight = src.fetch(p + "linear2.weight", {d, d});
    m.linear2_bias = src.fetch(p + "linear2.bias", {d});
    return m;
}

template <ScanPolicy Scan>
Tensor VssL2Connector<Scan>::forward(const Tensor& v, int H, int W, ConnectorTrace* trace) const {
    detail::check_tokens(v, H, W, cfg.vision_width);
    VssTrace* vt = trace ? &trace->vss : nullptr;
    const Tensor v1 = linear(v, linear1_weight, linear1_bias);                  // V' = Linear1(V)       (L, d)
    Tensor g = v1.clone();                                                      // GELU(V')              (L, d)
    gelu_(g);
    const Tensor vs = vss.forward(g, H, W, vt);                                 // V_s = VSS(GELU(V'))   (L, d)
    const Tensor s = add(vs, v1);                                               // V_s + V' (pre-GELU)   (L, d)
    const Tensor n = layer_norm(s, norm_weight, norm_bias, cfg.norm_eps);       // Norm(.)               (L, d)
    if (trace) {
        trace->vss_input = g;
        trace->vss_output = vs;
    }
    return linear(n, linear2_weight, linear2_bias);                             // Linear2(.)            (L, d)
}

template <ScanPolicy Scan>
Tensor VssL2Connector<Scan>::forward(const Tensor& v) const {
    const int s = detail::square_side(v.size(0));
    return forward(v, s, s);
}

template <class F>
decltype(auto) visit_connector_type(const ConnectorConfig& cfg, F&& f) {
    const bool csm = cfg.scan == CrossScan::name;
    VLM_CHECK(csm || cfg.scan == BidirectionalScan::name, "connector", "unknown scan '", cfg.scan,
              "', expected one of: bsm, csm");
    switch (cfg.type) {
        case ConnectorType::VssMlp:
            return csm ? f(std::type_identity<VssMlpConnector<CrossScan>>{})
                       : f(std::type_identity<VssMlpConnector<BidirectionalScan>>{});
        case ConnectorType::VssL2:
            return csm ? f(std::type_identity<VssL2Connector<CrossScan>>{})
                       : f(std::type_identity<VssL2Connector<BidirectionalScan>>{});
        case ConnectorType::FusedMlp:
            fail("connector", "fused_mlp is Cobra's projector: it has no VL-Mamba connector config");
        case ConnectorType::Mlp: break;
    }
    return f(std::type_identity<MlpConnector>{});
}

}  // namespace vlmamba
