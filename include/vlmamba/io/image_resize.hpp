// Image geometry: PIL-exact resampling, HF's center crop, LLaVA's expand-to-square.
//
// resize() reproduces Pillow's separable resampler for 8-bit images (libImaging/Resample.c, ImagingResample)
// bit for bit: filter weights in double, support widened by the scale when downsampling, weights normalised to
// sum 1 and then to signed fixed point with 22 fractional bits, a horizontal pass into an 8-bit intermediate
// (rounded and clipped) over only the rows the vertical pass needs, then the vertical pass.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string_view>
#include <vector>

#include "vlmamba/core/error.hpp"
#include "vlmamba/core/parallel.hpp"
#include "vlmamba/io/image.hpp"

namespace vlmamba {

// ---------------------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------------------

// PIL's filters (Image.Resampling.BOX, BILINEAR, BICUBIC, LANCZOS). Bicubic is Keys' kernel with a = -0.5.
enum class Resample { Box, Bilinear, Bicubic, Lanczos };

std::string_view resample_name(Resample r);

// PIL's Image.resize((out_w, out_h), resample) on an RGB image.
Image resize(const Image& img, int out_w, int out_h, Resample r = Resample::Bicubic);

// transformers' center_crop: offsets floor((H - h) / 2), floor((W - w) / 2); where the window leaves the image
// (image smaller than the crop) the output is zero (black), as HF pads.
Image center_crop(const Image& img, int w, int h);

// LLaVA's expand2square: a square of side max(W, H) filled with `background`, the image pasted centred at
// ((side - W) / 2, (side - H) / 2), rounded down. A square image is returned unchanged.
Image expand_to_square(const Image& img, std::array<std::uint8_t, 3> background);

// ---------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------

namespace detail {

inline constexpr int kResampleFracBits = 22;  // PIL's PRECISION_BITS = 32 - 8 - 2

// A product stored through a volatile, so that no compiler fuses it with a following add into an FMA (GCC does
// in GNU mode with -march=native): PIL rounds each operation, and one ulp can move a fixed-point weight.
inline double rounded_mul(double a, double b) {
    volatile double p = a * b;
    return p;
}

inline double filter_support(Resample r) {
    switch (r) {
        case Resample::Box: return 0.5;
        case Resample::Bilinear: return 1.0;
        case Resample::Bicubic: return 2.0;
        case Resample::Lanczos: return 3.0;
    }
    return 0.0;
}

inline double sinc(double x) {
    if (x == 0.0) return 1.0;
    const double px = rounded_mul(x, std::numbers::pi);
    return std::sin(px) / px;
}

// Weight of a tap at distance x (in filter units), evaluated in the same operation order as PIL.
inline double filter_weight(Resample r, double x) {
    switch (r) {
        case Resample::Box: return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
        case Resample::Bilinear:
            x = std::fabs(x);
            return x < 1.0 ? 1.0 - x : 0.0;
        case Resample::Bicubic: {
            constexpr double a = -0.5;
            x = std::fabs(x);
            if (x < 1.0) {  // ((a + 2) x - (a + 3)) x^2 + 1
                const double t = rounded_mul(a + 2.0, x) - (a + 3.0);
                return rounded_mul(rounded_mul(t, x), x) + 1.0;
            }
            if (x < 2.0) {  // a (((x - 5) x + 8) x - 4)
                const double t = rounded_mul(x - 5.0, x) + 8.0;
                return rounded_mul(rounded_mul(t, x) - 4.0, a);
            }
            return 0.0;
        }
        case Resample::Lanczos:
            return (-3.0 <= x && x < 3.0) ? rounded_mul(sinc(x), sinc(x / 3.0)) : 0.0;
    }
    return 0.0;
}

// Fixed-point taps of a 1-D resampling from in_size to out_size samples: output i reads inputs
// start[i] .. start[i] + count[i] - 1 with weights k[i * ksize + t].
struct ResampleTaps {
    int ksize = 0;
    std::vector<int> start, count;  // (out,)
    std::vector<std::int32_t> k;    // (out, ksize)
};

inline ResampleTaps resample_taps(int in_size, int out_size, Resample r) {
    const double scale = static_cast<double>(in_size) / out_size;
    const double filterscale = std::max(scale, 1.0);  // widen the support when downsampling (antialias)
    const double support = filter_support(r) * filterscale;
    const double inv_filterscale = 1.0 / filterscale;

    ResampleTaps taps;
    taps.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    taps.start.resize(static_cast<std::size_t>(out_size));
    taps.count.resize(static_cast<std::size_t>(out_size));
    taps.k.assign(static_cast<std::size_t>(out_size) * static_cast<std::size_t>(taps.ksize), 0);
    std::vector<double> w(static_cast<std::size_t>(taps.ksize));

    for (int i = 0; i < out_size; ++i) {
        const double center = rounded_mul(i + 0.5, scale);  // input coordinates, pixel centres at j + 0.5
        const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
        const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
        const int n = hi - lo;
        double sum = 0.0;
        for (int t = 0; t < n; ++t) {
            w[static_cast<std::size_t>(t)] = filter_weight(r, (t + lo - center + 0.5) * inv_filterscale);
            sum += w[static_cast<std::size_t>(t)];
        }
        std::int32_t* k = &taps.k[static_cast<std::size_t>(i) * static_cast<std::size_t>(taps.ksize)];
        for (int t = 0; t < n; ++t) {
            double v = w[static_cast<std::size_t>(t)];
            if (sum != 0.0) v /= sum;
            const double fixed = v * (1 << kResampleFracBits);  // exact: a power of two
            k[t] = static_cast<std::int32_t>(v < 0 ? -0.5 + fixed : 0.5 + fixed);
        }
        taps.start[static_cast<std::size_t>(i)] = lo;
        taps.count[static_cast<std::size_t>(i)] = n;
    }
    return taps;
}

// Fixed-point accumulator (rounding bias included) back to 8 bits, clipped.
inline std::uint8_t clip8(std::int32_t acc) {
    return static_cast<std::uint8_t>(std::clamp(acc >> kResampleFracBits, 0, 255));
}

// Horizontal pass over source rows [row0, row0 + rows): (rows, out_w, 3).
inline std::vector<std::uint8_t> resample_rows(const Image& img, int row0, int rows, const ResampleTaps& taps) {
    const int out_w = static_cast<int>(taps.start.size());
    std::vector<std::uint8_t> out(static_cast<std::size_t>(rows) * static_cast<std::size_t>(out_w) * 3);
    parallel_for(rows, [&](std::int64_t y) {
        const std::uint8_t* src = &img.rgb[static_cast<std::size_t>(row0 + y) * static_cast<std::size_t>(img.width) * 3];
        std::uint8_t* dst = &out[static_cast<std::size_t>(y) * static_cast<std::size_t>(out_w) * 3];
        for (int x = 0; x < out_w; ++x) {
            const std::int32_t* k = &taps.k[static_cast<std::size_t>(x) * static_cast<std::size_t>(taps.ksize)];
            const std::uint8_t* s = src + static_cast<std::size_t>(taps.start[static_cast<std::size_t>(x)]) * 3;
            std::int32_t a0 = 1 << (kResampleFracBits - 1), a1 = a0, a2 = a0;
            for (int t = 0, n = taps.count[static_cast<std::size_t>(x)]; t < n; ++t) {
                a0 += s[3 * t + 0] * k[t];
                a1 += s[3 * t + 1] * k[t];
                a2 += s[3 * t + 2] * k[t];
            }
            dst[3 * x + 0] = clip8(a0);
            dst[3 * x + 1] = clip8(a1);
            dst[3 * x + 2] = clip8(a2);
        }
    }, std::int64_t{out_w} * taps.ksize);
    return out;
}

// Vertical pass: src is (rows, width, 3) whose row 0 is input row `row0`; returns (out_h, width, 3).
inline std::vector<std::uint8_t> resample_cols(const std::uint8_t* src, int width, int row0,
                                               const ResampleTaps& taps) {
    const int out_h = static_cast<int>(taps.start.size());
    const std::size_t row_len = static_cast<std::size_t>(width) * 3;
    std::vector<std::uint8_t> out(static_cast<std::size_t>(out_h) * row_len);
    parallel_for(out_h, [&](std::int64_t y) {
        const std::int32_t* k = &taps.k[static_cast<std::size_t>(y) * static_cast<std::size_t>(taps.ksize)];
        const std::uint8_t* s = src + static_cast<std::size_t>(taps.start[static_cast<std::size_t>(y)] - row0) * row_len;
        const int n = taps.count[static_cast<std::size_t>(y)];
        std::vector<std::int32_t> acc(row_len, 1 << (kResampleFracBits - 1));  // (width * 3,)
        for (int t = 0; t < n; ++t) {  // row by row, so the inner loop is contiguous
            const std::uint8_t* row = s + static_cast<std::size_t>(t) * row_len;
            const std::int32_t kt = k[t];
            for (std::size_t i = 0; i < row_len; ++i) acc[i] += row[i] * kt;
        }
        std::uint8_t* dst = &out[static_cast<std::size_t>(y) * row_len];
        for (std::size_t i = 0; i < row_len; ++i) dst[i] = clip8(acc[i]);
    }, std::int64_t{width} * taps.ksize);
    return out;
}

inline void check_image(const Image& img, const char* op) {
    VLM_CHECK(img.width > 0 && img.height > 0, op, "expected a non-empty image, got ", img.width, "x", img.height);
    VLM_CHECK(img.rgb.size() == static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height) * 3, op,
              "expected ", img.width, "x", img.height, "x3 = ",
              static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height) * 3, " bytes, got ",
              img.rgb.size());
}

inline int floor_half(int n) { return n >= 0 ? n / 2 : -((1 - n) / 2); }  // Python's n // 2

}  // namespace detail

inline std::string_view resample_name(Resample r) {
    switch (r) {
        case Resample::Box: return "box";
        case Resample::Bilinear: return "bilinear";
        case Resample::Bicubic: return "bicubic";
        case Resample::Lanczos: return "lanczos";
    }
    return "?";
}

inline Image resize(const Image& img, int out_w, int out_h, Resample r) {
    detail::check_image(img, "resize");
    VLM_CHECK(out_w > 0 && out_h > 0 && std::int64_t{out_w} * out_h <= kMaxImagePixels, "resize",
              "expected a non-empty output of at most 2^28 pixels, got ", out_w, "x", out_h);
    // ImagingResampleInner: vertical taps first, to know which source rows the horizontal pass must produce.
    const bool need_h = out_w != img.width;
    const bool need_v = out_h != img.height;
    const detail::ResampleTaps vtaps = detail::resample_taps(img.height, out_h, r);
    const int row0 = vtaps.start.front();
    const int row1 = vtaps.start.back() + vtaps.count.back();

    Image out;
    out.width = out_w;
    out.height = out_h;
    if (need_h) {
        std::vector<std::uint8_t> tmp =
            detail::resample_rows(img, row0, row1 - row0, detail::resample_taps(img.width, out_w, r));  // (rows, out_w, 3)
        out.rgb = need_v ? detail::resample_cols(tmp.data(), out_w, row0, vtaps) : std::move(tmp);
    } else if (need_v) {
        out.rgb = detail::resample_cols(img.rgb.data(), img.width, 0, vtaps);  // (out_h, W, 3)
    } else {
        out.rgb = img.rgb;
    }
    return out;
}

inline Image center_crop(const Image& img, int w, int h) {
    detail::check_image(img, "center_crop");
    VLM_CHECK(w > 0 && h > 0, "center_crop", "expected a positive crop size, got ", w, "x", h);
    const int top = detail::floor_half(img.height - h);
    const int left = detail::floor_half(img.width - w);
    Image out;
    out.width = w;
    out.height = h;
    out.rgb.assign(static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * 3, 0);  // (h, w, 3)
    // Columns [x0, x1) of the output see the image; the rest stays zero.
    const int x0 = std::max(0, -left), x1 = std::min(w, img.width - left);
    for (int y = 0; y < h; ++y) {
        const int sy = y + top;
        if (sy < 0 || sy >= img.height || x0 >= x1) continue;
        const auto* src = &img.rgb[(static_cast<std::size_t>(sy) * static_cast<std::size_t>(img.width) +
                                    static_cast<std::size_t>(x0 + left)) * 3];
        std::copy(src, src + static_cast<std::size_t>(x1 - x0) * 3,
                  &out.rgb[(static_cast<std::size_t>(y) * static_cast<std::size_t>(w) + static_cast<std::size_t>(x0)) * 3]);
    }
    return out;
}

inline Image expand_to_square(const Image& img, std::array<std::uint8_t, 3> background) {
    detail::check_image(img, "expand_to_square");
    if (img.width == img.height) return img;
    const int side = std::max(img.width, img.height);
    const int left = (side - img.width) / 2, top = (side - img.height) / 2;
    Image out;
    out.width = side;
    out.height = side;
    const std::size_t out_row = static_cast<std::size_t>(side) * 3, row_len = static_cast<std::size_t>(img.width) * 3;
    std::vector<std::uint8_t> bg_row(out_row);  // (side, 3)
    for (std::size_t i = 0; i < out_row; i += 3) std::copy(background.begin(), background.end(), &bg_row[i]);
    out.rgb.resize(out_row * static_cast<std::size_t>(side));  // (side, side, 3)
    for (int y = 0; y < side; ++y) {
        std::uint8_t* dst = &out.rgb[static_cast<std::size_t>(y) * out_row];
        std::copy(bg_row.begin(), bg_row.end(), dst);
        if (y >= top && y < top + img.height)
            std::copy_n(&img.rgb[static_cast<std::size_t>(y - top) * row_len], row_len,
                        dst + static_cast<std::size_t>(left) * 3);
    }
    return out;
}

}  // namespace vlmamba
