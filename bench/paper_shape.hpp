// Random-weight models of the paper's final shape for the benchmarks (bench_ttft on the CPU, bench_cuda on the
// GPU): a SigLIP-SO400M/14-384 tower (C 1152, I 4304, 16 heads, 729 tokens), a VSS-L2/BSM connector into d 2560,
// a mamba-2.8b-shaped LM (d_model 2560, d_inner 5120, N 16, dt_rank 160, vocab 50280, tied head) with bf16
// matrices, and the time to first token through them.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <span>
#include <vector>

#include "vlmamba/models/connector.hpp"
#include "vlmamba/models/mamba_lm.hpp"
#include "vlmamba/models/vision_encoder.hpp"
#include "vlmamba/ops/gemm.hpp"

namespace bench {
using vlmamba::DType;
using vlmamba::Device;
using vlmamba::Tensor;

// f32 values from a fixed pool of uniform numbers in ±scale·0.03 (filling a large model stays fast).
struct RandomPool {
    std::vector<float> pool;
    std::size_t at = 0;
    explicit RandomPool(std::mt19937& g, std::size_t n = std::size_t(1) << 20) : pool(n) {
        std::uniform_real_distribution<float> d(-0.03f, 0.03f);
        for (auto& x : pool) x = d(g);
    }
    Tensor f32(vlmamba::Shape s, float scale = 1.0f) {
        Tensor t = Tensor::empty(std::move(s));
        float* p = t.data<float>();
        for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = scale * pool[(at++ * 7919) % pool.size()];
        return t;
    }
    Tensor bf16(vlmamba::Shape s) {
        Tensor t = Tensor::empty(std::move(s), DType::BF16);
        auto* p = t.data<std::uint16_t>();
        for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = vlmamba::f32_to_bf16(pool[(at++ * 7919) % pool.size()]);
        return t;
    }
};

inline vlmamba::VisionEncoder siglip_so400m(RandomPool& r, int layers) {
    vlmamba::VisionEncoder e;
    auto& c = e.cfg;
    c.family = vlmamba::VisionFamily::Siglip, c.hidden_size = 1152, c.intermediate_size = 4304;
    c.num_hidden_layers = layers, c.num_attention_heads = 16, c.image_size = 384, c.patch_size = 14;
    const std::int64_t C = c.hidden_size, I = c.intermediate_size, N = c.num_positions();
    e.embeddings.cfg = {3, int(C), 14, 384, /*bias=*/true, /*class_token=*/false};
    e.embeddings.patch_embedding_weight = r.f32({C, 3, 14, 14});
    e.embeddings.patch_embedding_bias = r.f32({C});
    e.embeddings.position_embedding_weight = r.f32({N, C});
    for (int i = 0; i < layers; ++i) {
        vlmamba::VitBlock b;
        b.cfg = {int(C), c.num_attention_heads, int(I), c.layer_norm_eps, vlmamba::VitAct::GeluTanh};
        b.self_attn.cfg = {int(C), c.num_attention_heads};
        b.mlp.cfg = {int(C), int(I), vlmamba::VitAct::GeluTanh};
        b.layer_norm1_weight = Tensor::full({C}, 1.0f), b.layer_norm1_bias = r.f32({C});
        b.self_attn.qkv_weight = r.f32({3 * C, C}), b.self_attn.qkv_bias = r.f32({3 * C});
        b.self_attn.out_proj_weight = r.f32({C, C}), b.self_attn.out_proj_bias = r.f32({C});
        b.layer_norm2_weight = Tensor::full({C}, 1.0f), b.layer_norm2_bias = r.f32({C});
        b.mlp.fc1_weight = r.f32({I, C}), b.mlp.fc1_bias = r.f32({I});
        b.mlp.fc2_weight = r.f32({C, I}), b.mlp.fc2_bias = r.f32({C});
        e.layers.push_back(std::move(b));
    }
    return e;
}

// The mamba-2.8b shape with n_layer layers; the big matrices bf16, the rest f32.
inline vlmamba::MambaLm mamba_2p8b(RandomPool& r, int n_layer, std::mt19937& g) {
    vlmamba::MambaConfig c;
    c.d_model = 2560, c.n_layer = n_layer, c.vocab_size = 50280, c.d_state = 16, c.d_conv = 4, c.d_inner = 5120;
    c.dt_rank = 160;
    const std::int64_t D = c.d_model, E = c.d_inner, N = c.d_state, K = c.d_conv, R = c.dt_rank;
    vlmamba::MambaLm m;
    m.cfg = c;
    m.embedding = r.bf16({c.vocab_size, D});
    m.lm_head = m.embedding;
    m.norm_f_weight = Tensor::full({D}, 1.0f);
    Tensor convw = Tensor::empty({E, K}), A = Tensor::empty({E, N});
    std::uniform_real_distribution<float> cw(-0.5f, 0.5f);
    for (std::int64_t i = 0; i < convw.numel(); ++i) convw.data<float>()[i] = cw(g);
    for (std::int64_t e = 0; e < E; ++e)
        for (std::int64_t n = 0; n < N; ++n) A.data<float>()[e * N + n] = -float(n + 1);  // S4D-real initialisation
    for (int i = 0; i < n_layer; ++i) {
        vlmamba::MambaMixer x{{int(D), int(E), int(N), int(K), int(R), true}, r.bf16({2 * E, D}), convw,
                              Tensor::full({E}, 0.0f), r.bf16({R + 2 * N, E}), r.bf16({E, R}),
                              Tensor::full({E}, -4.6f), A, Tensor::full({E}, 1.0f), r.bf16({D, E})};
        m.layers.push_back({Tensor::full({D}, 1.0f), std::move(x)});
    }
    return m;
}

using VssL2Bsm = vlmamba::VssL2Connector<vlmamba::BidirectionalScan>;

inline VssL2Bsm vss_l2_bsm(RandomPool& r, int vision_width, int d) {
    vlmamba::ConnectorConfig cc;
    cc.type = vlmamba::ConnectorType::VssL2, cc.scan = "bsm", cc.vision_width = vision_width, cc.lm_width = d;
    VssL2Bsm m;
    m.cfg = cc;
    m.linear1_weight = r.f32({d, vision_width}), m.linear1_bias = r.f32({d});
    auto& v = m.vss;
    v.cfg = vlmamba::detail::vss_config<vlmamba::BidirectionalScan>(cc, d);
    const std::int64_t E = v.cfg.d_inner, N = v.cfg.d_state, R = v.cfg.dt_rank, K = 2, k = v.cfg.d_conv;
    v.in_proj_weight = r.f32({2 * E, d}), v.conv2d_weight = r.f32({E, 1, k, k}, 10.0f), v.conv2d_bias = r.f32({E});
    v.x_proj_weight = r.f32({K, R + 2 * N, E}), v.dt_projs_weight = r.f32({K, E, R}, 10.0f);
    v.dt_projs_bias = Tensor::full({K, E}, -4.6f), v.Ds = Tensor::full({K * E}, 1.0f);
    v.A = Tensor::empty({K * E, N});
    for (std::int64_t i = 0; i < K * E * N; ++i) v.A.data<float>()[i] = -float(i % N + 1);
    v.out_norm_weight = Tensor::full({E}, 1.0f), v.out_norm_bias = r.f32({E});
    v.out_proj_weight = r.f32({d, E});
    m.norm_weight = Tensor::full({d}, 1.0f), m.norm_bias = r.f32({d});
    m.linear2_weight = r.f32({d, d}), m.linear2_bias = r.f32({d});
    return m;
}

// Milliseconds of each phase of one image + question, on the models' device: tower (to the features), connector,
// prefill of [prefix; question] up to the token sampled (greedy) from its last logits, and the first step after.
// Each phase ends with the device idle (a small copy to the host), so the phases add up to the whole.
struct Phases {
    double tower = 0, connector = 0, prefill = 0, step = 0;
    double first_token() const { return tower + connector + prefill; }
};

// tf32_tower: the tower's f32 products on tf32 tensor cores (CUDA), the rest exact f32.
inline Phases time_to_first_token(const vlmamba::VisionEncoder& tower, const VssL2Bsm& conn,
                                  const vlmamba::MambaLm& lm, const Tensor& pixels,
                                  std::span<const std::int32_t> question, bool tf32_tower = false) {
    using clock = std::chrono::steady_clock;
    Phases p;
    auto t0 = clock::now();
    auto lap = [&](double& into) {
        const auto t1 = clock::now();
        into = std::chrono::duration<double>(t1 - t0).count() * 1e3;
        t0 = t1;
    };
    const int side = tower.cfg.image_size / tower.cfg.patch_size;
    vlmamba::set_cuda_tf32(tf32_tower);
    const Tensor f = tower.features(pixels);  // (729, C_v)
    f.slice(0, 0, 1).to(Device::Cpu);
    vlmamba::set_cuda_tf32(false);
    lap(p.tower);
    const Tensor prefix = conn.forward(f, side, side);  // (729, d)
    prefix.slice(0, 0, 1).to(Device::Cpu);
    lap(p.connector);
    const std::int64_t Lv = prefix.size(0), L = Lv + std::int64_t(question.size());
    Tensor embeds = Tensor::empty({L, lm.cfg.d_model}, DType::F32, lm.device());  // (L, d)
    Tensor top = embeds.slice(0, 0, Lv), bottom = embeds.slice(0, Lv, L);
    vlmamba::copy_into(top, prefix);
    vlmamba::copy_into(bottom, lm.embed(question));
    vlmamba::MambaState st = lm.new_state(1);
    const Tensor h = lm.forward_hidden(embeds, &st);                            // (L, d)
    const Tensor last = lm.logits(h.slice(0, L - 1, L)).to(Device::Cpu);       // (1, V)
    const float* l = last.data<float>();
    const auto first = std::int32_t(std::max_element(l, l + last.numel()) - l);
    lap(p.prefill);
    lm.step_greedy(std::span<const std::int32_t>(&first, 1), st);
    lap(p.step);
    return p;
}

}  // namespace bench
