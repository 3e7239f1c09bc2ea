// A turn's input: the request's images and text rendered with the chat template after what the conversation already
// holds, as one block of LM input embeddings. Shared by Session and generate_batch.
#pragma once
#include <algorithm>
#include <chrono>
#include <span>
#include <string>
#include <vector>

#include "vlmamba/session/request.hpp"

namespace vlmamba::detail {

// What a conversation's state already holds.
struct Conversation {
    std::vector<std::int32_t> tokens;   // consumed by the state; an image position is -1
    std::vector<std::int32_t> pending;  // sampled last, not consumed yet (a reply cut by length or a stop string)
    bool open_reply = false;            // a templated reply ended: the template's assistant_suffix comes next
    // Whether a text turn has begun (image positions alone, a cached image prefix, still await the first turn).
    bool started() const {
        return !pending.empty() || std::any_of(tokens.begin(), tokens.end(), [](std::int32_t t) { return t >= 0; });
    }
};

struct TurnInput {
    Tensor embeds;                      // (L, D) on the LM's device
    std::vector<std::int32_t> record;   // the L positions as history (images as -1)
    std::vector<std::string> stop;      // the request's stop strings and the template's
    std::int64_t image_tokens = 0;
    bool templated = false;
};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The request's images in the order they enter the sequence.
inline std::vector<const ImageInput*> request_images(const Request& r) {
    std::vector<const ImageInput*> out;
    for (const auto& im : r.images) out.push_back(&im);
    for (const auto& msg : r.messages)
        for (const auto& im : msg.images) out.push_back(&im);
    return out;
}

// Pixels (n, 3·T, S, S) of the request's images; adds the seconds to t.preprocess. Undefined when there are none.
inline Tensor request_pixels(const Model& m, const std::vector<const ImageInput*>& images, Timings& t) {
    if (images.empty()) return {};
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<Tensor> px;
    for (const ImageInput* im : images) px.push_back(m.pixels(*im));  // (1, 3·T, S, S)
    const std::int64_t Ch = px[0].size(1), S = px[0].size(2), n = std::int64_t(px.size());
    Tensor out = Tensor::empty({n, Ch, S, S});  // (n, 3·T, S, S)
    for (std::int64_t i = 0; i < n; ++i) {
        Tensor dst = out.select(0, i);
        copy_into(dst, px[std::size_t(i)].select(0, 0));
    }
    t.preprocess += seconds_since(t0);
    return out;
}

// Renders the turn; `prefixes` are the images' connector outputs (L_v, d), in request_images order.
inline TurnInput assemble_turn(const Model& m, const Request& r, const Conversation& conv,
                               std::span<const Tensor> prefixes) {
    constexpr const char* op = "generate";
    struct Piece {
        std::string text;
        std::vector<std::int32_t> ids;
        Tensor prefix;  // defined for an image
    };
    std::vector<Piece> pieces;
    auto text = [&](const std::string& s) {
        if (s.empty()) return;
        if (!pieces.empty() && !pieces.back().prefix.defined() && pieces.back().ids.empty()) pieces.back().text += s;
        else pieces.push_back({s, {}, {}});
    };
    std::size_t next_image = 0;
    auto images = [&](const std::vector<ImageInput>& list) {
        for (std::size_t i = 0; i < list.size(); ++i) pieces.push_back({{}, {}, prefixes[next_image++]});
    };
    const ChatTemplate& tmpl = m.chat_template();
    const int forms = int(!r.prompt.empty() || !r.images.empty()) + int(!r.messages.empty()) + int(r.ids.has_value());
    VLM_CHECK(forms == 1 || (r.ids && r.messages.empty() && r.prompt.empty()), op,
              "expected one of prompt (with images), messages or ids, got ", forms == 0 ? "none" : "several");
    const bool templated = !r.ids && !r.raw;
    TurnInput in;
    in.templated = templated;
    in.stop = r.stop;
    if (templated) in.stop.insert(in.stop.end(), tmpl.stop.begin(), tmpl.stop.end());

    if (!conv.pending.empty()) pieces.push_back({{}, conv.pending, {}});
    if (conv.open_reply && templated) text(tmpl.assistant_suffix);
    if (r.ids) {
        images(r.images);
        pieces.push_back({{}, *r.ids, {}});
    } else if (r.raw) {
        images(r.images);
        text(r.prompt);
    } else {
        const std::vector<Message> msgs = r.messages.empty() ? std::vector<Message>{{"user", r.prompt, r.images}}
                                                             : r.messages;
        VLM_CHECK(msgs.back().role == "user", op, "expected the last message to be the user's, got \"",
                  msgs.back().role, "\"");
        bool started = conv.started();
        std::string system;
        for (std::size_t i = 0; i < msgs.size(); ++i) {
            const Message& msg = msgs[i];
            if (msg.role == "system") {
                VLM_CHECK(!started && i == 0, op, "a system message must open the conversation (message ", i, ")");
                system = msg.content;
            } else if (msg.role == "user") {
                images(msg.images);
                text(started ? tmpl.next_turn(msg.content) : tmpl.first_turn(msg.content, system));
                started = true;
            } else if (msg.role == "assistant") {
                VLM_CHECK(started && msg.images.empty(), op, "an assistant message must follow a user message and ",
                          "carry no image (message ", i, ")");
                text(msg.content + tmpl.assistant_suffix);
            } else {
                fail(op, "message ", i, " has role \"", msg.role, "\": expected system, user or assistant");
            }
        }
    }
    // Encode, then lay the pieces out as embeddings.
    const MambaLm& lm = m.lm();
    std::vector<std::vector<std::int32_t>> ids_of(pieces.size());
    std::int64_t L = 0;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        Piece& p = pieces[i];
        if (p.prefix.defined()) {
            L += p.prefix.size(0);
            in.image_tokens += p.prefix.size(0);
            continue;
        }
        if (!p.text.empty()) {
            VLM_CHECK(m.tokenizer(), op, m.dir().string(), ": text needs a tokenizer.json (in the model directory, ",
                      "or --tokenizer FILE); or give token ids");
            ids_of[i] = m.tokenizer()->encode(p.text);
        } else {
            ids_of[i] = p.ids;
        }
        L += std::int64_t(ids_of[i].size());
    }
    VLM_CHECK(L > 0, op, "expected a prompt (text, ids or an image), got nothing");
    const std::int64_t D = lm.cfg.d_model;
    in.embeds = Tensor::empty({L, D}, DType::F32, lm.device());  // (L, D)
    std::int64_t row = 0;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        const Tensor& src = pieces[i].prefix.defined() ? pieces[i].prefix : lm.embed(ids_of[i]);  // (l, D)
        const std::int64_t l = pieces[i].prefix.defined() ? src.size(0) : std::int64_t(ids_of[i].size());
        if (l == 0) continue;
        Tensor dst = in.embeds.slice(0, row, row + l);
        copy_into(dst, src);
        row += l;
        if (pieces[i].prefix.defined()) in.record.insert(in.record.end(), std::size_t(l), -1);
        else in.record.insert(in.record.end(), ids_of[i].begin(), ids_of[i].end());
    }
    return in;
}

}  // namespace vlmamba::detail
