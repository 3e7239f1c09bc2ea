// VL-Mamba (Qiao et al. 2024): vision tower -> MultiModal Connector -> Mamba LM. The image features (penultimate
// layer, CLIP without CLS) go through the connector and become a prefix of LM embeddings before the prompt's
// (SPEC §1.1, §1.5, §8.1). The prefix is prefilled, then decoding is recurrent.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "vlmamba/io/chat_template.hpp"
#include "vlmamba/io/preprocess.hpp"
#include "vlmamba/io/tokenizer.hpp"
#include "vlmamba/models/connector.hpp"
#include "vlmamba/models/load_mamba.hpp"
#include "vlmamba/models/vision_encoder.hpp"

namespace vlmamba {

// A VL-Mamba directory's config.json (SPEC §8.2), with the component directories resolved.
struct VlMambaConfig {
    std::filesystem::path dir;         // the VL-Mamba directory
    std::filesystem::path vision_dir;  // vision_tower_path, or empty: tensors under vision_tower. in dir
    std::filesystem::path text_dir;    // language_model_path, or empty: tensors under language_model. in dir
    VisionConfig vision;
    ConnectorConfig connector;
    MambaConfig text;
    PreprocessConfig preprocess;
    std::string chat_template = "llava_v1";  // a ChatTemplate name, or a text containing {question}
};

VlMambaConfig load_vlmamba_config(const std::filesystem::path& dir);

// The variant a config describes, e.g. "siglip/vss_l2/bsm" or "clip/mlp".
inline std::string variant_name(const VlMambaConfig& c) {
    return std::string(c.vision.family == VisionFamily::Clip ? "clip" : "siglip") + "/" +
           connector_type_name(c.connector.type) + (c.connector.type == ConnectorType::Mlp ? "" : "/" + c.connector.scan);
}

// A vision tower of one family, as a type: the model variant's structure says CLIP or SigLIP.
template <VisionFamily F>
struct FamilyVisionEncoder {
    static constexpr VisionFamily family = F;
    VisionEncoder encoder;
    Tensor features(const Tensor& pixels) const { return encoder.features(pixels); }  // (L_v, C_v)
};
using ClipVisionEncoder = FamilyVisionEncoder<VisionFamily::Clip>;
using SiglipVisionEncoder = FamilyVisionEncoder<VisionFamily::Siglip>;

template <class Encoder, class Connector, class Lm = MambaLm>
struct VlMamba {
    VlMambaConfig cfg;
    Encoder vision_tower;
    Connector mm_projector;
    Lm language_model;
    std::optional<Tokenizer> tokenizer;

    // Loads a VL-Mamba directory; every missing tensor or wrong shape is reported in one error per file.
    static VlMamba load(const std::filesystem::path& dir);
    static VlMamba load(const VlMambaConfig& cfg);

    // pixels (1, 3, S, S) -> the connector's image prefix (L_v, d).
    Tensor image_prefix(const Tensor& pixels) const;
    // [prefix_0; prefix_1; ...; embed(ids)] -> (L_total, d).
    Tensor input_embeddings(const std::vector<Tensor>& prefixes, std::span<const std::int32_t> ids) const;
    // Logits at the text positions only (L_text, V), after the image prefixes (the `logits --pixels` contract).
    Tensor text_logits(const std::vector<Tensor>& prefixes, std::span<const std::int32_t> ids) const;
};

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline VlMambaConfig load_vlmamba_config(const std::filesystem::path& dir) {
    constexpr const char* op = "vlmamba_config";
    const std::filesystem::path file = dir / "config.json";
    const std::string f = file.string();
    const nlohmann::json j = read_json_file(file, op);
    const std::string mt = json_get<std::string>(j, "model_type", "", f, op);
    VLM_CHECK(mt == "vlmamba", op, f, ": expected model_type \"vlmamba\", got \"", mt, "\"");
    VlMambaConfig c;
    c.dir = dir;
    if (j.contains("vision_tower_path")) {
        c.vision_dir = dir / json_require<std::string>(j, "vision_tower_path", f, op);
        c.vision = load_vision_config(c.vision_dir / "config.json");
    } else {
        if (!j.contains("vision_config")) fail(op, f, ": expected \"vision_config\" or \"vision_tower_path\", got neither");
        c.vision = parse_vision_config(j, f);
    }
    if (j.contains("language_model_path")) {
        c.text_dir = dir / json_require<std::string>(j, "language_model_path", f, op);
        c.text = load_mamba_config(c.text_dir / "config.json");
    } else {
        if (!j.contains("text_config") || !j["text_config"].is_object())
            fail(op, f, ": expected \"text_config\" (an object) or \"language_model_path\", got neither");
        c.text = parse_mamba_config(j["text_config"], f + " (text_config)");
    }
    c.vision.feature_layer = json_get<int>(j, "feature_layer", c.vision.feature_layer, f, op);
    check_feature_layer(c.vision, f, op);
    if (!j.contains("connector_config")) fail(op, f, ": expected \"connector_config\", got none");
    c.connector = connector_config_from_json(j["connector_config"], f + ": connector_config");
    c.connector.vision_width = c.vision.hidden_size;
    c.connector.lm_width = c.text.d_model;
    // Image preprocessing: the preset of the tower's family unless named, and the config's resize policy (pad).
    const nlohmann::json ip = j.value("image_preprocess", nlohmann::json::object());
    const std::string fallback = c.vision.family == VisionFamily::Clip ? "clip-vit-l-336" : "siglip-so400m-384";
    c.preprocess = preset(json_get<std::string>(ip, "preset", fallback, f, op));
    c.preprocess.size = c.vision.image_size;
    c.preprocess.policy = parse_resize_policy(json_get<std::string>(ip, "resize", "pad", f, op));
    // "chat_template", or the first round's "prompt_template" (SPEC §8.2)
    c.chat_template = json_get<std::string>(j, "chat_template",
                                            json_get<std::string>(j, "prompt_template", "llava_v1", f, op), f, op);
    try {
        ChatTemplate::named(c.chat_template);
    } catch (const Error& e) {
        fail(op, f, ": chat_template: ", e.what());
    }
    return c;
}

template <class Encoder, class Connector, class Lm>
VlMamba<Encoder, Connector, Lm> VlMamba<Encoder, Connector, Lm>::load(const std::filesystem::path& dir) {
    return load(load_vlmamba_config(dir));
}

template <class Encoder, class Connector, class Lm>
VlMamba<Encoder, Connector, Lm> VlMamba<Encoder, Connector, Lm>::load(const VlMambaConfig& c) {
    VLM_CHECK(c.vision.family == Encoder::family, "vlmamba", (c.dir / "config.json").string(),
              ": the compiled variant expects a ", vision_family_name(Encoder::family), " tower, got ",
              vision_family_name(c.vision.family));
    VlMamba m;
    m.cfg = c;
    const WeightStore store = WeightStore::open(c.dir);
    WeightLoader root(store);
    // The vision tower: a component directory, or the "vision_tower." tensors of this file.
    if (!c.vision_dir.empty()) {
        m.vision_tower.encoder = load_vision_tower(c.vision_dir);
        m.vision_tower.encoder.cfg.feature_layer = c.vision.feature_layer;
    } else {
        WeightLoader vt = root.scope("vision_tower.");
        m.vision_tower.encoder = load_vision_tower(c.vision, vt);
    }
    m.mm_projector = Connector::load(c.connector, "mm_projector.", param_source(root));
    std::filesystem::path tok_dir = c.dir;
    if (!c.text_dir.empty()) {
        m.language_model = load_mamba_lm(c.text_dir);
        if (!std::filesystem::exists(tok_dir / "tokenizer.json")) tok_dir = c.text_dir;
    } else {
        WeightLoader lm = root.scope("language_model.");
        m.language_model = Lm::load(c.text, param_source(lm));
    }
    root.finish();
    if (std::filesystem::exists(tok_dir / "tokenizer.json")) m.tokenizer = Tokenizer::from_file(tok_dir / "tokenizer.json");
    return m;
}

template <class Encoder, class Connector, class Lm>
Tensor VlMamba<Encoder, Connector, Lm>::image_prefix(const Tensor& pixels) const {
    const Tensor features = vision_tower.features(pixels);  // (L_v, C_v)
    const int g = cfg.vision.grid();
    return mm_projector.forward(features, g, g);             // (L_v, d)
}

template <class Encoder, class Connector, class Lm>
Tensor VlMamba<Encoder, Connector, Lm>::input_embeddings(const std::vector<Tensor>& prefixes,
                                                         std::span<const std::int32_t> ids) const {
    const std::int64_t D = cfg.text.d_model;
    std::int64_t L = std::int64_t(ids.size());
    for (const Tensor& p : prefixes) {
        VLM_CHECK(p.ndim() == 2 && p.size(1) == D, "vlmamba", "image prefix has shape ", shape_str(p.shape()),
                  ", expected (L_v, ", D, ")");
        L += p.size(0);
    }
    VLM_CHECK(L > 0, "vlmamba", "expected at least one image or text token, got none");
    Tensor out = Tensor::empty({L, D});  // (L_total, D)
    std::int64_t row = 0;
    for (const Tensor& p : prefixes) {
        Tensor dst = out.slice(0, row, row + p.size(0));
        copy_into(dst, p);
        row += p.size(0);
    }
    if (!ids.empty()) {
        Tensor dst = out.slice(0, row, L);
        copy_into(dst, language_model.embed(ids));
    }
    return out;
}

template <class Encoder, class Connector, class Lm>
Tensor VlMamba<Encoder, Connector, Lm>::text_logits(const std::vector<Tensor>& prefixes,
                                                    std::span<const std::int32_t> ids) const {
    VLM_CHECK(!ids.empty(), "vlmamba", "expected a non-empty text prompt, got 0 tokens");
    const Tensor h = language_model.forward_hidden(input_embeddings(prefixes, ids));  // (L_total, D)
    const std::int64_t L = h.size(0), T = std::int64_t(ids.size());
    return language_model.logits(h.slice(0, L - T, L));  // (L_text, V)
}

}  // namespace vlmamba
