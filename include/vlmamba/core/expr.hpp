// Expression nodes for fused elementwise math. A node only describes; core/assign.hpp runs the loop.
// Operands broadcast NumPy-style from the right in one limited form: a full tensor of the output shape, a
// vector matching the last dim, or a scalar. An expression never escapes a function: bind results to Tensor.
#pragma once
#include <concepts>
#include <type_traits>

#include "vlmamba/core/tensor.hpp"
#include "vlmamba/core/functors.hpp"

namespace vlmamba {

template <class Derived>
struct Expr {
    const Derived& self() const { return static_cast<const Derived&>(*this); }
    operator Tensor() const;  // evaluates (core/assign.hpp)
};

template <class T>
concept TensorExpr = std::derived_from<std::remove_cvref_t<T>, Expr<std::remove_cvref_t<T>>>;

// A tensor operand. Holds the tensor by value (shared storage), so an operand never dangles.
struct Leaf : Expr<Leaf> {
    Tensor t;
    // Set by the evaluator: pointer and row stride (0 = broadcast vector) for the 2-D (rows, cols) loop.
    mutable const float* p = nullptr;
    mutable std::int64_t row_stride = 0;
};

struct ScalarLeaf : Expr<ScalarLeaf> {
    float v;
};

template <class F, class A>
struct UnaryExpr : Expr<UnaryExpr<F, A>> {
    A a;
    F f;
};

template <class F, class A, class B>
struct BinaryExpr : Expr<BinaryExpr<F, A, B>> {
    A a;
    B b;
    F f;
};

// Lifts an operand into a node: Tensor -> Leaf, arithmetic -> ScalarLeaf, nodes pass through.
template <class T>
auto as_expr(T&& x) {
    using U = std::remove_cvref_t<T>;
    if constexpr (std::same_as<U, Tensor>) return Leaf{{}, x};
    else if constexpr (std::is_arithmetic_v<U>) return ScalarLeaf{{}, float(x)};
    else return U(x);
}

template <class T>
concept Operand = TensorExpr<T> || std::same_as<std::remove_cvref_t<T>, Tensor> ||
                  std::is_arithmetic_v<std::remove_cvref_t<T>>;

template <class A, class B>
concept ExprPair = Operand<A> && Operand<B> &&
                   !(std::is_arithmetic_v<std::remove_cvref_t<A>> && std::is_arithmetic_v<std::remove_cvref_t<B>>);

template <class F, class A, class B>
auto make_binary(A&& a, B&& b) {
    using NA = decltype(as_expr(std::forward<A>(a)));
    using NB = decltype(as_expr(std::forward<B>(b)));
    return BinaryExpr<F, NA, NB>{{}, as_expr(std::forward<A>(a)), as_expr(std::forward<B>(b)), F{}};
}

template <class F, class A>
auto make_unary(A&& a) {
    using NA = decltype(as_expr(std::forward<A>(a)));
    return UnaryExpr<F, NA>{{}, as_expr(std::forward<A>(a)), F{}};
}

template <class A, class B> requires ExprPair<A, B> auto operator+(A&& a, B&& b) { return make_binary<fn::Add>(a, b); }
template <class A, class B> requires ExprPair<A, B> auto operator-(A&& a, B&& b) { return make_binary<fn::Sub>(a, b); }
template <class A, class B> requires ExprPair<A, B> auto operator*(A&& a, B&& b) { return make_binary<fn::Mul>(a, b); }
template <class A, class B> requires ExprPair<A, B> auto operator/(A&& a, B&& b) { return make_binary<fn::Div>(a, b); }
template <class A> requires Operand<A> && (!std::is_arithmetic_v<std::remove_cvref_t<A>>)
auto operator-(A&& a) { return make_unary<fn::Neg>(a); }

#define VLMAMBA_UNARY_FN(name, F)                                                                     \
    template <class A> requires Operand<A> && (!std::is_arithmetic_v<std::remove_cvref_t<A>>)         \
    auto name(A&& a) { return make_unary<F>(a); }
VLMAMBA_UNARY_FN(exp, fn::Exp)
VLMAMBA_UNARY_FN(sqrt, fn::Sqrt)
VLMAMBA_UNARY_FN(sigmoid, fn::Sigmoid)
VLMAMBA_UNARY_FN(silu, fn::Silu)
VLMAMBA_UNARY_FN(softplus, fn::Softplus)
VLMAMBA_UNARY_FN(gelu, fn::Gelu)
VLMAMBA_UNARY_FN(gelu_tanh, fn::GeluTanh)
VLMAMBA_UNARY_FN(quick_gelu, fn::QuickGelu)
#undef VLMAMBA_UNARY_FN

template <class A, class B> requires ExprPair<A, B> auto maximum(A&& a, B&& b) { return make_binary<fn::Max>(a, b); }

}  // namespace vlmamba
