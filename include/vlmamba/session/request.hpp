// What a generation asks for and what it returns.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vlmamba/models/sampling.hpp"
#include "vlmamba/session/model.hpp"

namespace vlmamba {

struct Message {
    std::string role;                // "system", "user" or "assistant"
    std::string content;
    std::vector<ImageInput> images;  // enter the sequence before the message's text
};

struct Request {
    std::string prompt;                            // one user turn, wrapped in the chat template
    std::vector<ImageInput> images;                // the prompt's images, in order
    std::vector<Message> messages;                 // instead of prompt: turns, the last one the user's
    std::optional<std::vector<std::int32_t>> ids;  // instead of a prompt: token ids after the images, no template
    bool raw = false;                              // the prompt is raw text (no template)
    SamplingParams sampling;                       // greedy by default
    int max_tokens = 256;                          // < 0: until EOS
    std::vector<std::string> stop;                 // stop strings, besides EOS and the template's
    bool ignore_eos = false;                       // generate max_tokens tokens, past EOS
};

struct Result {
    std::string text;
    std::vector<std::int32_t> ids;
    std::string finish_reason;    // "stop" (EOS or a stop string) or "length"
    std::int64_t prompt_tokens = 0;  // positions prefilled by this turn (image tokens included)
    std::int64_t image_tokens = 0;
    Timings timings;
};

// Gets each complete UTF-8 piece of the reply as it is generated (never a part of a stop string).
using TokenCallback = std::function<void(std::string_view piece)>;

}  // namespace vlmamba
