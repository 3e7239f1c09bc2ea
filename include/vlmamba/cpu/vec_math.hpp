// Vectorised exp2, exp, log, log1p, softplus and silu over xsimd batches (fp32, about 1-2 ulp).
#pragma once
#include <cstdint>
#include <type_traits>

#include <xsimd/xsimd.hpp>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// GCC 12.2 warns about the _mm512_undefined_ps() inside AVX-512 intrinsics once inlined (GCC bug 105593,
// fixed in 12.3); the warning is spurious.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace vlmamba::vec {

// ---------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------

template <class A> using fbatch = xsimd::batch<float, A>;

// 2^x over the full float range: 0 below -150, inf above 128, NaN stays NaN.
template <class A> fbatch<A> exp2(fbatch<A> x) noexcept;
// e^x over the full float range (Cody-Waite reduction by ln 2).
template <class A> fbatch<A> exp(fbatch<A> x) noexcept;
// Natural log for positive normal x (0, denormals and negatives are not handled).
template <class A> fbatch<A> log(fbatch<A> x) noexcept;
// log(1 + x) for x >= 0, accurate for tiny x.
template <class A> fbatch<A> log1p(fbatch<A> x) noexcept;
// PyTorch softplus (beta 1, threshold 20): x if x > 20, else log1p(exp(x)).
template <class A> fbatch<A> softplus(fbatch<A> x) noexcept;
// x * sigmoid(x), written x / (1 + exp(-x)) as PyTorch's CPU kernel.
template <class A> fbatch<A> silu(fbatch<A> x) noexcept;

// ---------------------------------------------------------------------------------------------
// Implementations
// ---------------------------------------------------------------------------------------------

namespace detail {

// Degree-6 Chebyshev interpolants, converted to monomials and rounded to float (max relative
// error 1.9e-8 on the reduced interval):
//   2^f on f in [-1/2, 1/2]        and        e^r on r in [-ln2/2, ln2/2].
inline constexpr float exp2_c[7] = {1.0f,           6.931471825e-01f, 2.402265072e-01f, 5.550327152e-02f,
                                    9.618025273e-03f, 1.340043265e-03f, 1.546973217e-04f};
inline constexpr float exp_c[7] = {1.0f,           1.0f,             5.0e-01f,         1.666641533e-01f,
                                   4.166621715e-02f, 8.375128731e-03f, 1.394858118e-03f};

template <class A>
inline fbatch<A> poly6(fbatch<A> x, const float (&c)[7]) noexcept {
    using B = fbatch<A>;
    B p = xsimd::fma(x, B(c[6]), B(c[5]));
    p = xsimd::fma(x, p, B(c[4]));
    p = xsimd::fma(x, p, B(c[3]));
    p = xsimd::fma(x, p, B(c[2]));
    p = xsimd::fma(x, p, B(c[1]));
    return xsimd::fma(x, p, B(c[0]));
}

template <class A>
constexpr bool is_avx512 = std::is_base_of_v<xsimd::avx512f, A>;

// p * 2^k for integral k in [-160, 160] and p in [0.5, 2]: exact scaling, denormals and
// overflow rounded as IEEE multiplication would round them.
template <class A>
inline fbatch<A> scale_pow2(fbatch<A> p, fbatch<A> k) noexcept {
#if defined(__AVX512F__)
    if constexpr (is_avx512<A>) {
        return _mm512_scalef_ps(p, k);
    } else
#endif
    {
        // Split 2^k = 2^k1 * 2^k2 so that each factor is a normal float.
        using I = xsimd::batch<std::int32_t, A>;
        I ki = xsimd::to_int(k);
        I k1 = ki >> 1;
        I k2 = ki - k1;
        fbatch<A> s1 = xsimd::bitwise_cast<fbatch<A>>((k1 + I(127)) << 23);
        fbatch<A> s2 = xsimd::bitwise_cast<fbatch<A>>((k2 + I(127)) << 23);
        return p * s1 * s2;
    }
}

}  // namespace detail

template <class A>
inline fbatch<A> exp2(fbatch<A> x) noexcept {
    using B = fbatch<A>;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    if constexpr (detail::is_avx512<A>) {
        // No clamp needed: vreduceps gives f = 0 for +-inf, and vscalefps saturates to 0 or inf.
        constexpr int rn = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        const B k = _mm512_roundscale_ps(x, rn);  // x = k + f, |f| <= 1/2
        const B f = _mm512_reduce_ps(x, rn);
        return _mm512_scalef_ps(detail::poly6<A>(f, detail::exp2_c), k);
    } else
#endif
    {
        // max/min with x second keep a NaN in x on x86.
        x = xsimd::min(B(150.0f), xsimd::max(B(-160.0f), x));
        const B k = xsimd::nearbyint(x);  // x = k + f, |f| <= 1/2
        const B f = x - k;                // exact
        return detail::scale_pow2<A>(detail::poly6<A>(f, detail::exp2_c), k);
    }
}

template <class A>
inline fbatch<A> exp(fbatch<A> x) noexcept {
    using B = fbatch<A>;
    constexpr float log2e = 1.44269504088896341f;
    constexpr float ln2_hi = 0.693145751953125f;  // 12 significant bits: k * ln2_hi is exact
    constexpr float ln2_lo = 1.428606765330187e-06f;
    x = xsimd::min(B(104.0f), xsimd::max(B(-111.0f), x));
    B k = xsimd::nearbyint(x * B(log2e));
    B r = xsimd::fnma(k, B(ln2_hi), x);  // x - k ln2, |r| <= ln2/2
    r = xsimd::fnma(k, B(ln2_lo), r);
    return detail::scale_pow2<A>(detail::poly6<A>(r, detail::exp_c), k);
}

template <class A>
inline fbatch<A> log(fbatch<A> x) noexcept {
    using B = fbatch<A>;
    using I = xsimd::batch<std::int32_t, A>;
    constexpr float sqrt2 = 1.41421356237309505f;
    constexpr float ln2_hi = 0.693145751953125f;
    constexpr float ln2_lo = 1.428606765330187e-06f;
    // x = 2^e * m with m in [1, 2), then m folded into [sqrt(1/2), sqrt(2)).
    I bits = xsimd::bitwise_cast<I>(x);
    B e = xsimd::to_float((bits >> 23) - I(127));
    B m = xsimd::bitwise_cast<B>((bits & I(0x007fffff)) | I(0x3f800000));
    auto big = m > B(sqrt2);
    m = xsimd::select(big, m * B(0.5f), m);
    e = xsimd::select(big, e + B(1.0f), e);
    // log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716: odd series to s^9 (error < 3e-9).
    B s = (m - B(1.0f)) / (m + B(1.0f));
    B s2 = s * s;
    B q = xsimd::fma(s2, B(1.0f / 9.0f), B(1.0f / 7.0f));
    q = xsimd::fma(s2, q, B(1.0f / 5.0f));
    q = xsimd::fma(s2, q, B(1.0f / 3.0f));
    B s3 = s * s2;
    B logm = xsimd::fma(s3 * q, B(2.0f), s + s);
    return xsimd::fma(e, B(ln2_hi), xsimd::fma(e, B(ln2_lo), logm));
}

template <class A>
inline fbatch<A> log1p(fbatch<A> x) noexcept {
    using B = fbatch<A>;
    // u = 1 + x rounds; log(u) + (x - (u - 1)) / u corrects the rounding to first order.
    // When u == 1 this gives exactly x.
    B u = B(1.0f) + x;
    return log<A>(u) + (x - (u - B(1.0f))) / u;
}

template <class A>
inline fbatch<A> softplus(fbatch<A> x) noexcept {
    using B = fbatch<A>;
    B lo = xsimd::min(B(20.0f), x);  // keeps exp finite in the lanes that take x; NaN stays
    return xsimd::select(x > B(20.0f), x, log1p<A>(exp<A>(lo)));
}

template <class A>
inline fbatch<A> silu(fbatch<A> x) noexcept {
    using B = fbatch<A>;
    return x / (B(1.0f) + exp<A>(-x));
}

}  // namespace vlmamba::vec

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
