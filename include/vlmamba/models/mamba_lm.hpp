// MambaLm (mamba_ssm models/mixer_seq_simple.py: MambaLMHeadModel; HF modeling_mamba.py: MambaForCausalLM):
// embedding, n_layer pre-norm blocks with an f32 residual stream, norm_f and a tied or untied head.
// Decoding is recurrent: MambaState holds every layer's conv and SSM state for B sequences. One definition for both
// devices: to(Device::Cuda) moves the weights, the ops dispatch on them, and a decode step on the GPU runs as one
// fused op of the CUDA box (cuda::MambaStep: graph-replayed, norms and dt_proj fused).
#pragma once
#include <algorithm>
#include <memory>
#include <span>
#include <vector>

#include "vlmamba/cuda/decode.hpp"
#include "vlmamba/layers/mamba_mixer.hpp"
#include "vlmamba/models/mamba_config.hpp"
#include "vlmamba/ops/elementwise.hpp"
#include "vlmamba/ops/norm.hpp"

namespace vlmamba {

// Per-layer decode state for B sequences, on the model's device. Copies are deep, so a copy is a snapshot.
struct MambaState {
    std::vector<Tensor> conv;  // n_layer × (B, E, K)
    std::vector<Tensor> ssm;   // n_layer × (B, E, N)
    int batch = 0;
    // CUDA: the fused step bound to these tensors and a model (made at the first step; dropped when they change).
    std::shared_ptr<cuda::MambaStep> step_op;

    MambaState() = default;
    MambaState(const MambaState& o) : batch(o.batch) { copy_from(o); }
    MambaState& operator=(const MambaState& o) {
        if (this != &o) { batch = o.batch; conv.clear(); ssm.clear(); step_op.reset(); copy_from(o); }
        return *this;
    }
    MambaState(MambaState&&) noexcept = default;
    MambaState& operator=(MambaState&&) noexcept = default;

    Device device() const { return conv.empty() ? Device::Cpu : conv[0].device(); }
    // The same states on another device.
    MambaState to(Device d) const {
        if (d == device()) return *this;
        MambaState s;
        s.batch = batch;
        for (const auto& t : conv) s.conv.push_back(t.to(d).contiguous());
        for (const auto& t : ssm) s.ssm.push_back(t.to(d).contiguous());
        return s;
    }

    // The state of the listed sequences only, in that order (finished sequences leave a batch).
    MambaState rows(std::span<const int> keep) const {
        MambaState s;
        s.batch = int(keep.size());
        auto take = [&](const Tensor& t) {
            Tensor out = Tensor::empty({s.batch, t.size(1), t.size(2)}, DType::F32, t.device());  // (B', E, K|N)
            for (int i = 0; i < s.batch; ++i) {
                VLM_CHECK(keep[i] >= 0 && keep[i] < batch, "mamba_state", "expected rows in [0, ", batch, "), got ",
                          keep[i]);
                Tensor dst = out.select(0, i);
                copy_into(dst, t.select(0, keep[i]));
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
            Tensor out = Tensor::empty({a.size(0) + b.size(0), a.size(1), a.size(2)}, DType::F32, a.device());
            Tensor top = out.slice(0, 0, a.size(0)), bottom = out.slice(0, a.size(0), out.size(0));  // (B + B', E, K|N)
            copy_into(top, a);
            copy_into(bottom, b);
            return out;
        };
        for (std::size_t i = 0; i < conv.size(); ++i) {
            conv[i] = join(conv[i], o.conv[i]);
            ssm[i] = join(ssm[i], o.ssm[i]);
        }
        batch += o.batch;
        step_op.reset();
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
    // A copy on `device` with the embedding, the head and the mixers' large matrices in `weights` (F32 or BF16; on
    // the CPU also F16); norms and the SSM's small parameters f32.
    MambaLm to(Device device, DType weights = DType::F32) const;
    Device device() const { return embedding.device(); }
    // Bytes of weights one decode step reads (every matrix and vector but the embedding table).
    std::size_t step_weight_bytes() const;

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
    // One token for each of B sequences -> logits (B, V) on the host. On CUDA: the fused step op.
    Tensor step(std::span<const std::int32_t> tokens, MambaState& state) const;
    // The same step, returning only each row's argmax (greedy ids): on CUDA no logits cross the bus.
    std::vector<std::int32_t> step_greedy(std::span<const std::int32_t> tokens, MambaState& state) const;
    Tensor step_embeds(const Tensor& embeds, MambaState& state) const;  // (B, D) -> (B, V) on the model's device

private:
    cuda::MambaStep& cuda_step(MambaState& state) const;
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
    // A tied head may be stored as a duplicate or be absent (SPEC §5.1-5.2); tied, the model keeps one copy.
    if (!c.tie_embeddings || src.contains(prefix + "lm_head.weight"))
        m.lm_head = src.fetch(prefix + "lm_head.weight", {V, D});
    if (c.tie_embeddings) m.lm_head = m.embedding;
    return m;
}

inline MambaLm MambaLm::to(Device device, DType weights) const {
    VLM_CHECK(weights == DType::F32 || weights == DType::BF16 || (weights == DType::F16 && device == Device::Cpu),
              "mamba_lm", "expected F32 or BF16 weights (F16 on the cpu), got ", dtype_name(weights), " on ",
              device_name(device));
    MambaLm m;
    m.cfg = cfg;
    m.embedding = embedding.to(weights).to(device);
    for (const MambaBlock& b : layers) m.layers.push_back({b.norm_weight.to(DType::F32).to(device), b.mixer.to(device, weights)});
    m.norm_f_weight = norm_f_weight.to(DType::F32).to(device);
    m.lm_head = lm_head.raw() == embedding.raw() ? m.embedding : lm_head.to(weights).to(device);
    return m;
}

inline std::size_t MambaLm::step_weight_bytes() const {
    std::size_t n = norm_f_weight.nbytes() + lm_head.nbytes();
    for (const MambaBlock& b : layers) {
        const MambaMixer& x = b.mixer;
        n += b.norm_weight.nbytes() + x.in_proj_weight.nbytes() + x.conv1d_weight.nbytes() +
             (x.conv1d_bias.defined() ? x.conv1d_bias.nbytes() : 0) + x.x_proj_weight.nbytes() +
             x.dt_proj_weight.nbytes() + x.dt_proj_bias.nbytes() + x.A.nbytes() + x.D.nbytes() +
             x.out_proj_weight.nbytes();
    }
    return n;
}

inline MambaState MambaLm::new_state(int batch) const {
    VLM_CHECK(batch >= 0, "mamba_lm.new_state", "expected batch >= 0, got ", batch);
    MambaState s;
    s.batch = batch;
    // one allocation per kind, a view per layer
    const Tensor conv = Tensor::zeros({cfg.n_layer, batch, cfg.d_inner, cfg.d_conv}, DType::F32, device());
    const Tensor ssm = Tensor::zeros({cfg.n_layer, batch, cfg.d_inner, cfg.d_state}, DType::F32, device());
    for (int i = 0; i < cfg.n_layer; ++i) {
        s.conv.push_back(conv.select(0, i));  // (B, E, K)
        s.ssm.push_back(ssm.select(0, i));    // (B, E, N)
    }
    return s;
}

inline Tensor MambaLm::embed(std::span<const std::int32_t> ids) const {
    const std::int64_t V = embedding.size(0), D = cfg.d_model;
    for (std::size_t t = 0; t < ids.size(); ++t)
        VLM_CHECK(ids[t] >= 0 && ids[t] < V, "mamba_lm.embed", "token id ", ids[t], " at position ", t,
                  " is outside the embedding: expected 0 <= id < ", V);
    Tensor out = Tensor::empty({std::int64_t(ids.size()), D}, DType::F32, device());  // (L, D)
    if (embedding.is_cuda()) {
        if (ids.empty()) return out;
        Tensor host_ids = Tensor::empty({std::int64_t(ids.size())}, DType::I32);
        std::copy(ids.begin(), ids.end(), host_ids.data<std::int32_t>());
        const Tensor dev_ids = host_ids.to(Device::Cuda);
        cuda::embedding(out.data<float>(), embedding.raw(), embedding.dtype(), dev_ids.data<std::int32_t>(),
                        int(ids.size()), int(D), int(V));
        return out;
    }
    for (std::size_t t = 0; t < ids.size(); ++t) {
        Tensor row = out.select(0, std::int64_t(t));   // (D) f32
        copy_into(row, embedding.select(0, ids[t]));  // (D) in the embedding's dtype (f32, bf16, f16), widened
    }
    return out;
}

inline Tensor MambaLm::forward_hidden(const Tensor& embeds, MambaState* state, int slot,
                                      std::vector<Tensor>* layer_out) const {
    VLM_CHECK(embeds.ndim() == 2 && embeds.size(1) == cfg.d_model && embeds.size(0) > 0, "mamba_lm",
              "embeddings have shape ", shape_str(embeds.shape()), ", expected (L, ", cfg.d_model, ") with L > 0");
    if (state) {
        VLM_CHECK(slot >= 0 && slot < state->batch, "mamba_lm", "expected a state slot in [0, ", state->batch,
                  "), got ", slot);
        VLM_CHECK(state->device() == device(), "mamba_lm", "expected a state on ", device_name(device()), ", got ",
                  device_name(state->device()));
    }
    Tensor residual = embeds.to(device()).to(DType::F32).clone();  // (L, D) f32 residual stream
    for (int i = 0; i < cfg.n_layer; ++i) {
        const MambaBlock& b = layers[i];
        Tensor cs, ss;  // (E, K), (E, N): this sequence's rows of the states
        if (state) cs = state->conv[i].select(0, slot), ss = state->ssm[i].select(0, slot);
        Tensor h = b.mixer.forward(rms_norm(residual, b.norm_weight, cfg.norm_eps), state ? &cs : nullptr,
                                   state ? &ss : nullptr);  // (L, D)
        add_(residual, h);
        if (layer_out) layer_out->push_back(residual.clone());
    }
    return rms_norm(residual, norm_f_weight, cfg.norm_eps);  // (L, D)
}

inline Tensor MambaLm::logits(const Tensor& hidden) const { return linear(hidden, lm_head); }

inline Tensor MambaLm::forward(std::span<const std::int32_t> ids) const {
    VLM_CHECK(!ids.empty(), "mamba_lm", "expected a non-empty prompt, got 0 tokens");
    return logits(forward_hidden(embed(ids)));  // (L, V) on the model's device
}

inline Tensor MambaLm::step_embeds(const Tensor& embeds, MambaState& state) const {
    check_shape("mamba_lm.step", "embeddings", embeds, {state.batch, cfg.d_model});
    Tensor residual = embeds.to(device()).to(DType::F32).clone();  // (B, D)
    for (int i = 0; i < cfg.n_layer; ++i) {
        const MambaBlock& b = layers[i];
        add_(residual, b.mixer.step(rms_norm(residual, b.norm_weight, cfg.norm_eps), state.conv[i], state.ssm[i]));
    }
    return logits(rms_norm(residual, norm_f_weight, cfg.norm_eps));  // (B, V)
}

inline cuda::MambaStep& MambaLm::cuda_step(MambaState& state) const {
    VLM_CHECK(state.device() == Device::Cuda, "mamba_lm.step", "expected a state on cuda, got cpu");
    const DType wd = layers[0].mixer.in_proj_weight.dtype();
    if (state.step_op) {
        const cuda::MambaStepArgs& a = state.step_op->args();
        if (a.embedding == embedding.raw() && a.batch == state.batch && a.layers[0].conv_state == state.conv[0].data<float>())
            return *state.step_op;
    }
    cuda::MambaStepArgs a{state.batch, cfg.d_model, cfg.d_inner, cfg.d_state, cfg.d_conv, cfg.dt_rank,
                          cfg.vocab_size, cfg.norm_eps, wd, embedding.raw(), norm_f_weight.data<float>(),
                          lm_head.raw(), {}};
    VLM_CHECK(embedding.dtype() == wd && lm_head.dtype() == wd, "mamba_lm.step",
              "on cuda, expected the embedding and head in the matrices' dtype ", dtype_name(wd), ", got ",
              dtype_name(embedding.dtype()), " and ", dtype_name(lm_head.dtype()), " (use MambaLm::to)");
    for (int i = 0; i < cfg.n_layer; ++i) {
        const MambaMixer& x = layers[i].mixer;
        a.layers.push_back({layers[i].norm_weight.data<float>(), x.in_proj_weight.raw(), x.conv1d_weight.data<float>(),
                            x.conv1d_bias.defined() ? x.conv1d_bias.data<float>() : nullptr, x.x_proj_weight.raw(),
                            x.dt_proj_weight.raw(), x.dt_proj_bias.data<float>(), x.A.data<float>(),
                            x.D.data<float>(), x.out_proj_weight.raw(), state.conv[i].data<float>(),
                            state.ssm[i].data<float>()});
    }
    state.step_op = std::make_shared<cuda::MambaStep>(a);
    return *state.step_op;
}

inline Tensor MambaLm::step(std::span<const std::int32_t> tokens, MambaState& state) const {
    VLM_CHECK(std::int64_t(tokens.size()) == state.batch, "mamba_lm.step", "expected ", state.batch,
              " tokens (one per sequence), got ", tokens.size());
    if (device() == Device::Cpu) return step_embeds(embed(tokens), state);
    Tensor out = Tensor::empty({state.batch, cfg.vocab_size});  // (B, V) on the host
    cuda_step(state).run(tokens.data(), out.data<float>(), nullptr);
    return out;
}

inline std::vector<std::int32_t> MambaLm::step_greedy(std::span<const std::int32_t> tokens, MambaState& state) const {
    VLM_CHECK(std::int64_t(tokens.size()) == state.batch, "mamba_lm.step", "expected ", state.batch,
              " tokens (one per sequence), got ", tokens.size());
    std::vector<std::int32_t> ids(std::size_t(state.batch));
    if (device() == Device::Cuda) {
        cuda_step(state).run(tokens.data(), nullptr, ids.data());
        return ids;
    }
    const Tensor logits = step(tokens, state);  // (B, V)
    const std::int64_t V = cfg.vocab_size;
    for (int b = 0; b < state.batch; ++b) {
        const float* row = logits.data<float>() + b * V;
        ids[std::size_t(b)] = std::int32_t(std::max_element(row, row + V) - row);
    }
    return ids;
}

}  // namespace vlmamba
