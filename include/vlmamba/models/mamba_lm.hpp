// MambaLm (mamba_ssm models/mixer_seq_simple.py: MambaLMHeadModel; HF modeling_mamba.py: MambaForCausalLM):
// embedding, n_layer pre-norm blocks with an f32 residual stream, norm_f and a tied or untied head.
// Decoding is recurrent: MambaState holds every layer's conv and SSM state for B sequences.
#pragma once
#include <span>
#include <vector>

#include "vlmamba/layers/mamba_mixer.hpp"
#include "vlmamba/models/mamba_config.hpp"
#include "vlmamba/ops/norm.hpp"

namespace vlmamba {

// Per-layer decode state for B sequences. Copies are deep, so a copy is a snapshot.
struct MambaState {
    std::vector<Tensor> conv;  // n_layer × (B, E, K)
    std::vector<Tensor> ssm;   // n_layer × (B, E, N)
    int batch = 0;

    MambaState() = default;
    MambaState(const MambaState& o) : batch(o.batch) { copy_from(o); }
    MambaState& operator=(const MambaState& o) {
        if (this != &o) { batch = o.batch; conv.clear(); ssm.clear(); copy_from(o); }
        return *this;
    }
    MambaState(MambaState&&) noexcept = default;
    MambaState& operator=(MambaState&&) noexcept = default;

    // The state of the listed sequences only, in that order (finished sequences leave a batch).
    MambaState rows(std::span<const int> keep) const {
        MambaState s;
        s.batch = int(keep.size());
        auto take = [&](const Tensor& t) {
            Tensor out = Tensor::empty({s.batch, t.size(1), t.size(2)});  // (B', E, K|N)
            const std::int64_t n = t.size(1) * t.size(2);
            for (int i = 0; i < s.batch; ++i) {
                VLM_CHECK(keep[i] >= 0 && keep[i] < batch, "mamba_state", "expected rows in [0, ", batch, "), got ",
                          keep[i]);
                std::memcpy(out.data<float>() + i * n, t.data<float>() + keep[i] * n, std::size_t(n) * 4);
            }
            return out;
        };
        for (const auto& t : conv) s.conv.push_back(take(t));
        for (const auto& t : ssm) s.ssm.push_back(take(t));
        return s;
    }

    // Appends the sequences of `o` (same model) after this state's: a sequence joins a running batch.
    void append(const MambaState& o) {
        VLM_CHECK(o.conv.size() == conv.size(), "mamba_state", "expected a state of ", conv.size(), " layers, got ",
                  o.conv.size());
        auto join = [](const Tensor& a, const Tensor& b) {
            VLM_CHECK(a.size(1) == b.size(1) && a.size(2) == b.size(2), "mamba_state", "cannot append a state ",
                      shape_str(b.shape()), " to ", shape_str(a.shape()));
            Tensor out = Tensor::empty({a.size(0) + b.size(0), a.size(1), a.size(2)});  // (B + B', E, K|N)
            const std::size_t na = std::size_t(a.numel()), nb = std::size_t(b.numel());
            if (na) std::memcpy(out.data<float>(), a.data<float>(), na * 4);
            if (nb) std::memcpy(out.data<float>() + na, b.data<float>(), nb * 4);
            return out;
        };
        for (std::size_t i = 0; i < conv.size(); ++i) {
            conv[i] = join(conv[i], o.conv[i]);
            ssm[i] = join(ssm[i], o.ssm[i]);
        }
        batch += o.batch;
    }

private:
    void copy_from(const MambaState& o) {
        for (const auto& t : o.conv) conv.push_back(t.clone());
        for (const auto& t : o.ssm) ssm.push_back(t.clone());
    }
};

struct MambaBlock {
    Tensor norm_weight;  // (D)
    MambaMixer mixer;
};

struct MambaLm {
    MambaConfig cfg;
    Tensor embedding;    // (V, D)
    std::vector<MambaBlock> layers;
    Tensor norm_f_weight;  // (D)
    Tensor lm_head;        // (V, D); shares the embedding when tied

    // `prefix` is prepended to every name (e.g. "language_model." inside a VL-Mamba file).
    static MambaLm load(const MambaConfig& cfg, const ParamSource& src, const std::string& prefix = "");

    MambaState new_state(int batch) const;
    // Embeds token ids (L) -> (L, D); ids outside [0, V) are an error.
    Tensor embed(std::span<const std::int32_t> ids) const;
    // Runs the blocks over embeddings (L, D) and returns the final-norm output (L, D). With `state`, sequence `slot`
    // continues from its state (a new state: a fresh sequence), which then holds the state after these L tokens. `layer_out`, if given, receives each block's residual stream.
    Tensor forward_hidden(const Tensor& embeds, MambaState* state = nullptr, int slot = 0,
                          std::vector<Tensor>* layer_out = nullptr) const;
    Tensor logits(const Tensor& hidden) const;  // (L, D) -> (L, V)
    // Full-sequence logits (L, V).
    Tensor forward(std::span<const std::int32_t> ids) const;
    // One token for each of B sequences -> logits (B, V).
    Tensor step(std::span<const std::int32_t> tokens, MambaState& state) const;
    Tensor step_embeds(const Tensor& embeds, MambaState& state) const;  // (B, D) -> (B, V)
};

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline MambaLm MambaLm::load(const MambaConfig& c, const ParamSource& src, const std::string& prefix) {
    MambaLm m;
    m.cfg = c;
    const std::int64_t V = c.vocab_size, D = c.d_model;
    // Both namings: mamba_ssm's backbone.embedding, HF's backbone.embeddings.
    const std::string emb = src.contains(prefix + "backbone.embeddings.weight") ? "backbone.embeddings.weight"
                                                                                : "backbone.embedding.weight";
    m.embedding = src.fetch(prefix + emb, {V, D});
    const MambaMixer::Config mc{c.d_model, c.d_inner, c.d_state, c.d_conv, c.dt_rank, c.conv_bias};
    for (int i = 0; i < c.n_layer; ++i) {
        const std::string p = prefix + "backbone.layers." + std::to_string(i) + ".";
        MambaBlock b;
        b.norm_weight = src.fetch(p + "norm.weight", {D});
        b.mixer = MambaMixer::load(mc, p + "mixer.", src);
        m.layers.push_back(std::move(b));
    }
    m.norm_f_weight = src.fetch(prefix + "backbone.norm_f.weight", {D});
    // A tied head may be stored as a duplicate or be absent (SPEC §5.1-5.2).
    if (!c.tie_embeddings || src.contains(prefix + "lm_head.weight"))
        m.lm_head = src.fetch(prefix + "lm_head.weight", {V, D});
    else
        m.lm_head = m.embedding;
    return m;
}

inline MambaState MambaLm::new_state(int batch) const {
    MambaState s;
    s.batch = batch;
    for (int i = 0; i < cfg.n_layer; ++i) {
        s.conv.push_back(Tensor::zeros({batch, cfg.d_inner, cfg.d_conv}));
        s.ssm.push_back(Tensor::zeros({batch, cfg.d_inner, cfg.d_state}));
    }
    return s;
}

inline Tensor MambaLm::embed(std::span<const std::int32_t> ids) const {
    const std::int64_t V = embedding.size(0), D = cfg.d_model;
    Tensor out = Tensor::empty({std::int64_t(ids.size()), D});  // (L, D)
    for (std::size_t t = 0; t < ids.size(); ++t) {
        VLM_CHECK(ids[t] >= 0 && ids[t] < V, "mamba_lm.embed", "token id ", ids[t], " at position ", t,
                  " is outside the embedding: expected 0 <= id < ", V);
        Tensor row = out.select(0, std::int64_t(t));   // (D) f32
        copy_into(row, embedding.select(0, ids[t]));  // (D) in the embedding's dtype (f32, bf16, f16), widened
    }
    return out;
}

inline Tensor MambaLm::forward_hidden(const Tensor& embeds, MambaState* state, int slot,
                                      std::vector<Tensor>* layer_out) const {
    VLM_CHECK(embeds.ndim() == 2 && embeds.size(1) == cfg.d_model && embeds.size(0) > 0, "mamba_lm",
              "embeddings have shape ", shape_str(embeds.shape()), ", expected (L, ", cfg.d_model, ") with L > 0");
    if (state)
        VLM_CHECK(slot >= 0 && slot < state->batch, "mamba_lm", "expected a state slot in [0, ", state->batch,
                  "), got ", slot);
    const std::int64_t E = cfg.d_inner, K = cfg.d_conv, N = cfg.d_state;
    Tensor residual = embeds.to(DType::F32).clone();  // (L, D) f32 residual stream
    for (int i = 0; i < cfg.n_layer; ++i) {
        const MambaBlock& b = layers[i];
        float* cs = state ? state->conv[i].data<float>() + std::int64_t(slot) * E * K : nullptr;
        float* ss = state ? state->ssm[i].data<float>() + std::int64_t(slot) * E * N : nullptr;
        Tensor h = b.mixer.forward(rms_norm(residual, b.norm_weight, cfg.norm_eps), cs, ss);  // (L, D)
        assign(residual, residual + h);
        if (layer_out) layer_out->push_back(residual.clone());
    }
    return rms_norm(residual, norm_f_weight, cfg.norm_eps);  // (L, D)
}

inline Tensor MambaLm::logits(const Tensor& hidden) const { return linear(hidden, lm_head); }

inline Tensor MambaLm::forward(std::span<const std::int32_t> ids) const {
    VLM_CHECK(!ids.empty(), "mamba_lm", "expected a non-empty prompt, got 0 tokens");
    return logits(forward_hidden(embed(ids)));
}

inline Tensor MambaLm::step_embeds(const Tensor& embeds, MambaState& state) const {
    check_shape("mamba_lm.step", "embeddings", embeds, {state.batch, cfg.d_model});
    Tensor residual = embeds.to(DType::F32).clone();  // (B, D)
    for (int i = 0; i < cfg.n_layer; ++i) {
        const MambaBlock& b = layers[i];
        Tensor h = b.mixer.step(rms_norm(residual, b.norm_weight, cfg.norm_eps), state.conv[i], state.ssm[i]);
        assign(residual, residual + h);
    }
    return logits(rms_norm(residual, norm_f_weight, cfg.norm_eps));  // (B, V)
}

inline Tensor MambaLm::step(std::span<const std::int32_t> tokens, MambaState& state) const {
    VLM_CHECK(std::int64_t(tokens.size()) == state.batch, "mamba_lm.step", "expected ", state.batch,
              " tokens (one per sequence), got ", tokens.size());
    return step_embeds(embed(tokens), state);
}

}  // namespace vlmamba
