// The OpenAI chat-completions request, parsed and checked: every malformed or oversized part is an ApiError with the
// HTTP status and OpenAI's error fields, before anything is sized by it. Images arrive as data: URLs (base64), or as
// file:// URLs under a directory the server allows; http(s) URLs are refused (no server-side fetching).
#pragma once
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlmamba/io/base64.hpp"
#include "vlmamba/io/json_config.hpp"
#include "vlmamba/models/sampling.hpp"

namespace vlmamba::serve {

// An error the API answers with: the HTTP status and the fields of OpenAI's {"error": {...}} object.
struct ApiError : std::runtime_error {
    int status;
    std::string type, param, code;
    ApiError(int status_, std::string type_, const std::string& message, std::string param_ = {},
             std::string code_ = {})
        : std::runtime_error(message), status(status_), type(std::move(type_)), param(std::move(param_)),
          code(std::move(code_)) {}
};

inline ApiError invalid_request(const std::string& message, std::string param = {}, std::string code = {}) {
    return ApiError(400, "invalid_request_error", message, std::move(param), std::move(code));
}

inline std::string error_body(const ApiError& e) {
    auto or_null = [](const std::string& s) { return s.empty() ? nlohmann::json() : nlohmann::json(s); };
    return nlohmann::json{{"error",
                           {{"message", e.what()}, {"type", e.type}, {"param", or_null(e.param)},
                            {"code", or_null(e.code)}}}}
        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);  // a message may quote broken UTF-8
}

// Limits on a request; each has a flag of `vlmamba serve`.
struct Limits {
    std::size_t max_body = std::size_t{32} << 20;         // bytes of a request body (--max-body)
    int max_images = 8;                                   // images per request (--max-images)
    std::size_t max_image_bytes = std::size_t{16} << 20;  // encoded bytes per image
    std::int64_t max_prompt_tokens = 16384;               // positions a request may prefill (--max-prompt-tokens)
    int max_messages = 512;
    int default_max_tokens = 512;                         // when the request gives none
    int max_tokens_cap = 4096;                            // --max-tokens-cap
    std::filesystem::path allow_image_dir;                // file:// URLs under it; empty: refused
};

// Defaults for what a request leaves out (llama-server's), from the server's flags.
struct SamplingDefaults {
    float temperature = 0.8f, top_p = 0.95f, min_p = 0.05f;
    int top_k = 40;
};

struct ChatImage {
    std::vector<std::uint8_t> bytes;  // encoded (PNG, JPEG, ...)
    std::string where;                // for messages: "messages[1].content[0]"
};

struct ChatMessage {
    std::string role;                // system, user or assistant
    std::string text;                // the text parts, joined by newlines
    std::vector<ChatImage> images;   // enter the sequence before the text
};

struct ChatRequest {
    std::string model;  // empty: the served model
    std::vector<ChatMessage> messages;
    SamplingParams sampling;
    bool seeded = false;
    int max_tokens = 0;
    std::vector<std::string> stop;
    bool stream = false, include_usage = false;
};

ChatRequest parse_chat_request(std::string_view body, const Limits& limits, const SamplingDefaults& defaults = {});

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {

inline const nlohmann::json* field(const nlohmann::json& j, const char* key) {
    const auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
}

inline double number(const nlohmann::json& j, const char* key, double lo, double hi, double fallback) {
    const nlohmann::json* v = field(j, key);
    if (!v) return fallback;
    if (!v->is_number()) throw invalid_request(std::string("'") + key + "' must be a number, got " + v->type_name(), key);
    const double x = v->get<double>();
    if (!(x >= lo && x <= hi))
        throw invalid_request(std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " +
                                  std::to_string(hi) + "], got " + v->dump(),
                              key);
    return x;
}

// data:image/png;base64,... or file:///abs/path (only under allow_image_dir).
inline ChatImage image_from_url(const std::string& url, const std::string& where, const Limits& limits) {
    ChatImage im;
    im.where = where;
    const std::string param = where + ".image_url.url";
    if (url.rfind("data:", 0) == 0) {
        const std::size_t comma = url.find(',');
        if (comma == std::string::npos)
            throw invalid_request(where + ": a data URL needs a ',' before its payload", param);
        const std::string_view head = std::string_view(url).substr(5, comma - 5);
        if (head.size() < 7 || head.substr(head.size() - 7) != ";base64")
            throw invalid_request(where + ": expected a base64 data URL (data:image/...;base64,...), got \"data:" +
                                      std::string(head.substr(0, 64)) + ",...\"",
                                  param);
        const std::string_view payload = std::string_view(url).substr(comma + 1);
        if (payload.size() / 4 * 3 > limits.max_image_bytes)
            throw invalid_request(where + ": the image is over " + std::to_string(limits.max_image_bytes) +
                                      " bytes (about " + std::to_string(payload.size() / 4 * 3) + ")",
                                  param, "image_too_large");
        try {
            im.bytes = base64_decode(payload, where);
        } catch (const Error& e) {
            throw invalid_request(e.what(), param, "invalid_base64");
        }
        return im;
    }
    if (url.rfind("file://", 0) == 0) {
        namespace fs = std::filesystem;
        if (limits.allow_image_dir.empty())
            throw invalid_request(where + ": file:// URLs are refused (start the server with --allow-image-dir DIR)",
                                  param, "url_not_allowed");
        std::error_code ec;
        const fs::path file = fs::weakly_canonical(fs::path(url.substr(7)), ec);
        const fs::path root = fs::weakly_canonical(limits.allow_image_dir, ec);
        const auto [r, f] = std::mismatch(root.begin(), root.end(), file.begin(), file.end());
        if (ec || r != root.end())
            throw invalid_request(where + ": " + url + " is outside the allowed image directory", param,
                                  "url_not_allowed");
        const auto size = fs::file_size(file, ec);
        if (ec) throw invalid_request(where + ": cannot read " + url + " (" + ec.message() + ")", param);
        if (size > limits.max_image_bytes)
            throw invalid_request(where + ": the image is over " + std::to_string(limits.max_image_bytes) + " bytes",
                                  param, "image_too_large");
        std::ifstream in(file, std::ios::binary);
        im.bytes.resize(std::size_t(size));
        in.read(reinterpret_cast<char*>(im.bytes.data()), std::streamsize(size));
        if (!in) throw invalid_request(where + ": cannot read " + url, param);
        return im;
    }
    throw invalid_request(where + ": image URLs must be data: URLs (the server fetches nothing); got \"" +
                              url.substr(0, 64) + (url.size() > 64 ? "...\"" : "\""),
                          param, "url_not_allowed");
}

inline ChatMessage parse_message(const nlohmann::json& m, std::size_t i, const Limits& limits, int& images) {
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw invalid_request(where + " must be an object", where);
    const nlohmann::json* role = field(m, "role");
    if (!role || !role->is_string()) throw invalid_request(where + ".role must be a string", where + ".role");
    ChatMessage msg;
    msg.role = role->get<std::string>();
    if (msg.role == "developer") msg.role = "system";  // OpenAI's newer name
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
        throw invalid_request(where + ".role is \"" + msg.role + "\": expected system, user or assistant",
                              where + ".role");
    const nlohmann::json* content = field(m, "content");
    if (!content) {
        if (msg.role == "assistant") return msg;
        throw invalid_request(where + " has no content", where + ".content");
    }
    if (content->is_string()) {
        msg.text = content->get<std::string>();
        return msg;
    }
    if (!content->is_array())
        throw invalid_request(where + ".content must be a string or an array of parts", where + ".content");
    for (std::size_t k = 0; k < content->size(); ++k) {
        const nlohmann::json& part = (*content)[k];
        const std::string pw = where + ".content[" + std::to_string(k) + "]";
        const nlohmann::json* type = part.is_object() ? field(part, "type") : nullptr;
        if (!type || !type->is_string()) throw invalid_request(pw + " must be an object with a \"type\"", pw);
        const std::string t = type->get<std::string>();
        if (t == "text") {
            const nlohmann::json* text = field(part, "text");
            if (!text || !text->is_string()) throw invalid_request(pw + ".text must be a string", pw + ".text");
            if (!msg.text.empty()) msg.text += "\n";
            msg.text += text->get<std::string>();
        } else if (t == "image_url") {
            if (msg.role != "user") throw invalid_request(pw + ": only user messages may carry images", pw);
            if (++images > limits.max_images)
                throw invalid_request("too many images: at most " + std::to_string(limits.max_images) +
                                          " per request",
                                      pw, "too_many_images");
            const nlohmann::json* iu = field(part, "image_url");
            const nlohmann::json* url = iu && iu->is_object() ? field(*iu, "url") : (iu && iu->is_string() ? iu : nullptr);
            if (!url || !url->is_string())
                throw invalid_request(pw + ".image_url.url must be a string", pw + ".image_url.url");
            msg.images.push_back(image_from_url(url->get<std::string>(), pw, limits));
        } else {
            throw invalid_request(pw + " has type \"" + t + "\": expected text or image_url", pw + ".type");
        }
    }
    return msg;
}

}  // namespace detail

inline ChatRequest parse_chat_request(std::string_view body, const Limits& limits, const SamplingDefaults& defaults) {
    if (body.size() > limits.max_body)
        throw ApiError(413, "invalid_request_error",
                       "the body is " + std::to_string(body.size()) + " bytes, over --max-body " +
                           std::to_string(limits.max_body));
    nlohmann::json j;
    try {
        vlmamba::detail::check_json_depth(body, "the request body", "serve");
        j = nlohmann::json::parse(body);
    } catch (const std::exception& e) {
        throw invalid_request(std::string("the body is not valid JSON: ") + e.what(), {}, "invalid_json");
    }
    if (!j.is_object()) throw invalid_request(std::string("the body must be a JSON object, got ") + j.type_name());
    using detail::field;
    ChatRequest r;
    if (const auto* m = field(j, "model")) {
        if (!m->is_string()) throw invalid_request("'model' must be a string", "model");
        r.model = m->get<std::string>();
    }
    const nlohmann::json* msgs = field(j, "messages");
    if (!msgs || !msgs->is_array() || msgs->empty())
        throw invalid_request("'messages' must be a non-empty array", "messages");
    if (msgs->size() > std::size_t(limits.max_messages))
        throw invalid_request("too many messages: at most " + std::to_string(limits.max_messages), "messages");
    int images = 0;
    for (std::size_t i = 0; i < msgs->size(); ++i) r.messages.push_back(detail::parse_message((*msgs)[i], i, limits, images));
    if (r.messages.back().role != "user")
        throw invalid_request("the last message must be the user's, got \"" + r.messages.back().role + "\"",
                              "messages");

    const nlohmann::json* mt = field(j, "max_completion_tokens");
    const char* mt_key = "max_completion_tokens";
    if (!mt) mt = field(j, "max_tokens"), mt_key = "max_tokens";
    r.max_tokens = limits.default_max_tokens;
    if (mt) {
        if (!mt->is_number_integer() || mt->get<std::int64_t>() < 1)
            throw invalid_request(std::string("'") + mt_key + "' must be a positive integer, got " + mt->dump(),
                                  mt_key);
        r.max_tokens = int(std::min<std::int64_t>(mt->get<std::int64_t>(), limits.max_tokens_cap));
    }
    r.max_tokens = std::min(r.max_tokens, limits.max_tokens_cap);
    r.sampling.temperature = float(detail::number(j, "temperature", 0, 2, defaults.temperature));
    r.sampling.top_p = float(detail::number(j, "top_p", 0, 1, defaults.top_p));
    r.sampling.top_k = int(detail::number(j, "top_k", 0, 1e6, defaults.top_k));
    r.sampling.min_p = float(detail::number(j, "min_p", 0, 1, defaults.min_p));
    if (const auto* s = field(j, "seed")) {
        if (!s->is_number_integer()) throw invalid_request("'seed' must be an integer", "seed");
        r.sampling.seed = std::uint64_t(s->get<std::int64_t>());
        r.seeded = true;
    }
    if (const auto* n = field(j, "n"); n && !(n->is_number_integer() && n->get<std::int64_t>() == 1))
        throw invalid_request("only n = 1 is supported", "n");
    if (const auto* s = field(j, "stop")) {
        if (s->is_string()) {
            r.stop.push_back(s->get<std::string>());
        } else if (s->is_array() && s->size() <= 16) {
            for (const auto& x : *s) {
                if (!x.is_string()) throw invalid_request("'stop' must hold strings", "stop");
                r.stop.push_back(x.get<std::string>());
            }
        } else {
            throw invalid_request("'stop' must be a string or an array of at most 16 strings", "stop");
        }
    }
    if (const auto* s = field(j, "stream")) {
        if (!s->is_boolean()) throw invalid_request("'stream' must be a boolean", "stream");
        r.stream = s->get<bool>();
    }
    if (const auto* so = field(j, "stream_options"); so && so->is_object())
        if (const auto* u = field(*so, "include_usage"); u && u->is_boolean()) r.include_usage = u->get<bool>();
    return r;
}

}  // namespace vlmamba::serve
