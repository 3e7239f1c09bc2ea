// Shape and strides (PyTorch order, elements not bytes) and their printing for error messages.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vlmamba {

using Shape = std::vector<std::int64_t>;

inline std::string shape_str(const Shape& s) {
    std::string out = "(";
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (i) out += ", ";
        out += std::to_string(s[i]);
    }
    return out + (s.size() == 1 ? ",)" : ")");
}

inline std::int64_t shape_numel(const Shape& s) {
    std::int64_t n = 1;
    for (auto d : s) n *= d;
    return n;
}

inline Shape contiguous_strides(const Shape& s) {
    Shape st(s.size());
    std::int64_t acc = 1;
    for (std::size_t i = s.size(); i-- > 0;) {
        st[i] = acc;
        acc *= s[i];
    }
    return st;
}

}  // namespace vlmamba
