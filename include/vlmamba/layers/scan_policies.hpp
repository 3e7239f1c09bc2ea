// The two scan policies of VL-Mamba's VSS (SPEC §2.2, direction order of §2.5). A policy is a plain type:
// `static constexpr int K`, a `name`, and `grid_index(k, t, H, W)`, the row-major grid index (h·W + w) that
// direction k visits at step t. Any type of this form works with VssBlock, e.g. a snake order written by a user:
//
//   struct SnakeScan {
//       static constexpr int K = 1;
//       static constexpr const char* name = "snake";
//       static std::int64_t grid_index(int, std::int64_t t, std::int64_t, std::int64_t W) {
//           const std::int64_t h = t / W, j = t % W;
//           return h * W + (h % 2 ? W - 1 - j : j);
//       }
//   };
#pragma once
#include <cstdint>

#include "vlmamba/ops/cross_scan.hpp"

namespace vlmamba {

// BSM: the row-major sequence and its reverse (VL-Mamba "bidirectional scan"), K = 2.
struct BidirectionalScan {
    static constexpr int K = 2;
    static constexpr const char* name = "bsm";
    static constexpr std::int64_t grid_index(int k, std::int64_t t, std::int64_t H, std::int64_t W) {
        return k == 0 ? t : H * W - 1 - t;  // [row-major, reversed row-major]
    }
};

// CSM: VMamba's cross-scan (vmamba.py: CrossScan), K = 4: [row-major, column-major, reversed row-major,
// reversed column-major].
struct CrossScan {
    static constexpr int K = 4;
    static constexpr const char* name = "csm";
    static constexpr std::int64_t grid_index(int k, std::int64_t t, std::int64_t H, std::int64_t W) {
        const std::int64_t s = k >= 2 ? H * W - 1 - t : t;  // directions 2 and 3 walk 0 and 1 backwards
        if (k % 2 == 0) return s;                           // row-major: s = h·W + w
        return (s % H) * W + s / H;                         // column-major: s = w·H + h
    }
};

static_assert(ScanPolicy<BidirectionalScan> && ScanPolicy<CrossScan>);

}  // namespace vlmamba
