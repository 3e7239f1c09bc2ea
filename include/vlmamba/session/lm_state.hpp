// The recurrent state of B sequences on the model's device, and the prefill and step that advance it.
// CPU: MambaLm + MambaState. CUDA: CudaMambaLm + CudaMambaState; there a prefill starts a sequence from a fresh
// state, a later text-only prefill runs as steps, and states stay on the device (no snapshot, no row removal).
#pragma once
#include <optional>
#include <span>
#include <vector>

#include "vlmamba/session/model.hpp"

namespace vlmamba::detail {

class LmState {
public:
    LmState(const Model& m, int batch) : m_(&m), fresh_(std::size_t(batch), true) {
#ifdef VLMAMBA_WITH_CUDA
        if (m.cuda_lm()) gpu_.emplace(m.cuda_lm()->new_state(batch));
#endif
        if (!gpu_) cpu_.emplace(m.lm().new_state(batch));
    }

    int batch() const { return int(fresh_.size()); }

    // Sequence `slot` continues with L positions: embeds (L, D), whose rows are the token ids `ids` when the input is
    // text only (else empty). Returns the logits of the last position (1, V).
    Tensor prefill(const Tensor& embeds, std::span<const std::int32_t> ids, int slot) {
        const bool fresh = fresh_[std::size_t(slot)];
        fresh_[std::size_t(slot)] = false;
        if (cpu_) {
            const Tensor h = m_->lm().forward_hidden(embeds, &*cpu_, slot);   // (L, D)
            return m_->lm().logits(h.slice(0, h.size(0) - 1, h.size(0)));     // (1, V)
        }
#ifdef VLMAMBA_WITH_CUDA
        if (fresh) return m_->cuda_lm()->prefill_embeds(embeds, *gpu_, slot);
        VLM_CHECK(!ids.empty() && batch() == 1, "session",
                  "on cuda, a later turn takes text only (an image enters the first turn)");
        Tensor last;
        for (const std::int32_t id : ids) last = m_->cuda_lm()->step(std::span<const std::int32_t>(&id, 1), *gpu_);
        return last;
#else
        (void)fresh, (void)ids;
        fail("session", "unreachable: no CUDA state without CUDA");
#endif
    }

    // One token for each of the B sequences -> logits (B, V).
    Tensor step(std::span<const std::int32_t> tokens) {
#ifdef VLMAMBA_WITH_CUDA
        if (gpu_) return m_->cuda_lm()->step(tokens, *gpu_);
#endif
        return m_->lm().step(tokens, *cpu_);
    }

    // Keeps only the listed sequences (CPU; on CUDA the rows stay and the caller steps them with a filler).
    bool keep_rows(std::span<const int> rows) {
        if (!cpu_) return false;
        *cpu_ = cpu_->rows(rows);
        std::vector<bool> f;
        for (const int r : rows) f.push_back(fresh_[std::size_t(r)]);
        fresh_ = std::move(f);
        return true;
    }

    const MambaState& host() const {
        VLM_CHECK(cpu_, "session", "snapshots of a state on cuda are not supported yet; load the model on the cpu");
        return *cpu_;
    }
    void set_host(MambaState s, bool fresh) {
        VLM_CHECK(cpu_, "session", "restoring a state on cuda is not supported yet; load the model on the cpu");
        *cpu_ = std::move(s);
        fresh_.assign(std::size_t(cpu_->batch), fresh);
    }

private:
    const Model* m_;
    std::vector<bool> fresh_;
    std::optional<MambaState> cpu_;
#ifdef VLMAMBA_WITH_CUDA
    std::optional<CudaMambaState> gpu_;
#else
    std::optional<int> gpu_;  // never set
#endif
};

}  // namespace vlmamba::detail
