// vlmamba serve's request parsing: an OpenAI chat-completions body (JSON, message parts, data: URLs in base64,
// file:// and http URLs, limits). Bad input must end in an ApiError (the server's 4xx answer), never anything else.
#include <vlmamba/serve/openai.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    vlmamba::serve::Limits limits;
    limits.max_image_bytes = 1 << 16;
    try {
        const auto r = vlmamba::serve::parse_chat_request(body, limits);
        if (r.messages.empty() || r.max_tokens < 1 || r.max_tokens > limits.max_tokens_cap) __builtin_trap();
    } catch (const vlmamba::serve::ApiError& e) {
        if (e.status != 400 && e.status != 413) __builtin_trap();
        (void)vlmamba::serve::error_body(e);
    }
    return 0;
}
