// vlmamba::Error and the VLM_CHECK macro: every runtime failure is "[op] expected ..., got ...".
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace vlmamba {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
    std::ostringstream os;
    (os << ... << std::forward<Args>(args));
    return os.str();
}
}  // namespace detail

// Throws vlmamba::Error("[op] " + message parts).
template <class... Args>
[[noreturn]] void fail(const char* op, Args&&... parts) {
    throw Error(detail::concat("[", op, "] ", std::forward<Args>(parts)...));
}

}  // namespace vlmamba

// VLM_CHECK(cond, "op", "expected ", a, ", got ", b);
#define VLM_CHECK(cond, op, ...)                          \
    do {                                                  \
        if (!(cond)) ::vlmamba::fail(op, __VA_ARGS__);    \
    } while (0)
