// Token sampling: greedy, temperature, top-k, top-p, min-p and a repetition penalty; a seed makes it repeatable.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <unordered_set>
#include <vector>

#include "vlmamba/core/error.hpp"

namespace vlmamba {

struct SamplingParams {
    float temperature = 0.f;     // <= 0: greedy
    int top_k = 0;               // 0: off
    float top_p = 1.f;           // 1: off
    float min_p = 0.f;           // 0: off
    float repeat_penalty = 1.f;  // 1: off (CTRL-style: divide positive logits, multiply negative ones)
    int repeat_last_n = 64;
    std::uint64_t seed = 0;
};

class Sampler {
public:
    explicit Sampler(SamplingParams p);
    // Picks a token from logits[0, n_valid); ids >= n_valid (vocabulary padding) are never chosen.
    std::int32_t sample(std::span<const float> logits, std::int64_t n_valid, std::span<const std::int32_t> history);

private:
    SamplingParams p_;
    std::mt19937_64 rng_;
    std::vector<float> work_;
    std::vector<std::int32_t> idx_;
};

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline Sampler::Sampler(SamplingParams p) : p_(p), rng_(p.seed) {
    VLM_CHECK(p.top_k >= 0, "sampler", "expected top_k >= 0, got ", p.top_k);
    VLM_CHECK(p.top_p > 0.f && p.top_p <= 1.f, "sampler", "expected top_p in (0, 1], got ", p.top_p);
    VLM_CHECK(p.min_p >= 0.f && p.min_p < 1.f, "sampler", "expected min_p in [0, 1), got ", p.min_p);
    VLM_CHECK(p.repeat_penalty > 0.f, "sampler", "expected repeat_penalty > 0, got ", p.repeat_penalty);
}

inline std::int32_t Sampler::sample(std::span<const float> logits, std::int64_t n_valid,
                                    std::span<const std::int32_t> history) {
    const std::int64_t n = std::min<std::int64_t>(n_valid, std::int64_t(logits.size()));
    VLM_CHECK(n > 0, "sampler", "expected at least one valid logit, got ", n);
    work_.assign(logits.begin(), logits.begin() + n);
    if (p_.repeat_penalty != 1.f) {
        std::unordered_set<std::int32_t> seen;
        const std::size_t from = history.size() > std::size_t(p_.repeat_last_n) ? history.size() - p_.repeat_last_n : 0;
        for (std::size_t i = from; i < history.size(); ++i) seen.insert(history[i]);
        for (std::int32_t t : seen)
            if (t >= 0 && t < n) work_[t] = work_[t] > 0 ? work_[t] / p_.repeat_penalty : work_[t] * p_.repeat_penalty;
    }
    if (p_.temperature <= 0.f) return std::int32_t(std::max_element(work_.begin(), work_.end()) - work_.begin());

    idx_.resize(std::size_t(n));
    std::iota(idx_.begin(), idx_.end(), 0);
    std::int64_t keep = n;
    auto by_logit = [&](std::int32_t a, std::int32_t b) { return work_[a] > work_[b] || (work_[a] == work_[b] && a < b); };
    if (p_.top_k > 0 && p_.top_k < keep) {
        std::partial_sort(idx_.begin(), idx_.begin() + p_.top_k, idx_.end(), by_logit);
        keep = p_.top_k;
    } else {
        std::sort(idx_.begin(), idx_.end(), by_logit);
    }
    // Softmax over the kept candidates, sorted by probability.
    std::vector<double> prob(static_cast<std::size_t>(keep));
    const double mx = work_[idx_[0]];
    double sum = 0;
    for (std::int64_t i = 0; i < keep; ++i) sum += prob[i] = std::exp((work_[idx_[i]] - mx) / p_.temperature);
    for (auto& q : prob) q /= sum;
    if (p_.top_p < 1.f) {
        double cum = 0;
        std::int64_t k = 0;
        while (k < keep) {
            cum += prob[k++];
            if (cum >= p_.top_p) break;
        }
        keep = std::max<std::int64_t>(k, 1);
    }
    if (p_.min_p > 0.f) {
        std::int64_t k = 1;
        while (k < keep && prob[k] >= p_.min_p * prob[0]) ++k;
        keep = k;
    }
    double total = 0;
    for (std::int64_t i = 0; i < keep; ++i) total += prob[i];
    double r = std::uniform_real_distribution<double>(0.0, total)(rng_);
    for (std::int64_t i = 0; i < keep; ++i) {
        r -= prob[i];
        if (r < 0) return idx_[i];
    }
    return idx_[keep - 1];
}

}  // namespace vlmamba
