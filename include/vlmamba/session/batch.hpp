// B independent requests decoded together: every image of the batch goes through the vision tower in one forward,
// each row is prefilled into its slot of one B-row state, then one batched step advances every unfinished row.
// Each row has its own sampling and stop conditions; a finished row leaves the batch (its slot is freed).
#pragma once
#include <functional>

#include "vlmamba/session/lm_state.hpp"
#include "vlmamba/session/reply.hpp"
#include "vlmamba/session/turn.hpp"

namespace vlmamba {

// Gets (row, piece) as each row's reply streams.
using BatchCallback = std::function<void(std::size_t row, std::string_view piece)>;

// Results in request order. Timings: preprocess, vision and connector are the batch's, shared by every row;
// prefill is the row's own; decode is the batched loop's time until the row finished.
std::vector<Result> generate_batch(const Model& m, std::span<const Request> requests,
                                   const BatchCallback& on_token = {});

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline std::vector<Result> generate_batch(const Model& m, std::span<const Request> requests,
                                          const BatchCallback& on_token) {
    const int B = int(requests.size());
    const std::size_t nb = requests.size();
    if (B == 0) return {};
    Timings shared;
    // Every image of every row, in one tower forward.
    std::vector<const ImageInput*> all;
    std::vector<std::size_t> first_image;
    for (const Request& r : requests) {
        first_image.push_back(all.size());
        for (const ImageInput* im : detail::request_images(r)) all.push_back(im);
    }
    VLM_CHECK(all.empty() || m.vl(), "generate", m.dir().string(),
              " is a text-only Mamba LM: it takes no images (use a VL-Mamba directory)");
    const Tensor pixels = detail::request_pixels(m, all, shared);  // (n, 3, S, S)
    const std::vector<Tensor> prefixes = pixels.defined() ? m.image_prefixes(pixels, shared) : std::vector<Tensor>{};

    detail::LmState state(m, B);
    std::vector<detail::Reply> replies;
    std::vector<Tensor> last(nb);  // (1, V) per row
    std::vector<double> prefill_s(nb);
    std::vector<std::int64_t> prompt_rows(nb), image_rows(nb);
    for (int b = 0; b < B; ++b) {
        const Request& r = requests[std::size_t(b)];
        const std::size_t n_img = detail::request_images(r).size();
        const detail::TurnInput in = detail::assemble_turn(
            m, r, {}, std::span<const Tensor>(prefixes).subspan(first_image[std::size_t(b)], n_img));
        const auto t0 = std::chrono::steady_clock::now();
        last[std::size_t(b)] = state.prefill(in.embeds, b);
        prefill_s[std::size_t(b)] = detail::seconds_since(t0);
        prompt_rows[std::size_t(b)] = in.embeds.size(0);
        image_rows[std::size_t(b)] = in.image_tokens;
        replies.emplace_back(m, r, in.stop, in.record);
    }

    std::vector<double> decode_s(nb);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<int> live(nb);  // state row -> request row
    for (int b = 0; b < B; ++b) live[std::size_t(b)] = b;
    std::vector<std::int32_t> tokens;
    while (!live.empty()) {
        // Sample each live row; collect the rows that go on.
        std::vector<int> keep, keep_pos;
        tokens.clear();
        for (std::size_t i = 0; i < live.size(); ++i) {
            const int b = live[i];
            const Tensor& lg = last[std::size_t(b)];
            const BatchCallback& cb = on_token;
            const TokenCallback emit = cb ? TokenCallback([&cb, b](std::string_view p) { cb(std::size_t(b), p); })
                                          : TokenCallback();
            const auto id = replies[std::size_t(b)].next({lg.data<float>(), std::size_t(lg.numel())}, emit);
            if (!id || replies[std::size_t(b)].done()) {
                decode_s[std::size_t(b)] = detail::seconds_since(t0);
                continue;
            }
            keep.push_back(b);
            keep_pos.push_back(int(i));
            tokens.push_back(*id);
        }
        if (keep.empty()) break;
        if (keep.size() != live.size()) {
            state.keep_rows(keep_pos);
            live = keep;
        }
        const Tensor logits = state.step(tokens);  // (B', V)
        for (std::size_t i = 0; i < live.size(); ++i) last[std::size_t(live[i])] = logits.slice(0, i, i + 1);
    }
    std::vector<Result> out;
    for (int b = 0; b < B; ++b) {
        Result r = std::move(replies[std::size_t(b)].result);
        r.prompt_tokens = prompt_rows[std::size_t(b)];
        r.image_tokens = image_rows[std::size_t(b)];
        r.timings = shared;
        r.timings.prefill = prefill_s[std::size_t(b)];
        r.timings.decode = decode_s[std::size_t(b)];
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace vlmamba
