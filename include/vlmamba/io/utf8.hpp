// UTF-8 helpers: decode one code point, validate, lossy repair (maximal-subpart U+FFFD, as Rust's
// String::from_utf8_lossy and so HF tokenizers), encode, and an incremental decoder for streaming.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace vlmamba::utf8 {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

inline constexpr char32_t kReplacement = 0xFFFD;
inline constexpr std::size_t npos = std::string_view::npos;

enum class Status : std::uint8_t {
    ok,         // a complete, well-formed sequence of `len` bytes
    invalid,    // ill-formed: `len` = length of the maximal subpart (>= 1), to be replaced by one U+FFFD
    truncated,  // a well-formed prefix of `len` bytes that runs into the end of the input
};

struct Step {
    Status status;
    int len;
    char32_t cp;  // valid only for Status::ok
};

// Looks at the sequence starting at s[i] (i < s.size()).
constexpr Step next(std::string_view s, std::size_t i) noexcept;
// Byte offset of the first ill-formed or truncated sequence, or npos if s is valid UTF-8.
constexpr std::size_t first_invalid(std::string_view s) noexcept;
constexpr bool is_valid(std::string_view s) noexcept;
// Replaces every maximal ill-formed subpart (and a truncated tail) by U+FFFD.
std::string to_valid(std::string_view s);
// Appends the UTF-8 encoding of cp (cp must be a scalar value).
void append(std::string& out, char32_t cp);

// Feeds raw bytes in pieces; returns only complete characters, holding back a truncated tail.
// The concatenation of all push() results and flush() equals to_valid(all bytes).
class Incremental {
public:
    std::string push(std::string_view bytes);
    std::string flush();
    bool pending() const noexcept { return !tail_.empty(); }

private:
    std::string tail_;
};

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {
constexpr bool is_cont(unsigned char b) noexcept { return (b & 0xC0) == 0x80; }
}  // namespace detail

constexpr Step next(std::string_view s, std::size_t i) noexcept {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) return {Status::ok, 1, b0};
    // Length and the allowed range of the second byte (Unicode Table 3-7).
    int len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        if (b0 == 0xE0) lo = 0xA0;  // no overlongs
        if (b0 == 0xED) hi = 0x9F;  // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        if (b0 == 0xF0) lo = 0x90;  // no overlongs
        if (b0 == 0xF4) hi = 0x8F;  // <= U+10FFFF
    } else {
        return {Status::invalid, 1, 0};
    }
    char32_t cp = b0 & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (int k = 1; k < len; ++k) {
        if (i + k >= s.size()) return {Status::truncated, k, 0};
        const auto b = static_cast<unsigned char>(s[i + k]);
        const bool in_range = k == 1 ? (b >= lo && b <= hi) : detail::is_cont(b);
        if (!in_range) return {Status::invalid, k, 0};
        cp = (cp << 6) | (b & 0x3F);
    }
    return {Status::ok, len, cp};
}

constexpr std::size_t first_invalid(std::string_view s) noexcept {
    std::size_t i = 0;
    while (i < s.size()) {
        if (static_cast<unsigned char>(s[i]) < 0x80) {
            ++i;
            continue;
        }
        const Step st = next(s, i);
        if (st.status != Status::ok) return i;
        i += static_cast<std::size_t>(st.len);
    }
    return npos;
}

constexpr bool is_valid(std::string_view s) noexcept { return first_invalid(s) == npos; }

inline void append(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

namespace detail {
// Appends the repaired form of s to out; returns the length of a truncated tail left unconsumed
// when keep_tail is set (otherwise the tail becomes one U+FFFD).
inline std::size_t repair_into(std::string& out, std::string_view s, bool keep_tail) {
    std::size_t i = 0;
    while (i < s.size()) {
        const Step st = next(s, i);
        if (st.status == Status::ok) {
            out.append(s.substr(i, static_cast<std::size_t>(st.len)));
        } else if (st.status == Status::truncated && keep_tail) {
            return s.size() - i;
        } else {
            append(out, kReplacement);
        }
        i += static_cast<std::size_t>(st.len);
    }
    return 0;
}
}  // namespace detail

inline std::string to_valid(std::string_view s) {
    if (is_valid(s)) return std::string(s);
    std::string out;
    out.reserve(s.size() + 8);
    detail::repair_into(out, s, /*keep_tail=*/false);
    return out;
}

inline std::string Incremental::push(std::string_view bytes) {
    tail_.append(bytes);
    std::string out;
    const std::size_t keep = detail::repair_into(out, tail_, /*keep_tail=*/true);
    tail_.erase(0, tail_.size() - keep);
    return out;
}

inline std::string Incremental::flush() {
    std::string out;
    detail::repair_into(out, tail_, /*keep_tail=*/false);
    tail_.clear();
    return out;
}

}  // namespace vlmamba::utf8
