// A 2-D scan policy defined outside the library: a boustrophedon ("snake") walk over the patch grid and its reverse.
// Rows alternate direction, so consecutive tokens are always grid neighbours. K = 2, like BSM, so it runs on BSM
// connector weights.
#pragma once
#include <vlmamba/models/vl_mamba.hpp>

struct SnakeScan {
    static constexpr int K = 2;
    static constexpr const char* name = "snake";
    // The row-major grid index (h·W + w) that direction k visits at step t.
    static constexpr std::int64_t grid_index(int k, std::int64_t t, std::int64_t H, std::int64_t W) {
        const std::int64_t s = k == 0 ? t : H * W - 1 - t;  // direction 1 walks the snake backwards
        const std::int64_t h = s / W, j = s % W;
        return h * W + (h % 2 ? W - 1 - j : j);
    }
};
static_assert(vlmamba::ScanPolicy<SnakeScan>, "SnakeScan must satisfy the ScanPolicy concept");

// The whole model variant is one type alias: SigLIP tower, VSS-L2 connector scanning in snake order, Mamba LM.
using SnakeVlMamba = vlmamba::VlMamba<vlmamba::SiglipVisionEncoder, vlmamba::VssL2Connector<SnakeScan>>;
