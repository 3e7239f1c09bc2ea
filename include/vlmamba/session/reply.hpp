// One reply being generated: sampling, EOS and max-token stops, stop strings, and streaming of complete UTF-8
// pieces that hold back any text that may still become a stop string. Shared by Session and generate_batch.
#pragma once
#include <algorithm>
#include <optional>
#include <span>

#include "vlmamba/io/tokenizer.hpp"
#include "vlmamba/session/request.hpp"

namespace vlmamba::detail {

class Reply {
public:
    Reply(const Model& m, const Request& r, std::vector<std::string> stop, std::vector<std::int32_t> history)
        : sampler_(r.sampling), n_valid_(m.n_valid_tokens()), eos_(m.eos_token_id()), max_(r.max_tokens),
          ignore_eos_(r.ignore_eos), stop_(std::move(stop)), history_(std::move(history)) {
        if (m.tokenizer()) decoder_.emplace(*m.tokenizer());
        std::erase_if(stop_, [](const std::string& s) { return s.empty(); });
        VLM_CHECK(stop_.empty() || decoder_, "generate", "stop strings need a tokenizer");
        if (max_ == 0) finish("length");
    }

    bool done() const { return !result.finish_reason.empty(); }

    // Samples the next token from logits (V); returns it when the sequence must consume it (not EOS).
    std::optional<std::int32_t> next(std::span<const float> logits, const TokenCallback& emit) {
        const std::int32_t id = sampler_.sample(logits, n_valid_, history_);
        if (id == eos_ && !ignore_eos_) {
            finish("stop", emit);
            return std::nullopt;
        }
        result.ids.push_back(id);
        history_.push_back(id);
        if (decoder_) {
            text_ += decoder_->push(id);
            if (const auto at = find_stop()) {
                text_.resize(*at);
                finish("stop", emit, /*cut=*/true);
                return id;
            }
        }
        if (max_ >= 0 && std::int64_t(result.ids.size()) >= max_) {
            finish("length", emit);
            return id;
        }
        flush_safe(emit);
        return id;
    }

    Result result;

private:
    Sampler sampler_;
    std::int64_t n_valid_;
    std::int32_t eos_;
    int max_;
    bool ignore_eos_;
    std::vector<std::string> stop_;
    std::vector<std::int32_t> history_;
    std::optional<StreamDecoder> decoder_;
    std::string text_;           // the decoded reply so far
    std::size_t emitted_ = 0;    // bytes of text_ already given to the callback
    std::size_t searched_ = 0;   // text_ before this holds no stop string

    std::optional<std::size_t> find_stop() {
        std::size_t longest = 0;
        for (const auto& s : stop_) longest = std::max(longest, s.size());
        const std::size_t from = searched_ >= longest ? searched_ - longest + 1 : 0;
        std::optional<std::size_t> best;
        for (const auto& s : stop_)
            if (const auto p = text_.find(s, from); p != std::string::npos) best = std::min(best.value_or(p), p);
        searched_ = text_.size();
        return best;
    }
    // Emits text_ up to the longest suffix that is a prefix of a stop string.
    void flush_safe(const TokenCallback& emit) {
        std::size_t keep = 0;
        for (const auto& s : stop_)
            for (std::size_t k = std::min(s.size() - 1, text_.size() - emitted_); k > keep; --k)
                if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
                    keep = k;
                    break;
                }
        emit_to(text_.size() - keep, emit);
    }
    void emit_to(std::size_t end, const TokenCallback& emit) {
        if (end > emitted_ && emit) emit(std::string_view(text_).substr(emitted_, end - emitted_));
        emitted_ = std::max(emitted_, end);
    }
    // A reply cut at a stop string drops the decoder's incomplete rest; otherwise it is flushed.
    void finish(const char* reason, const TokenCallback& emit = {}, bool cut = false) {
        if (decoder_ && !cut) text_ += decoder_->flush();
        emit_to(text_.size(), emit);
        result.text = text_;
        result.finish_reason = reason;
    }
};

}  // namespace vlmamba::detail
