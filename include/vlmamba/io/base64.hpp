// Base64 (RFC 4648, standard alphabet, padded or not), as data: URLs carry images. Strict: any other character,
// a misplaced '=' or a dangling final character is an error naming the field and the offset.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vlmamba/core/error.hpp"

namespace vlmamba {

inline std::vector<std::uint8_t> base64_decode(std::string_view s, const std::string& what) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    std::size_t end = s.size();
    while (end > 0 && s.size() - end < 2 && s[end - 1] == '=') --end;
    VLM_CHECK(end % 4 != 1, "base64", what, ": expected base64, got a dangling character at the end (length ",
              s.size(), ")");
    std::vector<std::uint8_t> out;
    out.reserve(end / 4 * 3 + 2);
    std::uint32_t acc = 0;
    int bits = 0;
    for (std::size_t i = 0; i < end; ++i) {
        const int v = value(s[i]);
        VLM_CHECK(v >= 0, "base64", what, ": expected base64, got byte 0x", std::hex, int(std::uint8_t(s[i])),
                  std::dec, " at offset ", i);
        acc = (acc << 6) | std::uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(std::uint8_t(acc >> bits));
        }
    }
    return out;
}

}  // namespace vlmamba
