// Expressions need a tensor operand: two plain numbers must not become a lazy expression.
#include "vlmamba/ops/elementwise.hpp"

int main() {
    vlmamba::Tensor t = vlmamba::Tensor::zeros({2});
#ifdef VLMAMBA_SHOULD_FAIL
    vlmamba::Tensor y = vlmamba::silu(1.f);  // no tensor anywhere
#else
    vlmamba::Tensor y = vlmamba::silu(t);
#endif
    (void)y;
}
