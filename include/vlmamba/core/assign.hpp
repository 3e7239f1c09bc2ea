// The single evaluation loop for expressions: rows x cols, one fused xsimd pass with a scalar tail.
#pragma once
#include <algorithm>

#include "vlmamba/core/expr.hpp"
#include "vlmamba/core/parallel.hpp"

namespace vlmamba {

// Evaluates an expression into a new contiguous f32 tensor of the broadcast shape.
template <TensorExpr E> Tensor eval(const E& e);
// Evaluates into an existing contiguous f32 tensor of the broadcast shape (may alias an operand elementwise).
template <TensorExpr E> void assign(Tensor& out, const E& e);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {

// Declarations first: the overloads recurse into each other.
template <class Fn, class F, class A> void visit_leaves(const UnaryExpr<F, A>& e, Fn&& f);
template <class Fn, class F, class A, class B> void visit_leaves(const BinaryExpr<F, A, B>& e, Fn&& f);
template <class F, class A> float at(const UnaryExpr<F, A>& e, std::int64_t r, std::int64_t c);
template <class F, class A> fn::batch load(const UnaryExpr<F, A>& e, std::int64_t r, std::int64_t c);
template <class F, class A, class B> float at(const BinaryExpr<F, A, B>& e, std::int64_t r, std::int64_t c);
template <class F, class A, class B> fn::batch load(const BinaryExpr<F, A, B>& e, std::int64_t r, std::int64_t c);

template <class Fn> void visit_leaves(const Leaf& l, Fn&& f) { f(l); }
template <class Fn> void visit_leaves(const ScalarLeaf&, Fn&&) {}
template <class Fn, class F, class A> void visit_leaves(const UnaryExpr<F, A>& e, Fn&& f) { visit_leaves(e.a, f); }
template <class Fn, class F, class A, class B> void visit_leaves(const BinaryExpr<F, A, B>& e, Fn&& f) {
    visit_leaves(e.a, f);
    visit_leaves(e.b, f);
}

// Scalar and batch evaluation at (row r, col c).
inline float at(const Leaf& l, std::int64_t r, std::int64_t c) { return l.p[r * l.row_stride + c]; }
inline fn::batch load(const Leaf& l, std::int64_t r, std::int64_t c) {
    return fn::batch::load_unaligned(l.p + r * l.row_stride + c);
}
inline float at(const ScalarLeaf& s, std::int64_t, std::int64_t) { return s.v; }
inline fn::batch load(const ScalarLeaf& s, std::int64_t, std::int64_t) { return fn::batch(s.v); }
template <class F, class A> float at(const UnaryExpr<F, A>& e, std::int64_t r, std::int64_t c) {
    return e.f(at(e.a, r, c));
}
template <class F, class A> fn::batch load(const UnaryExpr<F, A>& e, std::int64_t r, std::int64_t c) {
    return e.f(load(e.a, r, c));
}
template <class F, class A, class B> float at(const BinaryExpr<F, A, B>& e, std::int64_t r, std::int64_t c) {
    return e.f(at(e.a, r, c), at(e.b, r, c));
}
template <class F, class A, class B> fn::batch load(const BinaryExpr<F, A, B>& e, std::int64_t r, std::int64_t c) {
    return e.f(load(e.a, r, c), load(e.b, r, c));
}

// The output shape is the shape of the leaf with the most elements.
template <class E>
Shape broadcast_shape(const E& e) {
    Shape out;
    std::int64_t best = -1;
    visit_leaves(e, [&](const Leaf& l) {
        if (l.t.numel() > best || (l.t.ndim() > int(out.size()) && l.t.numel() == best)) {
            best = l.t.numel();
            out = l.t.shape();
        }
    });
    VLM_CHECK(best >= 0, "eval", "expected at least one tensor operand, got none");
    return out;
}

// Binds each leaf to f32 contiguous memory and checks its shape against `out`.
template <class E>
void bind_leaves(const E& e, const Shape& out) {
    const std::int64_t cols = out.empty() ? 1 : out.back();
    visit_leaves(e, [&](const Leaf& l) {
        Leaf& m = const_cast<Leaf&>(l);
        require_cpu("eval", m.t);
        if (m.t.dtype() != DType::F32 || !m.t.is_contiguous()) m.t = m.t.to(DType::F32);
        m.p = m.t.data<float>();
        if (m.t.shape() == out) {
            m.row_stride = cols;
        } else if (m.t.numel() == cols && (m.t.ndim() == 0 || m.t.shape().back() == cols)) {
            m.row_stride = 0;  // broadcast along rows
        } else {
            fail("eval", "operand of shape ", shape_str(m.t.shape()), " does not broadcast to ", shape_str(out),
                 ": expected the same shape, (", cols, ",) or a scalar");
        }
    });
}

}  // namespace detail

template <TensorExpr E>
void assign(Tensor& out, const E& e) {
    VLM_CHECK(out.dtype() == DType::F32 && out.is_contiguous(), "assign", "expected a contiguous F32 output, got ",
              dtype_name(out.dtype()), " strides ", shape_str(out.strides()));
    require_cpu("assign", out);
    detail::bind_leaves(e, out.shape());
    const std::int64_t cols = out.ndim() == 0 ? 1 : out.shape().back();
    const std::int64_t rows = cols ? out.numel() / cols : 0;
    constexpr std::int64_t W = fn::batch::size;
    float* y = out.data<float>();
    // Contiguous full-shape rows collapse into one long row when nothing broadcasts.
    bool flat = true;
    detail::visit_leaves(e, [&](const Leaf& l) { flat = flat && l.row_stride != 0; });
    const std::int64_t R = flat ? 1 : rows, C = flat ? rows * cols : cols;
    if (flat) detail::visit_leaves(e, [&](const Leaf& l) { l.row_stride = 0; });
    const std::int64_t chunk = flat ? std::max<std::int64_t>(4096, (C + 63) / 64 / W * W) : C;
    const std::int64_t nchunks = flat ? (C + chunk - 1) / chunk : R;
    parallel_for(nchunks, [&](std::int64_t k) {
        const std::int64_t r = flat ? 0 : k;
        const std::int64_t c0 = flat ? k * chunk : 0, c1 = flat ? std::min(C, c0 + chunk) : C;
        float* yr = y + r * C;
        std::int64_t c = c0;
        for (; c + W <= c1; c += W) detail::load(e, r, c).store_unaligned(yr + c);
        for (; c < c1; ++c) yr[c] = detail::at(e, r, c);
    }, flat ? chunk : C);
}

template <TensorExpr E>
Tensor eval(const E& e) {
    Tensor out = Tensor::empty(detail::broadcast_shape(e));
    assign(out, e);
    return out;
}

template <class Derived>
Expr<Derived>::operator Tensor() const {
    return eval(self());
}

}  // namespace vlmamba
