// Byte-level BPE tokenizer read from a HF tokenizer.json (GPT-NeoX-20B style, SPEC §6).
// Pipeline (tokenizers: tokenizer/mod.rs encode): added tokens (raw text) -> NFC -> added tokens
// (normalized text) -> GPT-2 pre-tokenizer regex -> bytes->unicode -> BPE merges by rank.
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include "vlmamba/core/error.hpp"
#include "vlmamba/io/json_config.hpp"
#include "vlmamba/io/utf8.hpp"

namespace vlmamba {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

// Unicode NFC composition (utf8proc). Throws on invalid UTF-8.
std::string nfc(std::string_view utf8);

// Token ids must stay below (vocab entries + added tokens) + this gap: the id tables are sized by the largest id.
inline constexpr std::size_t kMaxTokenizerIdGap = 65536;

// One entry of tokenizer.json "added_tokens".
struct AddedToken {
    std::int32_t id = 0;
    std::string content;
    bool special = false;
    bool normalized = true;
    bool lstrip = false;
    bool rstrip = false;
    bool single_word = false;
};

class Tokenizer {
public:
    Tokenizer() { byte_id_.fill(-1); }  // empty: encodes nothing, knows no ids
    static Tokenizer from_file(const std::filesystem::path& tokenizer_json);
    // `source` names the text in error messages.
    static Tokenizer from_string(std::string_view json_text, std::string_view source = "<string>");

    std::vector<std::int32_t> encode(std::string_view text) const;
    std::string decode(std::span<const std::int32_t> ids, bool skip_special = false) const;
    // Raw bytes of the decoded ids, before invalid UTF-8 is replaced.
    std::string decode_bytes(std::span<const std::int32_t> ids, bool skip_special = false) const;

    std::int32_t vocab_size() const noexcept { return static_cast<std::int32_t>(tokens_.size()); }
    std::optional<std::int32_t> token_to_id(std::string_view token) const;
    std::string_view id_to_token(std::int32_t id) const;
    // The bytes one token decodes to (ByteLevel decoder, per token).
    std::string_view token_bytes(std::int32_t id) const;
    bool is_special(std::int32_t id) const;
    const std::vector<AddedToken>& added_tokens() const noexcept { return added_; }

private:
    struct Trie {
        struct Node {
            std::vector<std::pair<unsigned char, int>> next;
            int value = -1;  // index into added_
        };
        std::vector<Node> nodes{1};
        std::array<bool, 256> first{};
        void insert(std::string_view key, int value);
        // Longest key starting at s[i]: (length, value), or (0, -1).
        std::pair<std::size_t, int> longest(std::string_view s, std::size_t i) const;
        bool empty() const noexcept { return nodes.size() == 1; }
    };
    struct Segment {
        std::int32_t id;  // -1: plain text
        std::size_t begin, end;
    };
    struct MergeRule {
        std::uint32_t rank;
        std::int32_t new_id;
    };
    struct Cache {
        std::mutex mutex;
        std::unordered_map<std::string, std::vector<std::int32_t>> map;
    };

    void check_id(std::int32_t id) const;
    std::vector<Segment> split_added(std::string_view s, const Trie& trie) const;
    void encode_segment(std::string_view s, std::vector<std::int32_t>& ids) const;
    void bpe(std::string_view piece, std::vector<std::int32_t>& ids) const;
    void bpe_uncached(std::string_view piece, std::vector<std::int32_t>& ids) const;

    std::unordered_map<std::string, std::int32_t> vocab_;  // model.vocab
    std::unordered_map<std::uint64_t, MergeRule> merges_;  // (left id << 32 | right id) -> rule
    std::array<std::int32_t, 256> byte_id_{};               // id of each single-byte symbol, -1 if none
    std::vector<AddedToken> added_;
    std::unordered_map<std::string, std::int32_t> added_ids_;  // content -> id
    Trie raw_trie_, norm_trie_;
    std::vector<std::string> tokens_;  // id -> token string (added tokens take priority)
    std::vector<std::string> bytes_;   // id -> decoded bytes
    std::vector<std::uint8_t> flags_;  // id -> bit 0: present, bit 1: special
    std::int32_t unk_id_ = -1;
    bool fuse_unk_ = false;
    bool ignore_merges_ = false;
    bool nfc_ = false;
    bool add_prefix_space_ = false;
    bool use_regex_ = true;
    std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();
};

// Feeds ids one at a time and returns only complete UTF-8 characters; flush() emits the rest.
class StreamDecoder {
public:
    explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false)
        : tokenizer_(&tokenizer), skip_special_(skip_special) {}
    std::string push(std::int32_t id);
    std::string flush() { return utf8_.flush(); }

private:
    const Tokenizer* tokenizer_;
    bool skip_special_;
    utf8::Incremental utf8_;
};

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail::tok {

// Unicode White_Space; equals Oniguruma's Unicode \s (9-13, U+0085, Zs, Zl, Zp) and Rust's
// char::is_whitespace / regex \s.
inline bool is_space(char32_t c) noexcept {
    if (c < 0x80) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

inline int category(char32_t c) noexcept {
    return utf8proc_category(static_cast<utf8proc_int32_t>(c));
}

// Classes of the GPT-2 pattern: \s, \p{L}, \p{N}, everything else.
enum class Cls : std::uint8_t { space, letter, number, other };

inline Cls classify(char32_t c) noexcept {
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return Cls::letter;
        if (c >= '0' && c <= '9') return Cls::number;
        return is_space(c) ? Cls::space : Cls::other;
    }
    if (is_space(c)) return Cls::space;
    const int cat = category(c);
    if (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) return Cls::letter;
    if (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO) return Cls::number;
    return Cls::other;
}

// Rust regex \w (approximately: letters, marks, Nd, Nl, Pc, ZWNJ/ZWJ); used by single_word.
inline bool is_word(char32_t c) noexcept {
    if (c == 0x200C || c == 0x200D) return true;
    const int cat = category(c);
    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_NL) || cat == UTF8PROC_CATEGORY_PC;
}

// GPT-2 bytes->unicode: printable bytes map to themselves, the other 68 to U+0100.. in order.
struct ByteTable {
    std::array<char32_t, 256> to_cp{};
    std::array<std::int16_t, 324> to_byte{};  // code point -> byte, -1 if none
    ByteTable() {
        to_byte.fill(-1);
        char32_t n = 0;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
            to_cp[b] = printable ? static_cast<char32_t>(b) : 256 + n++;
            to_byte[to_cp[b]] = static_cast<std::int16_t>(b);
        }
    }
};

inline const ByteTable& byte_table() {
    static const ByteTable table;
    return table;
}

// Maps the raw bytes of s through bytes->unicode.
inline std::string byte_level(std::string_view s) {
    std::string out;
    out.reserve(s.size() * 2);
    for (unsigned char b : s) utf8::append(out, byte_table().to_cp[b]);
    return out;
}

// ByteLevel decoder for one token: map every char back to its byte, or keep the token's own
// bytes if some char is outside the table (decoders/byte_level.rs).
inline std::string token_to_bytes(std::string_view token) {
    std::string out;
    std::size_t i = 0;
    while (i < token.size()) {
        const utf8::Step st = utf8::next(token, i);
        if (st.status != utf8::Status::ok || st.cp >= 324 || byte_table().to_byte[st.cp] < 0)
            return std::string(token);
        out.push_back(static_cast<char>(byte_table().to_byte[st.cp]));
        i += static_cast<std::size_t>(st.len);
    }
    return out;
}

// Splits valid UTF-8 text with
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// and calls emit(begin, end) with byte offsets for each piece, left to right.
template <class Emit>
void pre_tokenize(std::string_view s, Emit&& emit) {
    std::vector<char32_t> cp;
    std::vector<Cls> cls;
    std::vector<std::size_t> at;  // byte offset of each code point, plus s.size()
    cp.reserve(s.size());
    cls.reserve(s.size());
    at.reserve(s.size() + 1);
    for (std::size_t i = 0; i < s.size();) {
        const utf8::Step st = utf8::next(s, i);
        cp.push_back(st.cp);
        cls.push_back(classify(st.cp));
        at.push_back(i);
        i += static_cast<std::size_t>(st.len);
    }
    at.push_back(s.size());
    const std::size_t n = cp.size();
    auto run_end = [&](std::size_t j, Cls c) {
        while (j < n && cls[j] == c) ++j;
        return j;
    };
    std::size_t i = 0;
    while (i < n) {
        std::size_t end = 0;
        // Contractions (case-sensitive).
        if (cp[i] == '\'' && i + 1 < n) {
            const char32_t a = cp[i + 1];
            const char32_t b = i + 2 < n ? cp[i + 2] : 0;
            if (a == 's' || a == 't' || a == 'm' || a == 'd') end = i + 2;
            else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) end = i + 3;
        }
        if (end == 0) {
            // " ?X+" with X one of \p{L}, \p{N}, [^\s\p{L}\p{N}].
            const std::size_t j = (cp[i] == ' ' && i + 1 < n && cls[i + 1] != Cls::space) ? i + 1 : i;
            if (cls[j] != Cls::space) {
                end = run_end(j, cls[j]);
            } else {
                // \s+(?!\S) leaves the last space of a run before a non-space; else \s+.
                const std::size_t k = run_end(i, Cls::space);
                end = (k < n && k - i >= 2) ? k - 1 : k;
            }
        }
        emit(at[i], at[end]);
        i = end;
    }
}

// Byte offset where the trailing White_Space of s begins (regex \s*$).
inline std::size_t trailing_space_begin(std::string_view s) {
    std::size_t begin = 0;
    for (std::size_t i = 0; i < s.size();) {
        const utf8::Step st = utf8::next(s, i);
        i += static_cast<std::size_t>(st.len);
        if (!is_space(st.cp)) begin = i;
    }
    return begin;
}

// Length in bytes of the leading White_Space of s (regex ^\s*).
inline std::size_t leading_space_len(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const utf8::Step st = utf8::next(s, i);
        if (!is_space(st.cp)) break;
        i += static_cast<std::size_t>(st.len);
    }
    return i;
}

inline char32_t last_char(std::string_view s) {
    std::size_t i = s.size();
    while (i > 0 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i;
    return i > 0 ? utf8::next(s, i - 1).cp : 0;
}

inline std::string json_kind(const nlohmann::json& j) {
    if (j.is_null()) return "null";
    if (j.is_object() && j.contains("type") && j["type"].is_string()) return j["type"].get<std::string>();
    return detail::json_brief(j);
}

inline bool bool_or(const nlohmann::json& j, const char* key, bool fallback) {
    if (!j.is_object() || !j.contains(key) || j[key].is_null()) return fallback;
    return j[key].get<bool>();
}

}  // namespace detail::tok

inline std::string nfc(std::string_view utf8_text) {
    if (std::all_of(utf8_text.begin(), utf8_text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
        return std::string(utf8_text);  // NFC is the identity on ASCII
    utf8proc_uint8_t* dst = nullptr;
    const utf8proc_ssize_t n =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(utf8_text.data()),
                     static_cast<utf8proc_ssize_t>(utf8_text.size()), &dst,
                     static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (n < 0) fail("nfc", "expected valid UTF-8, got error: ", utf8proc_errmsg(n));
    std::string out(reinterpret_cast<const char*>(dst), static_cast<std::size_t>(n));
    std::free(dst);
    return out;
}

// --- Trie ---------------------------------------------------------------------------------------

inline void Tokenizer::Trie::insert(std::string_view key, int value) {
    int node = 0;
    first[static_cast<unsigned char>(key[0])] = true;
    for (unsigned char b : key) {
        auto& next = nodes[static_cast<std::size_t>(node)].next;
        auto it = std::find_if(next.begin(), next.end(), [b](const auto& e) { return e.first == b; });
        if (it != next.end()) {
            node = it->second;
        } else {
            const int child = static_cast<int>(nodes.size());
            nodes[static_cast<std::size_t>(node)].next.emplace_back(b, child);
            nodes.emplace_back();
            node = child;
        }
    }
    nodes[static_cast<std::size_t>(node)].value = value;
}

inline std::pair<std::size_t, int> Tokenizer::Trie::longest(std::string_view s, std::size_t i) const {
    std::pair<std::size_t, int> best{0, -1};
    if (!first[static_cast<unsigned char>(s[i])]) return best;
    int node = 0;
    for (std::size_t k = i; k < s.size(); ++k) {
        const auto b = static_cast<unsigned char>(s[k]);
        const auto& next = nodes[static_cast<std::size_t>(node)].next;
        auto it = std::find_if(next.begin(), next.end(), [b](const auto& e) { return e.first == b; });
        if (it == next.end()) break;
        node = it->second;
        if (nodes[static_cast<std::size_t>(node)].value >= 0)
            best = {k + 1 - i, nodes[static_cast<std::size_t>(node)].value};
    }
    return best;
}

// --- Loading ------------------------------------------------------------------------------------

inline Tokenizer Tokenizer::from_file(const std::filesystem::path& tokenizer_json) {
    const std::string name = tokenizer_json.string();
    std::ifstream in(tokenizer_json, std::ios::binary);
    if (!in) fail("tokenizer", name, ": expected a readable tokenizer.json, got no such file");
    std::ostringstream text;
    text << in.rdbuf();
    return from_string(text.str(), name);
}

inline Tokenizer Tokenizer::from_string(std::string_view json_text, std::string_view source) {
    namespace tok = detail::tok;
    using nlohmann::json;
    const std::string src(source);
    detail::check_json_depth(json_text, src, "tokenizer");
    json j;
    try {
        j = json::parse(json_text);
    } catch (const json::exception& e) {
        fail("tokenizer", src, ": expected valid JSON, got parse error: ", e.what());
    }
    Tokenizer t;
    try {
        VLM_CHECK(j.is_object(), "tokenizer", src, ": expected a JSON object, got ", j.type_name());
        // model
        VLM_CHECK(j.contains("model") && j["model"].is_object(), "tokenizer", src,
                  ": expected a model object, got none");
        const json& model = j["model"];
        const std::string model_type = model.value("type", std::string("BPE"));
        VLM_CHECK(model_type == "BPE", "tokenizer", src, ": expected model.type BPE, got ", model_type);
        VLM_CHECK(model.contains("vocab") && model["vocab"].is_object(), "tokenizer", src,
                  ": expected model.vocab object, got none");
        VLM_CHECK(model.contains("merges") && !model["merges"].is_null(), "tokenizer", src,
                  ": expected model.merges, got none");
        VLM_CHECK(model["merges"].is_array() && !model["merges"].empty(), "tokenizer", src,
                  ": expected model.merges, got ", model["merges"].is_array() ? "an empty list" : "no list");
        if (model.contains("dropout") && !model["dropout"].is_null())
            VLM_CHECK(model["dropout"].get<double>() == 0.0, "tokenizer", src,
                      ": expected model.dropout null, got ", detail::json_brief(model["dropout"]));
        for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
            if (model.contains(key) && !model[key].is_null())
                VLM_CHECK(model[key].get<std::string>().empty(), "tokenizer", src, ": expected model.", key,
                          " null, got ", detail::json_brief(model[key]));
        VLM_CHECK(!tok::bool_or(model, "byte_fallback", false), "tokenizer", src,
                  ": expected model.byte_fallback false, got true");
        t.fuse_unk_ = tok::bool_or(model, "fuse_unk", false);
        t.ignore_merges_ = tok::bool_or(model, "ignore_merges", false);

        std::int32_t max_id = -1;
        t.vocab_.reserve(model["vocab"].size());
        for (const auto& [token, id_json] : model["vocab"].items()) {
            VLM_CHECK(id_json.is_number_integer() && id_json.get<std::int64_t>() >= 0 &&
                          id_json.get<std::int64_t>() < (1LL << 30),
                      "tokenizer", src, ": expected a non-negative id for vocab token \"", token, "\", got ",
                      detail::json_brief(id_json));
            const auto id = id_json.get<std::int32_t>();
            t.vocab_[token] = id;
            max_id = std::max(max_id, id);
        }
        if (model.contains("unk_token") && model["unk_token"].is_string()) {
            const auto it = t.vocab_.find(model["unk_token"].get<std::string>());
            VLM_CHECK(it != t.vocab_.end(), "tokenizer", src, ": expected model.unk_token in model.vocab, got ",
                      detail::json_brief(model["unk_token"]));
            t.unk_id_ = it->second;
        }

        // merges: "a b" strings or ["a", "b"] pairs; rank = index, a repeated pair keeps the last rank
        const json& merges = model["merges"];
        t.merges_.reserve(merges.size() * 2);
        for (std::size_t rank = 0; rank < merges.size(); ++rank) {
            const json& m = merges[rank];
            std::string a, b;
            if (m.is_string()) {
                const std::string line = m.get<std::string>();
                const auto sp = line.find(' ');
                VLM_CHECK(sp != std::string::npos && line.find(' ', sp + 1) == std::string::npos, "tokenizer",
                          src, ": expected merge ", rank, " as \"a b\", got ", detail::json_brief(m));
                a = line.substr(0, sp);
                b = line.substr(sp + 1);
            } else {
                VLM_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), "tokenizer", src,
                          ": expected merge ", rank, " as \"a b\" or [\"a\", \"b\"], got ", detail::json_brief(m));
                a = m[0].get<std::string>();
                b = m[1].get<std::string>();
            }
            const std::string ab = a + b;
            for (const std::string* part : {&std::as_const(a), &std::as_const(b), &ab})
                VLM_CHECK(t.vocab_.count(*part) != 0, "tokenizer", src, ": expected merge ", rank, " ",
                          detail::json_brief(m), " to use tokens of model.vocab, got \"", *part, "\" missing");
            const auto key = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(t.vocab_[a])) << 32) |
                             static_cast<std::uint32_t>(t.vocab_[b]);
            t.merges_[key] = MergeRule{static_cast<std::uint32_t>(rank), t.vocab_[ab]};
        }

        // normalizer: null or NFC (possibly inside a Sequence)
        if (j.contains("normalizer") && !j["normalizer"].is_null()) {
            const json& norm = j["normalizer"];
            const std::string kind = tok::json_kind(norm);
            if (kind == "NFC") {
                t.nfc_ = true;
            } else if (kind == "Sequence" && norm.contains("normalizers")) {
                for (const json& n : norm["normalizers"]) {
                    VLM_CHECK(tok::json_kind(n) == "NFC", "tokenizer", src,
                              ": expected normalizer NFC or null, got ", tok::json_kind(n));
                    t.nfc_ = true;
                }
            } else {
                fail("tokenizer", src, ": expected normalizer NFC or null, got ", kind);
            }
        }

        // pre_tokenizer: ByteLevel (possibly the only member of a Sequence)
        const json* pre = j.contains("pre_tokenizer") ? &j["pre_tokenizer"] : nullptr;
        if (pre && tok::json_kind(*pre) == "Sequence" && pre->contains("pretokenizers") &&
            (*pre)["pretokenizers"].size() == 1)
            pre = &(*pre)["pretokenizers"][0];
        VLM_CHECK(pre && tok::json_kind(*pre) == "ByteLevel", "tokenizer", src,
                  ": expected pre_tokenizer ByteLevel, got ", pre ? tok::json_kind(*pre) : std::string("none"));
        t.add_prefix_space_ = tok::bool_or(*pre, "add_prefix_space", true);
        t.use_regex_ = tok::bool_or(*pre, "use_regex", true);

        const std::string dec =
            j.contains("decoder") ? tok::json_kind(j["decoder"]) : std::string("none");
        VLM_CHECK(dec == "ByteLevel", "tokenizer", src, ": expected decoder ByteLevel, got ", dec);

        // added tokens
        if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
            VLM_CHECK(j["added_tokens"].is_array(), "tokenizer", src, ": expected added_tokens list, got ",
                      j["added_tokens"].type_name());
            for (const json& a : j["added_tokens"]) {
                VLM_CHECK(a.is_object() && a.contains("id") && a["id"].is_number_integer() &&
                              a["id"].get<std::int64_t>() >= 0 && a["id"].get<std::int64_t>() < (1LL << 30) &&
                              a.contains("content") && a["content"].is_string(),
                          "tokenizer", src, ": expected added token {id, content}, got ", detail::json_brief(a));
                AddedToken at;
                at.id = a["id"].get<std::int32_t>();
                at.content = a["content"].get<std::string>();
                at.special = tok::bool_or(a, "special", false);
                at.normalized = tok::bool_or(a, "normalized", !at.special);
                at.lstrip = tok::bool_or(a, "lstrip", false);
                at.rstrip = tok::bool_or(a, "rstrip", false);
                at.single_word = tok::bool_or(a, "single_word", false);
                max_id = std::max(max_id, at.id);
                t.added_.push_back(std::move(at));
            }
        }
        for (std::size_t k = 0; k < t.added_.size(); ++k) {
            const AddedToken& at = t.added_[k];
            if (at.content.empty()) continue;
            t.added_ids_[at.content] = at.id;
            if (at.normalized)
                t.norm_trie_.insert(t.nfc_ ? nfc(at.content) : at.content, static_cast<int>(k));
            else
                t.raw_trie_.insert(at.content, static_cast<int>(k));
        }

        // id tables, sized by the largest id: ids are dense in real files, so a gap of more than
        // kMaxTokenizerIdGap unused ids is refused before the tables are allocated
        const std::size_t entries = t.vocab_.size() + t.added_.size();
        VLM_CHECK(static_cast<std::size_t>(max_id) < entries + kMaxTokenizerIdGap, "tokenizer", src,
                  ": expected token ids below the token count + ", kMaxTokenizerIdGap, " (", entries,
                  " tokens), got id ", max_id);
        const auto n = static_cast<std::size_t>(max_id + 1);
        t.tokens_.assign(n, std::string());
        t.flags_.assign(n, 0);
        for (const auto& [token, id] : t.vocab_) {
            t.tokens_[static_cast<std::size_t>(id)] = token;
            t.flags_[static_cast<std::size_t>(id)] = 1;
        }
        for (const AddedToken& at : t.added_) {
            t.tokens_[static_cast<std::size_t>(at.id)] = at.content;
            t.flags_[static_cast<std::size_t>(at.id)] = 1;
        }
        std::unordered_set<std::string_view> special;  // skip_special compares token strings (tokenizer/mod.rs)
        for (const AddedToken& at : t.added_)
            if (at.special) special.insert(at.content);
        if (!special.empty())
            for (std::size_t id = 0; id < n; ++id)
                if ((t.flags_[id] & 1) && special.count(t.tokens_[id])) t.flags_[id] |= 2;
        t.bytes_.resize(n);
        for (std::size_t id = 0; id < n; ++id) t.bytes_[id] = tok::token_to_bytes(t.tokens_[id]);
        for (int b = 0; b < 256; ++b) {
            std::string sym;
            utf8::append(sym, tok::byte_table().to_cp[static_cast<std::size_t>(b)]);
            const auto it = t.vocab_.find(sym);
            t.byte_id_[static_cast<std::size_t>(b)] = it == t.vocab_.end() ? -1 : it->second;
        }
    } catch (const nlohmann::json::exception& e) {
        fail("tokenizer", src, ": expected tokenizer.json fields of the right types, got: ", e.what());
    }
    return t;
}

// --- Lookup -------------------------------------------------------------------------------------

inline void Tokenizer::check_id(std::int32_t id) const {
    if (id < 0 || id >= vocab_size() || !(flags_[static_cast<std::size_t>(id)] & 1))
        fail("tokenizer", "expected a token id in [0, ", vocab_size(), ") (vocab size ", vocab_size(),
             "), got ", id, id >= 0 && id < vocab_size() ? " (no token has this id)" : "");
}

inline std::optional<std::int32_t> Tokenizer::token_to_id(std::string_view token) const {
    const std::string key(token);
    if (auto it = added_ids_.find(key); it != added_ids_.end()) return it->second;
    if (auto it = vocab_.find(key); it != vocab_.end()) return it->second;
    return std::nullopt;
}

inline std::string_view Tokenizer::id_to_token(std::int32_t id) const {
    check_id(id);
    return tokens_[static_cast<std::size_t>(id)];
}

inline std::string_view Tokenizer::token_bytes(std::int32_t id) const {
    check_id(id);
    return bytes_[static_cast<std::size_t>(id)];
}

inline bool Tokenizer::is_special(std::int32_t id) const {
    check_id(id);
    return (flags_[static_cast<std::size_t>(id)] & 2) != 0;
}

// --- Encoding -----------------------------------------------------------------------------------

// Added-token matches, leftmost-longest (tokenizer/added_vocabulary.rs: find_matches).
inline std::vector<Tokenizer::Segment> Tokenizer::split_added(std::string_view s, const Trie& trie) const {
    namespace tok = detail::tok;
    std::vector<Segment> out;
    if (s.empty()) return out;
    if (trie.empty()) return {Segment{-1, 0, s.size()}};
    std::size_t start_offset = 0;
    std::size_t i = 0;
    while (i < s.size()) {
        const auto [len, index] = trie.longest(s, i);
        if (len == 0) {
            ++i;
            continue;
        }
        std::size_t start = i, stop = i + len;
        i = stop;  // matches never overlap, whatever happens to this one
        const AddedToken& at = added_[static_cast<std::size_t>(index)];
        if (at.single_word) {
            const bool left_ok = start == 0 || !tok::is_word(tok::last_char(s.substr(0, start)));
            const bool right_ok = stop == s.size() || !tok::is_word(utf8::next(s, stop).cp);
            if (!left_ok || !right_ok) continue;
        }
        if (at.lstrip) start = std::max(tok::trailing_space_begin(s.substr(0, start)), start_offset);
        if (at.rstrip) stop += tok::leading_space_len(s.substr(stop));
        if (start_offset < start) out.push_back({-1, start_offset, start});
        out.push_back({at.id, start, stop});
        start_offset = stop;
    }
    if (start_offset < s.size()) out.push_back({-1, start_offset, s.size()});
    return out;
}

inline std::vector<std::int32_t> Tokenizer::encode(std::string_view text) const {
    if (const auto bad = utf8::first_invalid(text); bad != utf8::npos)
        fail("tokenizer", "invalid UTF-8 at byte ", bad);
    std::vector<std::int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    for (const Segment& raw : split_added(text, raw_trie_)) {
        if (raw.id >= 0) {
            ids.push_back(raw.id);
            continue;
        }
        const std::string_view piece = text.substr(raw.begin, raw.end - raw.begin);
        const std::string normalized = nfc_ ? nfc(piece) : std::string(piece);
        for (const Segment& seg : split_added(normalized, norm_trie_)) {
            if (seg.id >= 0)
                ids.push_back(seg.id);
            else
                encode_segment(std::string_view(normalized).substr(seg.begin, seg.end - seg.begin), ids);
        }
    }
    return ids;
}

inline void Tokenizer::encode_segment(std::string_view s, std::vector<std::int32_t>& ids) const {
    if (s.empty()) return;
    std::string prefixed;
    if (add_prefix_space_ && s.front() != ' ') {
        prefixed = " " + std::string(s);
        s = prefixed;
    }
    if (!use_regex_) return bpe(s, ids);
    detail::tok::pre_tokenize(s, [&](std::size_t b, std::size_t e) { bpe(s.substr(b, e - b), ids); });
}

inline void Tokenizer::bpe(std::string_view piece, std::vector<std::int32_t>& ids) const {
    constexpr std::size_t kMaxCachedLen = 256, kMaxEntries = 1 << 16;
    if (piece.size() > kMaxCachedLen) return bpe_uncached(piece, ids);
    const std::string key(piece);
    {
        std::lock_guard lock(cache_->mutex);
        if (auto it = cache_->map.find(key); it != cache_->map.end()) {
            ids.insert(ids.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    std::vector<std::int32_t> word;
    bpe_uncached(piece, word);
    ids.insert(ids.end(), word.begin(), word.end());
    std::lock_guard lock(cache_->mutex);
    if (cache_->map.size() >= kMaxEntries) cache_->map.clear();
    cache_->map.emplace(key, std::move(word));
}

// BPE merges on one pre-token (models/bpe/word.rs: merge_all): repeatedly merge the adjacent pair
// of lowest rank, leftmost first, with a heap over a linked list of symbols.
inline void Tokenizer::bpe_uncached(std::string_view piece, std::vector<std::int32_t>& ids) const {
    if (ignore_merges_) {
        if (auto it = vocab_.find(detail::tok::byte_level(piece)); it != vocab_.end()) {
            ids.push_back(it->second);
            return;
        }
    }
    struct Symbol {
        std::int32_t id;
        std::int32_t prev, next;
        bool alive;
    };
    std::vector<Symbol> sym;
    sym.reserve(piece.size());
    bool last_unk = false;
    for (unsigned char b : piece) {
        std::int32_t id = byte_id_[b];
        if (id < 0) {
            if (unk_id_ < 0) continue;  // no unk token: the byte is dropped (models/bpe/model.rs)
            if (fuse_unk_ && last_unk) continue;
            id = unk_id_;
            last_unk = true;
        } else {
            last_unk = false;
        }
        sym.push_back({id, 0, 0, true});
    }
    const auto n = static_cast<std::int32_t>(sym.size());
    for (std::int32_t k = 0; k < n; ++k) {
        sym[static_cast<std::size_t>(k)].prev = k - 1;
        sym[static_cast<std::size_t>(k)].next = k + 1 < n ? k + 1 : -1;
    }
    auto rule = [&](std::int32_t a, std::int32_t b) -> const MergeRule* {
        const auto key = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
                         static_cast<std::uint32_t>(b);
        const auto it = merges_.find(key);
        return it == merges_.end() ? nullptr : &it->second;
    };
    struct Cand {
        std::uint32_t rank;
        std::int32_t pos;
        std::int32_t new_id;
        bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
    for (std::int32_t k = 0; k + 1 < n; ++k)
        if (const MergeRule* r = rule(sym[static_cast<std::size_t>(k)].id, sym[static_cast<std::size_t>(k + 1)].id))
            heap.push({r->rank, k, r->new_id});
    while (!heap.empty()) {
        const Cand top = heap.top();
        heap.pop();
        Symbol& left = sym[static_cast<std::size_t>(top.pos)];
        if (!left.alive || left.next < 0) continue;
        Symbol& right = sym[static_cast<std::size_t>(left.next)];
        // Stale entry: the pair at pos changed since it was queued.
        const MergeRule* current = rule(left.id, right.id);
        if (!current || current->new_id != top.new_id) continue;
        left.id = top.new_id;
        right.alive = false;
        left.next = right.next;
        if (left.next >= 0) sym[static_cast<std::size_t>(left.next)].prev = top.pos;
        if (left.prev >= 0)
            if (const MergeRule* r = rule(sym[static_cast<std::size_t>(left.prev)].id, left.id))
                heap.push({r->rank, left.prev, r->new_id});
        if (left.next >= 0)
            if (const MergeRule* r = rule(left.id, sym[static_cast<std::size_t>(left.next)].id))
                heap.push({r->rank, top.pos, r->new_id});
    }
    for (const Symbol& s : sym)
        if (s.alive) ids.push_back(s.id);
}

// --- Decoding -----------------------------------------------------------------------------------

inline std::string Tokenizer::decode_bytes(std::span<const std::int32_t> ids, bool skip_special) const {
    std::string out;
    for (const std::int32_t id : ids) {
        check_id(id);
        const auto k = static_cast<std::size_t>(id);
        if (skip_special && (flags_[k] & 2)) continue;
        out += bytes_[k];
    }
    return out;
}

inline std::string Tokenizer::decode(std::span<const std::int32_t> ids, bool skip_special) const {
    return utf8::to_valid(decode_bytes(ids, skip_special));
}

inline std::string StreamDecoder::push(std::int32_t id) {
    if (skip_special_ && tokenizer_->is_special(id)) return {};
    return utf8_.push(tokenizer_->token_bytes(id));
}

}  // namespace vlmamba
