// Reading config.json files: load with a clear error, and typed field access that names the file and the key.
#pragma once
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "vlmamba/core/error.hpp"

namespace vlmamba {

// Parses a JSON object from a file; errors name the file.
nlohmann::json read_json_file(const std::filesystem::path& path, const char* op);

// Reads key as T, or returns `fallback` when absent or null; a mistyped value is an error naming file and key.
template <class T>
T json_get(const nlohmann::json& j, const char* key, T fallback, const std::string& file, const char* op);
// Reads key as T; absent is an error.
template <class T>
T json_require(const nlohmann::json& j, const char* key, const std::string& file, const char* op);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline nlohmann::json read_json_file(const std::filesystem::path& path, const char* op) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(op, path.string(), ": cannot open file");
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
    if (j.is_discarded()) fail(op, path.string(), ": invalid JSON");
    if (!j.is_object()) fail(op, path.string(), ": expected a JSON object, got ", j.type_name());
    return j;
}

template <class T>
T json_get(const nlohmann::json& j, const char* key, T fallback, const std::string& file, const char* op) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    try {
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
            if (!it->is_number_integer()) throw std::runtime_error("");
        } else if constexpr (std::is_floating_point_v<T>) {
            if (!it->is_number()) throw std::runtime_error("");
        } else if constexpr (std::is_same_v<T, bool>) {
            if (!it->is_boolean()) throw std::runtime_error("");
        } else if constexpr (std::is_same_v<T, std::string>) {
            if (!it->is_string()) throw std::runtime_error("");
        }
        return it->get<T>();
    } catch (const std::exception&) {
        fail(op, file, ": key '", key, "' has value ", it->dump(), " of the wrong type");
    }
}

template <class T>
T json_require(const nlohmann::json& j, const char* key, const std::string& file, const char* op) {
    if (!j.contains(key) || j[key].is_null()) fail(op, file, ": expected key '", key, "', got none");
    return json_get<T>(j, key, T{}, file, op);
}

}  // namespace vlmamba
