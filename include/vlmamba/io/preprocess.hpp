// Image preprocessing to a vision tower's pixel_values, matching transformers' PIL-backed processors
// (CLIPImageProcessorPil, SiglipImageProcessorPil) and LLaVA's pad mode. SPEC §1.3, §8.1, §8.3.
//
// Order, as in PilBackend._preprocess: [pad to square] -> resize (PIL bicubic) -> [center crop] -> rescale ->
// normalise. Rescale is image_transforms.rescale: uint8 * factor in float64, then cast to float32. Normalise is
// image_transforms.normalize: (x - mean) / std in float32, with mean and std cast to float32.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vlmamba/core/error.hpp"
#include "vlmamba/io/image.hpp"
#include "vlmamba/io/image_resize.hpp"

namespace vlmamba {

// ---------------------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------------------

// Pad: LLaVA's expand2square (background int(255 * mean)) then a resize to the square size.
// ResizeNaive: straight resize to size x size (SigLIP's processor).
// ResizeCrop: shortest edge to size, then a size x size center crop (CLIP's processor).
enum class ResizePolicy { Pad, ResizeNaive, ResizeCrop };

struct PreprocessConfig {
    int size = 0;  // target square side
    ResizePolicy policy = ResizePolicy::Pad;
    std::array<float, 3> mean{}, std{};
    Resample resample = Resample::Bicubic;
    double rescale = 1.0 / 255.0;  // double, as HF multiplies in float64 before casting to float32
};

// "clip-vit-l-336", "clip-vit-l-224", "siglip-so400m-384", each with its HF processor's own policy.
PreprocessConfig preset(std::string_view name);

// "pad" | "resize_naive" | "resize_crop".
ResizePolicy parse_resize_policy(std::string_view name);
std::string_view resize_policy_name(ResizePolicy p);

// LLaVA's pad colour: int(255 * mean) per channel, truncated.
std::array<std::uint8_t, 3> pad_background(const PreprocessConfig& cfg);

// The geometric part: the uint8 image the processor would rescale, size x size.
Image preprocess_geometry(const Image& img, const PreprocessConfig& cfg);

// pixel_values of one image, (3, size, size) CHW float32.
std::vector<float> preprocess(const Image& img, const PreprocessConfig& cfg);

// ---------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------

inline PreprocessConfig preset(std::string_view name) {
    // OPENAI_CLIP_MEAN / OPENAI_CLIP_STD and SigLIP's 0.5 / 0.5 (HF preprocessor_config.json).
    constexpr std::array<float, 3> clip_mean{0.48145466f, 0.4578275f, 0.40821073f};
    constexpr std::array<float, 3> clip_std{0.26862954f, 0.26130258f, 0.27577711f};
    constexpr std::array<float, 3> half{0.5f, 0.5f, 0.5f};
    if (name == "clip-vit-l-336") return {336, ResizePolicy::ResizeCrop, clip_mean, clip_std};
    if (name == "clip-vit-l-224") return {224, ResizePolicy::ResizeCrop, clip_mean, clip_std};
    if (name == "siglip-so400m-384") return {384, ResizePolicy::ResizeNaive, half, half};
    fail("preset", "expected one of clip-vit-l-336, clip-vit-l-224, siglip-so400m-384, got '", name, "'");
}

inline ResizePolicy parse_resize_policy(std::string_view name) {
    if (name == "pad") return ResizePolicy::Pad;
    if (name == "resize_naive") return ResizePolicy::ResizeNaive;
    if (name == "resize_crop") return ResizePolicy::ResizeCrop;
    fail("parse_resize_policy", "expected one of pad, resize_naive, resize_crop, got '", name, "'");
}

inline std::string_view resize_policy_name(ResizePolicy p) {
    switch (p) {
        case ResizePolicy::Pad: return "pad";
        case ResizePolicy::ResizeNaive: return "resize_naive";
        case ResizePolicy::ResizeCrop: return "resize_crop";
    }
    return "?";
}

inline std::array<std::uint8_t, 3> pad_background(const PreprocessConfig& cfg) {
    std::array<std::uint8_t, 3> bg{};
    for (int c = 0; c < 3; ++c)  // Python: int(x * 255) on a double
        bg[static_cast<std::size_t>(c)] =
            static_cast<std::uint8_t>(static_cast<int>(static_cast<double>(cfg.mean[static_cast<std::size_t>(c)]) * 255.0));
    return bg;
}

inline Image preprocess_geometry(const Image& img, const PreprocessConfig& cfg) {
    constexpr const char* op = "preprocess";
    VLM_CHECK(cfg.size > 0 && cfg.size <= kMaxImageSide, op, "expected a size in 1..", kMaxImageSide, ", got ",
              cfg.size);
    switch (cfg.policy) {
        case ResizePolicy::Pad: {
            // On a square both HF policies reduce to a plain resize (shortest edge -> size, crop is a no-op).
            const Image square = expand_to_square(img, pad_background(cfg));
            return resize(square, cfg.size, cfg.size, cfg.resample);
        }
        case ResizePolicy::ResizeNaive: return resize(img, cfg.size, cfg.size, cfg.resample);
        case ResizePolicy::ResizeCrop: {
            // get_resize_output_image_size(default_to_square=False): short -> size, long -> int(size * long / short).
            const bool portrait = img.width <= img.height;
            const std::int64_t shorter = portrait ? img.width : img.height;
            const std::int64_t longer = portrait ? img.height : img.width;
            const int new_long = static_cast<int>(static_cast<double>(cfg.size * longer) / static_cast<double>(shorter));
            const int out_w = portrait ? cfg.size : new_long;
            const int out_h = portrait ? new_long : cfg.size;
            return center_crop(resize(img, out_w, out_h, cfg.resample), cfg.size, cfg.size);
        }
    }
    fail(op, "unknown resize policy ", static_cast<int>(cfg.policy));
}

inline std::vector<float> preprocess(const Image& img, const PreprocessConfig& cfg) {
    const Image g = preprocess_geometry(img, cfg);  // (size, size, 3) uint8
    const std::size_t plane = static_cast<std::size_t>(g.width) * static_cast<std::size_t>(g.height);
    std::vector<float> out(3 * plane);  // (3, size, size)
    // rescale: float32(u8 * factor in float64); the 256 possible values are tabulated per channel.
    std::array<float, 256> scaled{};
    for (int v = 0; v < 256; ++v) scaled[static_cast<std::size_t>(v)] = static_cast<float>(v * cfg.rescale);
    for (std::size_t c = 0; c < 3; ++c) {
        const float mean = cfg.mean[c], stdev = cfg.std[c];
        std::array<float, 256> lut{};
        for (std::size_t v = 0; v < 256; ++v) lut[v] = (scaled[v] - mean) / stdev;  // float32, as numpy
        float* dst = &out[c * plane];
        for (std::size_t i = 0; i < plane; ++i) dst[i] = lut[g.rgb[3 * i + c]];
    }
    return out;
}

}  // namespace vlmamba
