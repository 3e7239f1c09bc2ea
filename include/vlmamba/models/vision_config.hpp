// VisionConfig from an HF config.json: a vision tower's own config (model_type clip_vision_model or
// siglip_vision_model), a full CLIP / SigLIP config or a VL-Mamba config (SPEC §8.2), both of which nest it under
// "vision_config". Absent keys take transformers' CLIPVisionConfig / SiglipVisionConfig defaults.
#pragma once
#include <filesystem>
#include <string>

#include "vlmamba/io/json_config.hpp"
#include "vlmamba/layers/vit_block.hpp"

namespace vlmamba {

enum class VisionFamily { Clip, Siglip };

// The largest image_size a vision config may name (load_image's kMaxImageSide): the patch grid stays below 2^28.
inline constexpr int kMaxVisionImageSize = 16384;

struct VisionConfig {
    VisionFamily family = VisionFamily::Siglip;
    int hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0, num_attention_heads = 0;
    int num_channels = 3, image_size = 0, patch_size = 0;
    VitAct act = VitAct::GeluTanh;
    std::string hidden_act;
    float layer_norm_eps = 1e-6f;
    // hidden_states index used as the VLM's image features (SPEC §1.4: -2, the penultimate layer).
    int feature_layer = -2;

    bool class_token() const { return family == VisionFamily::Clip; }  // CLIP: CLS + pre_layrnorm
    int grid() const { return image_size / patch_size; }
    int num_positions() const { return grid() * grid() + (class_token() ? 1 : 0); }
    // feature_layer as an index into hidden_states [0, num_hidden_layers].
    int feature_index() const { return feature_layer < 0 ? num_hidden_layers + 1 + feature_layer : feature_layer; }
};

const char* vision_family_name(VisionFamily f);  // "clip_vision_model" | "siglip_vision_model"

// Parses a config object; `file` names it in errors. An unknown model_type is an error naming the supported ones.
VisionConfig parse_vision_config(const nlohmann::json& j, const std::string& file);
VisionConfig load_vision_config(const std::filesystem::path& config_json);
// The one check of feature_layer against the tower's depth (a VL-Mamba config may override the tower's value).
void check_feature_layer(const VisionConfig& c, const std::string& file, const char* op);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline const char* vision_family_name(VisionFamily f) {
    return f == VisionFamily::Clip ? "clip_vision_model" : "siglip_vision_model";
}

inline VisionConfig parse_vision_config(const nlohmann::json& j, const std::string& file) {
    constexpr const char* op = "vision_config";
    constexpr const char* supported =
        "expected clip_vision_model, siglip_vision_model, clip, siglip or vlmamba (with a vision_config)";
    const std::string outer = json_get<std::string>(j, "model_type", "", file, op);
    const nlohmann::json* v = &j;
    std::string type = outer;
    if (outer == "clip" || outer == "siglip" || outer == "vlmamba") {
        auto it = j.find("vision_config");
        if (it == j.end() || !it->is_object())
            fail(op, file, ": model_type '", outer, "' needs a 'vision_config' object, got ",
                 it == j.end() ? std::string("none") : detail::json_brief(*it));
        v = &*it;
        const std::string inner = outer == "vlmamba" ? "" : outer + "_vision_model";
        type = json_get<std::string>(*v, "model_type", inner, file + " (vision_config)", op);
    }
    const std::string where = v == &j ? file : file + " (vision_config)";
    VisionConfig c;
    if (type == "clip_vision_model") {
        c.family = VisionFamily::Clip;
    } else if (type == "siglip_vision_model") {
        c.family = VisionFamily::Siglip;
    } else {
        fail(op, where, ": model_type '", type, "' is not a supported vision tower: ", supported);
    }
    const bool clip = c.family == VisionFamily::Clip;
    // transformers configuration_clip.py: CLIPVisionConfig / configuration_siglip.py: SiglipVisionConfig defaults
    c.hidden_size = json_get<int>(*v, "hidden_size", 768, where, op);
    c.intermediate_size = json_get<int>(*v, "intermediate_size", 3072, where, op);
    c.num_hidden_layers = json_get<int>(*v, "num_hidden_layers", 12, where, op);
    c.num_attention_heads = json_get<int>(*v, "num_attention_heads", 12, where, op);
    c.num_channels = json_get<int>(*v, "num_channels", 3, where, op);
    c.image_size = json_get<int>(*v, "image_size", 224, where, op);
    c.patch_size = json_get<int>(*v, "patch_size", clip ? 32 : 16, where, op);
    c.hidden_act = json_get<std::string>(*v, "hidden_act", clip ? "quick_gelu" : "gelu_pytorch_tanh", where, op);
    c.act = parse_vit_act(c.hidden_act, where);
    c.layer_norm_eps = json_get<float>(*v, "layer_norm_eps", clip ? 1e-5f : 1e-6f, where, op);
    c.feature_layer = json_get<int>(j, "feature_layer", -2, file, op);
    VLM_CHECK(c.hidden_size > 0 && c.intermediate_size > 0 && c.num_hidden_layers > 0 && c.num_channels > 0, op,
              where, ": expected positive hidden_size, intermediate_size, num_hidden_layers, num_channels, got ",
              c.hidden_size, ", ", c.intermediate_size, ", ", c.num_hidden_layers, ", ", c.num_channels);
    VLM_CHECK(c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads == 0, op, where,
              ": expected num_attention_heads dividing hidden_size ", c.hidden_size, ", got ", c.num_attention_heads);
    VLM_CHECK(c.patch_size > 0 && c.image_size >= c.patch_size, op, where,
              ": expected 0 < patch_size <= image_size, got patch_size ", c.patch_size, " and image_size ",
              c.image_size);
    VLM_CHECK(c.hidden_size <= kMaxConfigWidth && c.intermediate_size <= kMaxConfigWidth &&
                  c.num_hidden_layers <= kMaxConfigLayers && c.num_channels <= 64 &&
                  c.image_size <= kMaxVisionImageSize,
              op, where, ": expected hidden_size, intermediate_size <= ", kMaxConfigWidth, ", num_hidden_layers <= ",
              kMaxConfigLayers, ", num_channels <= 64, image_size <= ", kMaxVisionImageSize, ", got ", c.hidden_size,
              ", ", c.intermediate_size, ", ", c.num_hidden_layers, ", ", c.num_channels, ", ", c.image_size);
    check_feature_layer(c, file, op);
    return c;
}

inline void check_feature_layer(const VisionConfig& c, const std::string& file, const char* op) {
    const int fi = c.feature_index();
    VLM_CHECK(fi >= 0 && fi <= c.num_hidden_layers, op, file, ": feature_layer ", c.feature_layer,
              " is outside hidden_states: expected -", c.num_hidden_layers + 1, " <= feature_layer <= ",
              c.num_hidden_layers);
}

inline VisionConfig load_vision_config(const std::filesystem::path& config_json) {
    return parse_vision_config(read_json_file(config_json, "vision_config"), config_json.string());
}

}  // namespace vlmamba
