// Version and feature macros.
#pragma once

#define VLMAMBA_VERSION_MAJOR 0
#define VLMAMBA_VERSION_MINOR 1
#define VLMAMBA_VERSION_PATCH 0

namespace vlmamba {
constexpr const char* version() { return "0.1.0"; }
}  // namespace vlmamba
