// A VSS block needs a scan policy: a type without K, name and grid_index must not compile.
#include "vlmamba/layers/vss_block.hpp"

struct NotAPolicy {
#ifndef VLMAMBA_SHOULD_FAIL
    static constexpr int K = 1;
    static constexpr const char* name = "rows";
    static constexpr std::int64_t grid_index(int, std::int64_t t, std::int64_t, std::int64_t) { return t; }
#endif
};

int main() {
    vlmamba::VssBlock<NotAPolicy> block{};
    (void)block;
}
