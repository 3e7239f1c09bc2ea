// A conversation with a Model: each generate() is one turn. The recurrent state is kept between turns, so a turn
// prefills only its new input (Mamba's state is O(1) in the history). A state can be snapshotted and restored, or
// saved to a safetensors file with the token history and the model's fingerprint, and loaded in another process.
// A Session belongs to one thread; many Sessions may share one Model.
#pragma once
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "vlmamba/io/safetensors.hpp"
#include "vlmamba/session/lm_state.hpp"
#include "vlmamba/session/reply.hpp"
#include "vlmamba/session/turn.hpp"

namespace vlmamba {

class Session {
public:
    explicit Session(const Model& model) : m_(&model), state_(model, 1) {}
    const Model& model() const { return *m_; }

    // One turn: the request's input after the conversation so far, then the reply (streamed to on_token).
    Result generate(const Request& request, const TokenCallback& on_token = {});

    // Forgets the conversation.
    void clear() {
        state_ = detail::LmState(*m_, 1);
        conv_ = {};
    }
    // Every position of the conversation (image positions are -1), the last sampled token included.
    std::vector<std::int32_t> tokens() const {
        std::vector<std::int32_t> t = conv_.tokens;
        t.insert(t.end(), conv_.pending.begin(), conv_.pending.end());
        return t;
    }

    struct Snapshot {
        MambaState state;
        detail::Conversation conv;
    };
    Snapshot snapshot() const { return {state_.host(), conv_}; }
    void restore(const Snapshot& s) {
        state_.set_host(s.state);
        conv_ = s.conv;
    }
    // A safetensors file: the states, the history and the model's fingerprint (a different model is refused).
    void save(const std::filesystem::path& file) const;
    void load(const std::filesystem::path& file);

private:
    const Model* m_;
    detail::LmState state_;
    detail::Conversation conv_;
};

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline Result Session::generate(const Request& req, const TokenCallback& on_token) {
    Timings t;
    const auto images = detail::request_images(req);
    VLM_CHECK(images.empty() || m_->vl(), "generate", m_->dir().string(),
              " is a text-only Mamba LM: it takes no images (use a VL-Mamba directory)");
    const Tensor pixels = detail::request_pixels(*m_, images, t);  // (n, 3, S, S)
    const std::vector<Tensor> prefixes = pixels.defined() ? m_->image_prefixes(pixels, t) : std::vector<Tensor>{};
    detail::TurnInput in = detail::assemble_turn(*m_, req, conv_, prefixes);

    auto t0 = std::chrono::steady_clock::now();
    Tensor last = state_.prefill(in.embeds, 0);  // (1, V)
    t.prefill = detail::seconds_since(t0);
    conv_.tokens.insert(conv_.tokens.end(), in.record.begin(), in.record.end());
    conv_.pending.clear();

    detail::Reply reply(*m_, req, in.stop, conv_.tokens);
    t0 = std::chrono::steady_clock::now();
    while (!reply.done()) {
        const auto id = reply.next({last.data<float>(), std::size_t(last.numel())}, on_token);
        if (!id) break;  // EOS: not consumed; the template's assistant_suffix brings it back
        if (reply.done()) {
            conv_.pending = {*id};
            break;
        }
        last = state_.step(std::span<const std::int32_t>(&*id, 1));
        conv_.tokens.push_back(*id);
    }
    t.decode = detail::seconds_since(t0);
    conv_.open_reply = in.templated;
    Result r = std::move(reply.result);
    r.prompt_tokens = in.embeds.size(0);
    r.image_tokens = in.image_tokens;
    r.timings = t;
    return r;
}

inline void Session::save(const std::filesystem::path& file) const {
    const MambaState s = state_.host();
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (std::size_t i = 0; i < s.conv.size(); ++i) {
        tensors.emplace_back("conv." + std::to_string(i), s.conv[i]);  // (1, E, K)
        tensors.emplace_back("ssm." + std::to_string(i), s.ssm[i]);    // (1, E, N)
    }
    auto ids = [](const std::vector<std::int32_t>& v) {
        Tensor t = Tensor::empty({std::int64_t(v.size())}, DType::I32);
        std::copy(v.begin(), v.end(), t.data<std::int32_t>());
        return t;
    };
    if (!conv_.tokens.empty()) tensors.emplace_back("tokens", ids(conv_.tokens));
    if (!conv_.pending.empty()) tensors.emplace_back("pending", ids(conv_.pending));
    char fp[17];
    std::snprintf(fp, sizeof fp, "%016llx", static_cast<unsigned long long>(m_->fingerprint()));
    save_safetensors(file, tensors,
                     {{"format", "vlmamba-session"}, {"version", "1"}, {"fingerprint", fp},
                      {"variant", m_->variant()}, {"open_reply", conv_.open_reply ? "1" : "0"}});
}

inline void Session::load(const std::filesystem::path& file) {
    constexpr const char* op = "session";
    const std::string f = file.string();
    const SafetensorsFile st = SafetensorsFile::open(file);
    const auto& meta = st.metadata();
    auto get = [&](const char* k) {
        const auto it = meta.find(k);
        return it == meta.end() ? std::string() : it->second;
    };
    VLM_CHECK(get("format") == "vlmamba-session", op, f, ": expected a saved session (metadata format ",
              "\"vlmamba-session\"), got \"", get("format"), "\"");
    VLM_CHECK(get("version") == "1", op, f, ": expected session format version 1, got \"", get("version"), "\"");
    char fp[17];
    std::snprintf(fp, sizeof fp, "%016llx", static_cast<unsigned long long>(m_->fingerprint()));
    VLM_CHECK(get("fingerprint") == fp, op, f, ": saved by another model (fingerprint ", get("fingerprint"), ", ",
              get("variant"), "), expected ", fp, " (", m_->variant(), ")");
    const MambaConfig& c = m_->lm().cfg;
    MambaState s = m_->lm().new_state(1);
    for (int i = 0; i < c.n_layer; ++i) {
        const std::string cn = "conv." + std::to_string(i), sn = "ssm." + std::to_string(i);
        VLM_CHECK(st.contains(cn) && st.contains(sn), op, f, ": expected tensors ", cn, " and ", sn, ", got none");
        check_shape(op, cn.c_str(), st.get(cn), s.conv[std::size_t(i)].shape());
        check_shape(op, sn.c_str(), st.get(sn), s.ssm[std::size_t(i)].shape());
        copy_into(s.conv[std::size_t(i)], st.get(cn).to(DType::F32));
        copy_into(s.ssm[std::size_t(i)], st.get(sn).to(DType::F32));
    }
    auto ids = [&](const char* name) {
        std::vector<std::int32_t> v;
        if (!st.contains(name)) return v;
        const Tensor t = st.get(name);
        VLM_CHECK(t.dtype() == DType::I32 && t.ndim() == 1, op, f, ": expected ", name, " as I32 (n), got ",
                  dtype_name(t.dtype()), " ", shape_str(t.shape()));
        const std::int64_t V = c.vocab_size;
        for (std::int64_t i = 0; i < t.numel(); ++i) {
            const std::int32_t id = t.data<std::int32_t>()[i];
            VLM_CHECK(id >= -1 && id < V, op, f, ": ", name, "[", i, "] = ", id, " is outside [-1, ", V, ")");
            v.push_back(id);
        }
        return v;
    };
    detail::Conversation conv;
    conv.tokens = ids("tokens");
    conv.pending = ids("pending");
    VLM_CHECK(std::find(conv.pending.begin(), conv.pending.end(), -1) == conv.pending.end(), op, f,
              ": pending tokens cannot be image positions");
    conv.open_reply = get("open_reply") == "1";
    restore({std::move(s), std::move(conv)});
}

}  // namespace vlmamba
