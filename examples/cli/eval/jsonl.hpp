// eval's JSONL files: questions in, answers out (resume, merge), and the answer fields (SPEC §8.3).
#pragma once
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "../common.hpp"

namespace cli::eval {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

// ---------------------------------------------------------------------------------------------
// JSONL reading
// ---------------------------------------------------------------------------------------------

// question_id as a lookup key: a string as is, an integer as its decimal text (so 7 and "7" match).
inline std::string id_key(const json& id) { return id.is_string() ? id.get<std::string>() : id.dump(); }

inline std::string where(const fs::path& file, std::size_t line) { return file.string() + ":" + std::to_string(line); }

// Calls f(object, line_number, raw_line) for each non-blank line; a line that is not a JSON object is an error
// naming the file and line.
template <class F>
void for_each_jsonl(const fs::path& file, const char* op, F&& f) {
    std::ifstream in(file, std::ios::binary);
    if (!in) vlmamba::fail(op, file.string(), ": expected a readable JSONL file, got no such file");
    std::string line;
    std::size_t n = 0;
    while (std::getline(in, line)) {
        ++n;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        vlmamba::detail::check_json_depth(line, where(file, n), op);  // nesting beyond kMaxJsonDepth: one line, no recursion
        json j;
        try {
            j = json::parse(line);
        } catch (const json::exception& e) {
            vlmamba::fail(op, where(file, n), ": expected a JSON object, got a parse error: ", e.what());
        }
        if (!j.is_object()) vlmamba::fail(op, where(file, n), ": expected a JSON object, got ", j.type_name());
        f(j, n, line);
    }
}

// The question_id of one line: a string or an integer.
inline const json& require_id(const json& j, const fs::path& file, std::size_t line, const char* op) {
    const auto it = j.find("question_id");
    if (it == j.end() || !(it->is_string() || it->is_number_integer()))
        vlmamba::fail(op, where(file, line), ": expected \"question_id\" (a string or an integer), got ",
                      it == j.end() ? std::string("none") : vlmamba::detail::json_brief(*it));
    return *it;
}

inline std::string require_string(const json& j, const char* key, const fs::path& file, std::size_t line,
                                  const char* op) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_string())
        vlmamba::fail(op, where(file, line), ": expected \"", key, "\" (a string), got ",
                      it == j.end() ? std::string("none") : vlmamba::detail::json_brief(*it));
    return it->get<std::string>();
}

struct Question {
    json id;            // as in the file (string or integer)
    std::string key;    // id_key(id)
    std::string image;  // relative to --image-folder; empty: text only
    std::string text;
    std::size_t line = 0;
};

// Reads and validates every line: {question_id, image, text}; question_ids must be unique.
inline std::vector<Question> read_questions(const fs::path& file) {
    std::vector<Question> qs;
    std::unordered_map<std::string, std::size_t> seen;
    for_each_jsonl(file, "eval", [&](const json& j, std::size_t n, const std::string&) {
        Question q;
        q.id = require_id(j, file, n, "eval");
        q.key = id_key(q.id);
        q.text = require_string(j, "text", file, n, "eval");
        if (j.contains("image") && !j["image"].is_null()) q.image = require_string(j, "image", file, n, "eval");
        q.line = n;
        const auto [it, fresh] = seen.emplace(q.key, n);
        if (!fresh)
            vlmamba::fail("eval", where(file, n), ": expected unique question_ids, got ", q.id.dump(),
                          " again (first on line ", it->second, ")");
        qs.push_back(std::move(q));
    });
    return qs;
}

// ---------------------------------------------------------------------------------------------
// Answers files
// ---------------------------------------------------------------------------------------------

// The question_ids already in an answers file (resume). A last line cut short by a killed run (no newline, not
// JSON) is removed; any other bad line is an error.
inline std::unordered_set<std::string> answered_ids(const fs::path& out) {
    std::unordered_set<std::string> ids;
    if (!fs::exists(out)) return ids;
    std::string text;
    {
        std::ifstream in(out, std::ios::binary);
        text.assign(std::istreambuf_iterator<char>(in), {});
    }
    if (!text.empty() && text.back() != '\n') {
        const std::size_t cut = text.rfind('\n') + 1;  // npos + 1 == 0
        const std::string tail = text.substr(cut);
        bool ok = true;
        try {
            ok = json::parse(tail).is_object();
        } catch (const json::exception&) {
            ok = false;
        }
        if (ok) {
            std::ofstream(out, std::ios::binary | std::ios::app) << '\n';
        } else {
            std::fprintf(stderr, "eval: %s: dropping an unfinished last line (%zu bytes) from an interrupted run\n",
                         out.string().c_str(), tail.size());
            fs::resize_file(out, cut);
        }
    }
    for_each_jsonl(out, "eval", [&](const json& j, std::size_t n, const std::string&) {
        ids.insert(id_key(require_id(j, out, n, "eval")));
    });
    return ids;
}

// Raw answer lines by question_id over several files, the first of each id kept.
struct AnswerSet {
    std::vector<std::string> keys;  // first-seen order
    std::unordered_map<std::string, std::string> line, text;
    std::size_t duplicates = 0;
};

inline AnswerSet read_answers(const std::vector<fs::path>& files, const char* op) {
    AnswerSet a;
    for (const fs::path& f : files) {
        for_each_jsonl(f, op, [&](const json& j, std::size_t n, const std::string& raw) {
            const std::string key = id_key(require_id(j, f, n, op));
            const std::string text = require_string(j, "text", f, n, op);
            if (!a.line.emplace(key, raw).second) {
                ++a.duplicates;
                if (a.text[key] != text)
                    std::fprintf(stderr, "%s: %s: question_id %s answered twice with different text; keeping the first\n",
                                 op, where(f, n).c_str(), key.c_str());
                return;
            }
            a.keys.push_back(key);
            a.text.emplace(key, text);
        });
    }
    return a;
}

// A stable answer_id (shortuuid's alphabet, 22 characters): two FNV-1a hashes of model, question and answer.
inline std::string answer_id(const std::string& model_id, const std::string& key, const std::string& text) {
    static constexpr char abc[] = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    const std::string s = model_id + '\x1f' + key + '\x1f' + text;
    std::string id;
    for (std::uint64_t h : {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull}) {
        for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
        for (int k = 0; k < 11; ++k, h /= 57) id += abc[h % 57];
    }
    return id;
}

inline std::uint64_t seed_for(std::uint64_t base, const std::string& key) {
    std::uint64_t h = 0xcbf29ce484222325ull ^ base;
    for (unsigned char c : key) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

inline std::string trim(std::string_view s) {
    const auto b = s.find_first_not_of(" \t\r\n\f\v");
    if (b == std::string_view::npos) return {};
    return std::string(s.substr(b, s.find_last_not_of(" \t\r\n\f\v") - b + 1));
}

inline std::string normalize(std::string_view s) {
    std::string t = trim(s);
    for (char& c : t) c = char(std::tolower(static_cast<unsigned char>(c)));
    return t;
}

inline std::string model_id_of(const fs::path& dir) {
    fs::path p = dir.lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    if (p.filename() == "." || p.filename().empty()) p = fs::absolute(p).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    return p.filename().string();
}


}  // namespace cli::eval
