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
#include "vlmamba/models/timm_vit.hpp"
#include "vlmamba/models/vision_encoder.hpp"

namespace vlmamba {

// A model's configuration with its files resolved: a VL-Mamba directory's config.json (SPEC §8.2), or a Cobra
// directory as shipped (cobra.hpp: load_cobra_config). The zoo's factory picks the compiled variant from it.
struct VlMambaConfig {
    std::string format = "vlmamba";    // "vlmamba" or "cobra"
    std::filesystem::path dir;         // the model directory
    std::filesystem::path vision_dir;  // vision_tower_path, or empty: tensors under vision_tower. in `weights`
    std::filesystem::path text_dir;    // language_model_path, or empty: tensors under lm_prefix in `weights`
    std::filesystem::path weights;     // the file or directory holding the connector and LM tensors
    std::string connector_prefix = "mm_projector.", lm_prefix = "language_model.";
    VisionConfig vision;               // the CLIP / SigLIP tower (format vlmamba)
    std::vector<TimmVitConfig> towers; // the timm towers fused on channels, in order (format cobra)
    ConnectorConfig connector;
    MambaConfig text;
    std::vector<PreprocessConfig> preprocess;  // one per tower: pixels stack them on channels, 3 each
    std::filesystem::path tokenizer;           // tokenizer.json, or empty
    std::string chat_template = "llava_v1";    // a ChatTemplate name, or a text containing {question}

    int grid() const { return towers.empty() ? vision.grid() : towers.front().grid(); }  // patches per side
    int image_size() const { return preprocess.front().size; }
    int pixel_channels() const { return 3 * int(preprocess.size()); }
};

VlMambaConfig load_vlmamba_config(const std::filesystem::path& dir);

// The variant a config describes, e.g. "siglip/vss_l2/bsm", "clip/mlp" or (timm towers) "dino+siglip/fused_mlp".
inline std::string variant_name(const VlMambaConfig& c) {
    std::string vision;
    for (const TimmVitConfig& t : c.towers) vision += (vision.empty() ? "" : "+") + t.name;
    if (c.towers.empty()) vision = c.vision.family == VisionFamily::Clip ? "clip" : "siglip";
    const bool vss = c.connector.type == ConnectorType::VssMlp || c.connector.type == ConnectorType::VssL2;
    return vision + "/" + connector_type_name(c.connector.type) + (vss ? "/" + c.connector.scan : "");
}

// A vision tower of one family, as a type: the model variant's structure says CLIP or SigLIP.
template <VisionFamily F>
struct FamilyVisionEncoder {
    static constexpr VisionFamily family = F;
    VisionEncoder encoder;
    // The tower of a VL-Mamba config: its component directory, or the "vision_tower." tensors of `root`.
    static FamilyVisionEncoder load(const VlMambaConfig& c, WeightLoader& root);
    FamilyVisionEncoder to(Device d) const { return {encoder.to(d)}; }
    Tensor features(const Tensor& pixels) const { return encoder.features(pixels); }              // (L_v, C_v)
    Tensor features_batch(const Tensor& pixels) const { return encoder.features_batch(pixels); }  // (B, L_v, C_v)
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
    // Loads what a config names: the encoder (Encoder::load), then the connector and the LM from cfg.weights.
    static VlMamba load(const VlMambaConfig& cfg);

    // A copy on `d`: the tower and the connector in f32, the LM's large matrices in `weights` (MambaLm::to).
    VlMamba to(Device d, DType weights = DType::F32) const
        requires requires(const Encoder& e, const Connector& c, Device dev) { e.to(dev); c.to(dev); }
    {
        return {cfg, vision_tower.to(d), mm_projector.to(d), language_model.to(d, weights), tokenizer};
    }
    // pixels (1, 3·T, S, S) (T = 1 tower but for Cobra) on the host -> the connector's image prefix (L_v, d) on the
    // model's device.
    Tensor image_prefix(const Tensor& pixels) const;
    // [prefix_0; prefix_1; ...; embed(ids)] -> (L_total, d).
    Tensor input_embeddings(const std::vector<Tensor>& prefixes, std::span<const std::int32_t> ids) const;
    // Logits at the text positions only (L_text, V) on the host, after the image prefixes (`logits --pixels`).
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
    c.weights = dir;
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
    PreprocessConfig pc = preset(json_get<std::string>(ip, "preset", fallback, f, op));
    pc.size = c.vision.image_size;
    pc.policy = parse_resize_policy(json_get<std::string>(ip, "resize", "pad", f, op));
    c.preprocess = {pc};
    // tokenizer.json: the directory's, else the language model component's
    for (const std::filesystem::path& d : {c.dir, c.text_dir})
        if (c.tokenizer.empty() && !d.empty() && std::filesystem::exists(d / "tokenizer.json"))
            c.tokenizer = d / "tokenizer.json";
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

template <VisionFamily F>
FamilyVisionEncoder<F> FamilyVisionEncoder<F>::load(const VlMambaConfig& c, WeightLoader& root) {
    VLM_CHECK(c.towers.empty() && c.vision.family == F, "vlmamba", (c.dir / "config.json").string(),
              ": the compiled variant expects a ", vision_family_name(F), " tower, got ",
              c.towers.empty() ? vision_family_name(c.vision.family) : "timm towers");
    FamilyVisionEncoder e;
    if (!c.vision_dir.empty()) {
        e.encoder = load_vision_tower(c.vision_dir);
        e.encoder.cfg.feature_layer = c.vision.feature_layer;
    } else {
        WeightLoader vt = root.scope("vision_tower.");
        e.encoder = load_vision_tower(c.vision, vt);
    }
    return e;
}

template <class Encoder, class Connector, class Lm>
VlMamba<Encoder, Connector, Lm> VlMamba<Encoder, Connector, Lm>::load(const VlMambaConfig& c) {
    VlMamba m;
    m.cfg = c;
    const WeightStore store = WeightStore::open(c.weights);
    WeightLoader root(store);
    m.vision_tower = Encoder::load(c, root);
    m.mm_projector = Connector::load(c.connector, c.connector_prefix, param_source(root));
    if (!c.text_dir.empty()) {
        m.language_model = load_mamba_lm(c.text_dir);
    } else {
        WeightLoader lm = root.scope(c.lm_prefix);
        m.language_model = Lm::load(c.text, param_source(lm));
    }
    root.finish();
    if (!c.tokenizer.empty()) m.tokenizer = Tokenizer::from_file(c.tokenizer);
    return m;
}

template <class Encoder, class Connector, class Lm>
Tensor VlMamba<Encoder, Connector, Lm>::image_prefix(const Tensor& pixels) const {
    const Tensor features = vision_tower.features(pixels);  // (L_v, C_v)
    const int g = cfg.grid();
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
    Tensor out = Tensor::empty({L, D}, DType::F32, language_model.device());  // (L_total, D)
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
    return language_model.logits(h.slice(0, L - T, L)).to(Device::Cpu);  // (L_text, V)
}

}  // namespace vlmamba
