// The recurrent state of B sequences on the model's device, and the prefill and step that advance it.
#pragma once
#include <span>
#include <vector>

#include "vlmamba/session/model.hpp"

namespace vlmamba::detail {

class LmState {
public:
    LmState(const Model& m, int batch) : m_(&m), state_(m.lm().new_state(batch)) {}

    int batch() const { return state_.batch; }

    // Sequence `slot` continues with L positions: embeds (L, D). Returns the logits of the last position (1, V) on
    // the host.
    Tensor prefill(const Tensor& embeds, int slot) {
        const Tensor h = m_->lm().forward_hidden(embeds, &state_, slot);   // (L, D)
        return m_->lm().logits(h.slice(0, h.size(0) - 1, h.size(0))).to(Device::Cpu);  // (1, V)
    }

    // One token for each of the B sequences -> logits (B, V) on the host.
    Tensor step(std::span<const std::int32_t> tokens) { return m_->lm().step(tokens, state_); }

    // Keeps only the listed sequences.
    void keep_rows(std::span<const int> rows) { state_ = state_.rows(rows); }

    // The states on the host (a snapshot), and back.
    MambaState host() const { return state_.to(Device::Cpu); }
    void set_host(const MambaState& s) { state_ = s.to(m_->lm().device()); }

private:
    const Model* m_;
    MambaState state_;
};

}  // namespace vlmamba::detail
