// Where a computation runs: the host CPU or a CUDA GPU.
#pragma once
#include <string>

#include "vlmamba/core/error.hpp"

namespace vlmamba {

enum class Device { Cpu, Cuda };

inline const char* device_name(Device d) { return d == Device::Cuda ? "cuda" : "cpu"; }

inline Device parse_device(const std::string& s) {
    if (s == "cpu") return Device::Cpu;
    if (s == "cuda") return Device::Cuda;
    fail("device", "expected cpu or cuda, got '", s, "'");
}

}  // namespace vlmamba
