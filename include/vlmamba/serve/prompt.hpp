// A chat request rendered for the model: a list of units (an image, or a run of text tokens) and the request's key.
// Each message is rendered and tokenized on its own (the chat template's first_turn / next_turn / assistant_suffix),
// so a conversation's key begins with the key of every earlier turn: the prefix-state cache relies on that.
// The key holds a text token as its id and an image as 4 words of its bytes' SHA-256 (top bit set), so one client
// cannot reach another's cached image without its bytes.
#pragma once
#include <cstdint>
#include <vector>

#include "vlmamba/io/sha256.hpp"
#include "vlmamba/serve/openai.hpp"
#include "vlmamba/session/model.hpp"

namespace vlmamba::serve {

struct PromptUnit {
    std::vector<std::int32_t> ids;  // a run of text tokens; empty for an image
    Tensor pixels;                  // an image: (1, C, S, S)
    std::int64_t positions = 0;     // in the LM's sequence
};

struct Prompt {
    std::vector<PromptUnit> units;
    std::vector<std::uint64_t> key;
    std::vector<std::size_t> key_end;  // the key's length after each unit
    std::int64_t positions = 0;        // what a prefill from nothing covers (image tokens included)
    std::int64_t image_positions = 0;
    std::vector<std::int32_t> text_ids;  // every text token, in order (the sampler's history)
    std::vector<std::string> stop;       // the template's stop strings
};

Prompt render_prompt(const Model& m, const ChatRequest& r, const Limits& limits);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline Prompt render_prompt(const Model& m, const ChatRequest& r, const Limits& limits) {
    const ChatTemplate& tmpl = m.chat_template();
    if (!m.tokenizer()) throw ApiError(500, "server_error", "the model has no tokenizer.json: it cannot take text");
    Prompt p;
    p.stop = tmpl.stop;
    const std::int64_t image_len =
        m.vl() ? std::int64_t(m.vl()->config().vision.grid()) * m.vl()->config().vision.grid() : 0;
    auto close_unit = [&] { p.key_end.push_back(p.key.size()); };
    auto text = [&](const std::string& s) {
        if (s.empty()) return;
        const std::vector<std::int32_t> ids = m.tokenizer()->encode(s);
        if (ids.empty()) return;
        if (p.units.empty() || p.units.back().pixels.defined()) {
            p.units.push_back({});
            p.key_end.push_back(0);
        }
        PromptUnit& u = p.units.back();
        u.ids.insert(u.ids.end(), ids.begin(), ids.end());
        u.positions += std::int64_t(ids.size());
        p.text_ids.insert(p.text_ids.end(), ids.begin(), ids.end());
        for (const std::int32_t id : ids) p.key.push_back(std::uint64_t(std::uint32_t(id)));
        p.positions += std::int64_t(ids.size());
        p.key_end.back() = p.key.size();
    };
    auto image = [&](const ChatImage& im) {
        if (!m.vl()) throw invalid_request("the model " + m.variant() + " is text-only: it takes no images", im.where);
        Image decoded;
        try {
            decoded = decode_image(im.bytes, im.where);
        } catch (const Error& e) {
            throw invalid_request(e.what(), im.where, "invalid_image");
        }
        PromptUnit u;
        u.pixels = m.pixels(decoded);  // (1, C, S, S)
        u.positions = image_len;
        p.units.push_back(std::move(u));
        const Sha256Digest d = sha256(im.bytes);
        for (int w = 0; w < 4; ++w) {
            std::uint64_t word = 0;
            for (int b = 0; b < 8; ++b) word = word << 8 | d[std::size_t(8 * w + b)];
            p.key.push_back(word | (std::uint64_t{1} << 63));
        }
        close_unit();
        p.positions += image_len;
        p.image_positions += image_len;
    };
    bool started = false;
    std::string system;
    for (std::size_t i = 0; i < r.messages.size(); ++i) {
        const ChatMessage& msg = r.messages[i];
        if (msg.role == "system") {
            if (started || !system.empty())
                throw invalid_request("a system message must open the conversation (message " + std::to_string(i) +
                                          ")",
                                      "messages[" + std::to_string(i) + "]");
            system = msg.text;
        } else if (msg.role == "user") {
            for (const ChatImage& im : msg.images) image(im);
            text(started ? tmpl.next_turn(msg.text) : tmpl.first_turn(msg.text, system));
            started = true;
        } else {  // assistant
            if (!started)
                throw invalid_request("an assistant message must follow a user message (message " +
                                          std::to_string(i) + ")",
                                      "messages[" + std::to_string(i) + "]");
            text(msg.text);
            text(tmpl.assistant_suffix);
        }
        if (p.positions > limits.max_prompt_tokens)
            throw invalid_request("the prompt is over " + std::to_string(limits.max_prompt_tokens) +
                                      " positions (--max-prompt-tokens), images included",
                                  "messages", "context_length_exceeded");
    }
    if (p.units.empty()) throw invalid_request("the prompt is empty", "messages");
    return p;
}

}  // namespace vlmamba::serve
