// Reading config.json files: load with a clear error, and typed field access that names the file and the key.
// Every JSON text read from a file goes through check_json_depth first: nlohmann's copy, comparison and dump()
// recurse once per nesting level, so a deep file would overflow the stack.
#pragma once
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>

#include "vlmamba/core/error.hpp"

namespace vlmamba {

// The deepest nesting of arrays and objects accepted in any JSON file (configs, tokenizer.json, safetensors headers
// and indexes); real files nest at most 5 levels.
inline constexpr int kMaxJsonDepth = 128;

// Caps on the sizes a model config may ask for, checked when the config is parsed, before anything is sized by
// them (docs/reliability.md); far above released models (Mamba-2.8b: d_model 2560, 64 layers, vocab 50280;
// SigLIP-so400m: width 1152, 4304, 27 layers).
inline constexpr int kMaxConfigWidth = 1 << 18;   // d_model, d_inner, hidden_size, intermediate_size, dt_rank
inline constexpr int kMaxConfigLayers = 1024;     // n_layer, num_hidden_layers
inline constexpr int kMaxConfigVocab = 1 << 24;   // vocab_size after padding

// Parses a JSON object from a file; errors name the file.
nlohmann::json read_json_file(const std::filesystem::path& path, const char* op);

// Reads key as T, or returns `fallback` when absent or null; a mistyped value is an error naming file and key.
template <class T>
T json_get(const nlohmann::json& j, const char* key, T fallback, const std::string& file, const char* op);
// Reads key as T; absent is an error.
template <class T>
T json_require(const nlohmann::json& j, const char* key, const std::string& file, const char* op);

namespace detail {
// Throws "[op] label: JSON nested deeper than kMaxJsonDepth levels" before anything is parsed.
void check_json_depth(std::string_view text, const std::string& label, const char* op);
// A JSON value printed on one line and cut to `limit` characters, for error messages.
std::string json_brief(const nlohmann::json& j, std::size_t limit = 60);
}  // namespace detail

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {

inline void check_json_depth(std::string_view text, const std::string& label, const char* op) {
    int depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') ++i;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > kMaxJsonDepth)
                fail(op, label, ": JSON nested deeper than ", kMaxJsonDepth, " levels (at byte ", i, ")");
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
}

inline std::string json_brief(const nlohmann::json& j, std::size_t limit) {
    std::string s = j.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
    if (s.size() > limit) s = s.substr(0, limit) + "...";
    return s;
}

}  // namespace detail

inline nlohmann::json read_json_file(const std::filesystem::path& path, const char* op) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(op, path.string(), ": cannot open file");
    std::stringstream ss;
    ss << in.rdbuf();
    detail::check_json_depth(ss.view(), path.string(), op);
    nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
    if (j.is_discarded()) fail(op, path.string(), ": invalid JSON");
    if (!j.is_object()) fail(op, path.string(), ": expected a JSON object, got ", j.type_name());
    return j;
}

template <class T>
T json_get(const nlohmann::json& j, const char* key, T fallback, const std::string& file, const char* op) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    bool ok = false;
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        ok = it->is_number_integer();
        // nlohmann's get<int>() wraps silently (2^32 + 4 would read as 4): check the range first
        const bool fits = !ok || (it->is_number_unsigned()
                                      ? it->template get<std::uint64_t>() <= std::uint64_t(std::numeric_limits<T>::max())
                                      : it->template get<std::int64_t>() >= std::int64_t(std::numeric_limits<T>::min()) &&
                                            it->template get<std::int64_t>() <= std::int64_t(std::numeric_limits<T>::max()));
        if (!fits)
            fail(op, file, ": key '", key, "' has value ", detail::json_brief(*it), ", out of range for a ",
                 sizeof(T) * 8, "-bit integer");
    } else if constexpr (std::is_floating_point_v<T>) {
        ok = it->is_number();
        if (ok && !(std::abs(it->template get<double>()) <= double(std::numeric_limits<T>::max())))
            fail(op, file, ": key '", key, "' has value ", detail::json_brief(*it), ", out of range for a float");
    } else if constexpr (std::is_same_v<T, bool>) {
        ok = it->is_boolean();
    } else if constexpr (std::is_same_v<T, std::string>) {
        ok = it->is_string();
    } else {
        ok = true;
    }
    if (ok) {
        try {
            return it->template get<T>();
        } catch (const nlohmann::json::exception&) {
        }
    }
    fail(op, file, ": key '", key, "' has value ", detail::json_brief(*it), " of the wrong type");
}

template <class T>
T json_require(const nlohmann::json& j, const char* key, const std::string& file, const char* op) {
    if (!j.contains(key) || j[key].is_null()) fail(op, file, ": expected key '", key, "', got none");
    return json_get<T>(j, key, T{}, file, op);
}

}  // namespace vlmamba
