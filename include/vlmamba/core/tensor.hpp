// Tensor: a dtype, a shape and strides over storage it owns (64-byte aligned) or views (e.g. an mmapped file), on a
// device: host memory, or CUDA memory owned through the closed box (core/device.hpp). Ops dispatch on the device.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "vlmamba/core/device.hpp"
#include "vlmamba/core/dtype.hpp"
#include "vlmamba/core/error.hpp"
#include "vlmamba/core/shape.hpp"

namespace vlmamba {

class Tensor {
public:
    Tensor() = default;

    // Owning, uninitialised (host memory 64-byte aligned).
    static Tensor empty(Shape shape, DType dtype = DType::F32, Device device = Device::Cpu);
    static Tensor zeros(Shape shape, DType dtype = DType::F32, Device device = Device::Cpu);
    static Tensor full(Shape shape, float value);
    // Non-owning contiguous view; `keeper` keeps the memory alive (e.g. an mmap).
    static Tensor view(void* data, Shape shape, DType dtype, std::shared_ptr<const void> keeper = {});

    DType dtype() const { return dtype_; }
    Device device() const { return device_; }
    bool is_cuda() const { return device_ == Device::Cuda; }
    const Shape& shape() const { return shape_; }
    const Shape& strides() const { return strides_; }
    int ndim() const { return int(shape_.size()); }
    std::int64_t size(int d) const { return shape_[axis(d)]; }
    std::int64_t stride(int d) const { return strides_[axis(d)]; }
    std::int64_t numel() const { return shape_numel(shape_); }
    std::size_t nbytes() const { return std::size_t(numel()) * dtype_size(dtype_); }
    bool defined() const { return data_ != nullptr; }
    bool is_contiguous() const;

    // Host or device pointers, as the tensor's device says.
    template <class T> T* data() { return reinterpret_cast<T*>(data_); }
    template <class T> const T* data() const { return reinterpret_cast<const T*>(data_); }
    std::byte* raw() { return data_; }
    const std::byte* raw() const { return data_; }
    // f32 element access by index list (tests and small code paths only; host tensors).
    float at(std::initializer_list<std::int64_t> idx) const;

    // Views (no copies).
    Tensor reshape(Shape shape) const;            // contiguous tensors only; one -1 allowed
    Tensor slice(int dim, std::int64_t begin, std::int64_t end) const;
    Tensor select(int dim, std::int64_t index) const;  // drops `dim`
    Tensor transpose(int a, int b) const;
    Tensor unsqueeze(int dim) const;

    // Copies.
    Tensor contiguous() const;                    // returns *this if already contiguous
    Tensor clone() const;
    Tensor to(DType dtype) const;                 // contiguous result on the same device; float <-> float only
    Tensor to(Device device) const;               // *this when already there, else a contiguous copy

    int axis(int d) const;

private:
    std::shared_ptr<const void> storage_;
    std::byte* data_ = nullptr;
    DType dtype_ = DType::F32;
    Device device_ = Device::Cpu;
    Shape shape_;
    Shape strides_;
};

// Copies src into dst elementwise (same shape, any float dtypes, either device). Host to host takes any strides;
// a copy that touches the GPU takes views whose rows are contiguous (e.g. slices of a matrix).
void copy_into(Tensor& dst, const Tensor& src);
// Throws "[op] expected a cpu tensor, got cuda" for ops that have no CUDA kernel.
void require_cpu(const char* op, const Tensor& t);
// Throws unless every defined tensor lives on a's device; returns that device.
template <class... T> Device same_device(const char* op, const Tensor& a, const T&... rest);
// Throws "[op] <what> has shape (..), expected (..)".
void check_shape(const char* op, const char* what, const Tensor& t, const Shape& expected);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {
inline std::shared_ptr<std::byte> aligned_alloc_bytes(std::size_t n) {
    std::size_t rounded = (std::max<std::size_t>(n, 1) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) throw std::bad_alloc();
    return {static_cast<std::byte*>(p), [](std::byte* q) { std::free(q); }};
}

inline float load_as_f32(const std::byte* p, DType t) {
    switch (t) {
        case DType::F32: { float f; std::memcpy(&f, p, 4); return f; }
        case DType::BF16: { std::uint16_t h; std::memcpy(&h, p, 2); return bf16_to_f32(h); }
        case DType::F16: { std::uint16_t h; std::memcpy(&h, p, 2); return f16_to_f32(h); }
        case DType::I32: { std::int32_t v; std::memcpy(&v, p, 4); return float(v); }
        case DType::I64: { std::int64_t v; std::memcpy(&v, p, 8); return float(v); }
        case DType::U8: return float(std::to_integer<unsigned>(*p));
        case DType::BOOL: return *p != std::byte{0} ? 1.f : 0.f;
    }
    return 0.f;
}

inline void store_from_f32(std::byte* p, DType t, float f) {
    switch (t) {
        case DType::F32: std::memcpy(p, &f, 4); break;
        case DType::BF16: { auto h = f32_to_bf16(f); std::memcpy(p, &h, 2); break; }
        case DType::F16: { auto h = f32_to_f16(f); std::memcpy(p, &h, 2); break; }
        case DType::I32: { auto v = std::int32_t(f); std::memcpy(p, &v, 4); break; }
        case DType::I64: { auto v = std::int64_t(f); std::memcpy(p, &v, 8); break; }
        case DType::U8: *p = std::byte(static_cast<unsigned char>(f > 0.f ? (f < 255.f ? f : 255.f) : 0.f)); break;
        case DType::BOOL: *p = std::byte(f != 0.f ? 1 : 0); break;
    }
}

// Calls f(offset_in_elements) for each element of (shape, strides) in row-major order.
template <class F>
void for_each_offset(const Shape& shape, const Shape& strides, F&& f) {
    const int nd = int(shape.size());
    if (shape_numel(shape) == 0) return;
    if (nd == 0) { f(std::int64_t(0)); return; }
    std::vector<std::int64_t> idx(nd, 0);
    const std::int64_t inner = shape[nd - 1], inner_stride = strides[nd - 1];
    std::int64_t base = 0;
    while (true) {
        for (std::int64_t i = 0; i < inner; ++i) f(base + i * inner_stride);
        int d = nd - 2;
        for (; d >= 0; --d) {
            base += strides[d];
            if (++idx[d] < shape[d]) break;
            base -= strides[d] * shape[d];
            idx[d] = 0;
        }
        if (d < 0) return;
    }
}
}  // namespace detail

inline Tensor Tensor::empty(Shape shape, DType dtype, Device device) {
    for (auto d : shape) VLM_CHECK(d >= 0, "tensor", "expected non-negative sizes, got ", shape_str(shape));
    Tensor t;
    t.dtype_ = dtype;
    t.device_ = device;
    t.strides_ = contiguous_strides(shape);
    t.shape_ = std::move(shape);
    if (device == Device::Cuda) {
        std::shared_ptr<std::byte> mem(static_cast<std::byte*>(cuda::tensor_malloc(t.nbytes())),
                                       [](std::byte* q) { cuda::tensor_free(q); });
        t.data_ = mem.get();
        t.storage_ = std::move(mem);
        return t;
    }
    auto mem = detail::aligned_alloc_bytes(t.nbytes());
    t.data_ = mem.get();
    t.storage_ = std::move(mem);
    return t;
}

inline Tensor Tensor::zeros(Shape shape, DType dtype, Device device) {
    Tensor t = empty(std::move(shape), dtype, device);
    if (device == Device::Cuda) cuda::memset0(t.data_, t.nbytes());
    else std::memset(t.data_, 0, t.nbytes());
    return t;
}

inline Tensor Tensor::full(Shape shape, float value) {
    Tensor t = empty(std::move(shape), DType::F32);
    std::fill_n(t.data<float>(), t.numel(), value);
    return t;
}

inline Tensor Tensor::view(void* data, Shape shape, DType dtype, std::shared_ptr<const void> keeper) {
    Tensor t;
    t.dtype_ = dtype;
    t.strides_ = contiguous_strides(shape);
    t.shape_ = std::move(shape);
    t.data_ = static_cast<std::byte*>(data);
    t.storage_ = std::move(keeper);
    return t;
}

inline int Tensor::axis(int d) const {
    const int nd = ndim();
    VLM_CHECK(d >= -nd && d < nd, "tensor", "expected a dim in [", -nd, ", ", nd, "), got ", d, " for shape ",
              shape_str(shape_));
    return d < 0 ? d + nd : d;
}

inline bool Tensor::is_contiguous() const {
    std::int64_t acc = 1;
    for (int i = ndim() - 1; i >= 0; --i) {
        if (shape_[i] != 1 && strides_[i] != acc) return false;
        acc *= shape_[i];
    }
    return true;
}

inline float Tensor::at(std::initializer_list<std::int64_t> idx) const {
    VLM_CHECK(int(idx.size()) == ndim(), "tensor.at", "expected ", ndim(), " indices, got ", idx.size());
    require_cpu("tensor.at", *this);
    std::int64_t off = 0;
    int d = 0;
    for (auto i : idx) {
        VLM_CHECK(i >= 0 && i < shape_[d], "tensor.at", "expected index < ", shape_[d], " in dim ", d, ", got ", i);
        off += i * strides_[d++];
    }
    return detail::load_as_f32(data_ + off * std::int64_t(dtype_size(dtype_)), dtype_);
}

inline Tensor Tensor::reshape(Shape shape) const {
    int infer = -1;
    std::int64_t known = 1;
    for (int i = 0; i < int(shape.size()); ++i) {
        if (shape[i] == -1) {
            VLM_CHECK(infer < 0, "reshape", "expected at most one -1, got ", shape_str(shape));
            infer = i;
        } else {
            known *= shape[i];
        }
    }
    if (infer >= 0) shape[infer] = known ? numel() / known : 0;
    VLM_CHECK(shape_numel(shape) == numel(), "reshape", "expected ", numel(), " elements as in ", shape_str(shape_),
              ", got ", shape_str(shape));
    VLM_CHECK(is_contiguous(), "reshape", "expected a contiguous tensor, got strides ", shape_str(strides_));
    Tensor t = *this;
    t.strides_ = contiguous_strides(shape);
    t.shape_ = std::move(shape);
    return t;
}

inline Tensor Tensor::slice(int dim, std::int64_t begin, std::int64_t end) const {
    const int d = axis(dim);
    VLM_CHECK(0 <= begin && begin <= end && end <= shape_[d], "slice", "expected 0 <= begin <= end <= ", shape_[d],
              " in dim ", d, ", got [", begin, ", ", end, ")");
    Tensor t = *this;
    t.data_ += begin * strides_[d] * std::int64_t(dtype_size(dtype_));
    t.shape_[d] = end - begin;
    return t;
}

inline Tensor Tensor::select(int dim, std::int64_t index) const {
    const int d = axis(dim);
    Tensor t = slice(d, index, index + 1);
    t.shape_.erase(t.shape_.begin() + d);
    t.strides_.erase(t.strides_.begin() + d);
    return t;
}

inline Tensor Tensor::transpose(int a, int b) const {
    Tensor t = *this;
    const int da = axis(a), db = axis(b);
    std::swap(t.shape_[da], t.shape_[db]);
    std::swap(t.strides_[da], t.strides_[db]);
    return t;
}

inline Tensor Tensor::unsqueeze(int dim) const {
    const int nd = ndim();
    VLM_CHECK(dim >= -nd - 1 && dim <= nd, "unsqueeze", "expected a dim in [", -nd - 1, ", ", nd, "], got ", dim);
    const int d = dim < 0 ? dim + nd + 1 : dim;
    Tensor t = *this;
    const std::int64_t st = d < nd ? strides_[d] * shape_[d] : 1;
    t.shape_.insert(t.shape_.begin() + d, 1);
    t.strides_.insert(t.strides_.begin() + d, st);
    return t;
}

inline Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

inline Tensor Tensor::clone() const {
    Tensor t = empty(shape_, dtype_, device_);
    copy_into(t, *this);
    return t;
}

inline Tensor Tensor::to(DType dtype) const {
    if (dtype == dtype_) return contiguous();
    Tensor t = empty(shape_, dtype, device_);
    copy_into(t, *this);
    return t;
}

inline Tensor Tensor::to(Device device) const {
    if (device == device_) return *this;
    Tensor t = empty(shape_, dtype_, device);
    copy_into(t, *this);
    return t;
}

inline void require_cpu(const char* op, const Tensor& t) {
    if (t.is_cuda()) fail(op, "expected a cpu tensor, got cuda (this op has no CUDA kernel)");
}

template <class... T>
Device same_device(const char* op, const Tensor& a, const T&... rest) {
    const Device d = a.device();
    auto one = [&](const Tensor& t) {
        if (t.defined() && t.device() != d)
            fail(op, "expected every operand on ", device_name(d), ", got one of shape ", shape_str(t.shape()),
                 " on ", device_name(t.device()));
    };
    (one(rest), ...);
    return d;
}

namespace detail {
// A view as `rows` rows of `width` contiguous elements, `pitch` elements apart: what one 2-D copy moves.
struct RowsView {
    std::int64_t rows = 1, width = 1, pitch = 1;
};
inline bool rows_view(const Tensor& t, RowsView& v) {
    Shape sh, st;  // without size-1 dims
    for (int d = 0; d < t.ndim(); ++d)
        if (t.size(d) != 1) sh.push_back(t.size(d)), st.push_back(t.stride(d));
    if (sh.empty()) return true;
    if (st.back() != 1) return false;
    v.width = sh.back();
    v.rows = 1;
    v.pitch = v.width;
    for (int d = int(sh.size()) - 2; d >= 0; --d) {
        if (v.rows == 1) v.pitch = st[d];
        else if (st[d] != v.pitch * v.rows) return false;  // only uniformly spaced rows merge
        v.rows *= sh[d];
    }
    if (v.rows == 1) v.pitch = v.width;
    return v.pitch >= v.width;
}

// Copies between tensors of the same dtype where at least one is on the GPU.
inline void copy_same_dtype_device(Tensor& dst, const Tensor& src) {
    RowsView vd, vs;
    const bool ok = rows_view(dst, vd) && rows_view(src, vs);
    VLM_CHECK(ok && vd.rows == vs.rows && vd.width == vs.width, "copy",
              "a copy to or from cuda takes views with contiguous rows, got strides ", shape_str(src.strides()),
              " -> ", shape_str(dst.strides()), " for shape ", shape_str(src.shape()));
    const std::size_t es = dtype_size(src.dtype());
    cuda::copy_2d(dst.raw(), std::size_t(vd.pitch) * es, dst.is_cuda(), src.raw(), std::size_t(vs.pitch) * es,
                  src.is_cuda(), std::size_t(vd.width) * es, std::size_t(vd.rows));
}
}  // namespace detail

inline void copy_into(Tensor& dst, const Tensor& src) {
    VLM_CHECK(dst.shape() == src.shape(), "copy", "expected shape ", shape_str(dst.shape()), ", got ",
              shape_str(src.shape()));
    const std::int64_t n = src.numel();
    if (n == 0) return;
    if (dst.is_cuda() || src.is_cuda()) {
        if (dst.dtype() == src.dtype()) return detail::copy_same_dtype_device(dst, src);
        if (!src.is_cuda()) {  // convert on the host, then upload
            const Tensor h = src.to(dst.dtype());
            return detail::copy_same_dtype_device(dst, h);
        }
        if (!dst.is_cuda()) {  // download, then convert on the host
            Tensor h = Tensor::empty(src.shape(), src.dtype());
            detail::copy_same_dtype_device(h, src);
            return copy_into(dst, h);
        }
        // both on the GPU: convert contiguous buffers there
        const Tensor s = src.contiguous();
        Tensor d = dst.is_contiguous() ? dst : Tensor::empty(dst.shape(), dst.dtype(), Device::Cuda);
        cuda::convert(d.raw(), d.dtype(), s.raw(), s.dtype(), n);
        if (d.raw() != dst.raw()) detail::copy_same_dtype_device(dst, d);
        return;
    }
    if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
        std::memcpy(dst.raw(), src.raw(), src.nbytes());
        return;
    }
    const auto ss = std::int64_t(dtype_size(src.dtype()));
    if (dst.is_contiguous() && dst.dtype() == DType::F32) {
        float* out = dst.data<float>();
        const std::byte* in = src.raw();
        if (src.dtype() == DType::F32) {
            detail::for_each_offset(src.shape(), src.strides(),
                                    [&](std::int64_t off) { std::memcpy(out++, in + off * 4, 4); });
        } else {
            const DType t = src.dtype();
            detail::for_each_offset(src.shape(), src.strides(),
                                    [&](std::int64_t off) { *out++ = detail::load_as_f32(in + off * ss, t); });
        }
        return;
    }
    Tensor tmp = src.dtype() == DType::F32 && src.is_contiguous() ? src : src.to(DType::F32);
    const float* in = tmp.data<float>();
    const auto ds = std::int64_t(dtype_size(dst.dtype()));
    std::byte* out = dst.raw();
    const DType t = dst.dtype();
    detail::for_each_offset(dst.shape(), dst.strides(),
                            [&](std::int64_t off) { detail::store_from_f32(out + off * ds, t, *in++); });
}

inline void check_shape(const char* op, const char* what, const Tensor& t, const Shape& expected) {
    if (t.shape() != expected)
        fail(op, what, " has shape ", shape_str(t.shape()), ", expected ", shape_str(expected));
}

}  // namespace vlmamba
