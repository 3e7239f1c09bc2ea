// A downstream project: includes the installed headers and runs one fused op.
#include <cstdio>
#include <vlmamba/vlmamba.hpp>

int main() {
    namespace vm = vlmamba;
    vm::Tensor x = vm::Tensor::full({2, 3}, 1.f);
    vm::Tensor y = x * vm::silu(x) + 1.f;  // (2, 3)
    const float expect = 1.f / (1.f + std::exp(-1.f)) + 1.f;
    if (std::fabs(y.at({1, 2}) - expect) > 1e-6f) return 1;
    std::printf("consumer: vlmamba %s ok\n", vm::version());
    return 0;
}
