// Cobra (Zhao et al. 2024, h-zhao1997/cobra; SPEC §10), loaded from its files as shipped:
//   COBRA_DIR/config.json                        {"model": {"vision_backbone_id", "llm_backbone_id", "arch_specifier",
//                                                  "image_resize_strategy", ...}, ...}
//   COBRA_DIR/checkpoints/latest-checkpoint.pt   {"model": {"projector": {...}, "llm_backbone": {...}}}
//   one timm tower directory per backbone of the id ("dino", "siglip"), and the LM's tokenizer.json, named by the
//   caller (CobraPaths: the CLI's --tower NAME=PATH and --tokenizer) or by COBRA_DIR/vlmamba.json:
//     {"towers": {"dino": PATH, "siglip": PATH}, "tokenizer": PATH}     (paths relative to COBRA_DIR)
// Its vision encoder is FusedVisionEncoder: the towers run on the same image, each with its own normalisation, and
// their patch features are concatenated on channels (cobra/models/backbones/vision/dinosiglip_vit.py:
// DinoSigLIPViTBackbone.forward). Pixels stack the towers' pixel_values on channels: (1, 3·T, S, S).
#pragma once
#include <filesystem>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "vlmamba/models/timm_vit.hpp"
#include "vlmamba/models/vl_mamba.hpp"

namespace vlmamba {

// ---------------------------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------------------------

// Where a Cobra directory's other files are; what is empty here comes from COBRA_DIR/vlmamba.json.
struct CobraPaths {
    std::map<std::string, std::filesystem::path> towers;  // "dino", "siglip" -> tower directory
    std::filesystem::path tokenizer;                      // the LM's tokenizer.json
};

// Whether a config.json is Cobra's (a "model" object naming a vision_backbone_id).
bool is_cobra_config(const nlohmann::json& j);
// Reads COBRA_DIR/config.json, the towers' configs and the LM's sizes from the checkpoint's tensor shapes.
VlMambaConfig load_cobra_config(const std::filesystem::path& dir, const CobraPaths& paths = {});

// Timm towers fused on channels (Prismatic's dinosiglip; a single tower for siglip-only Cobra).
struct FusedVisionEncoder {
    std::vector<TimmVit> towers;

    static FusedVisionEncoder load(const VlMambaConfig& c, WeightLoader& root);  // from c.towers' own files
    // pixels (1, 3·T, S, S) or (3·T, S, S): tower t takes channels [3t, 3t + 3) -> (G², Σ C_t).
    Tensor features(const Tensor& pixels) const;
    // pixels (B, 3·T, S, S) -> (B, G², Σ C_t).
    Tensor features_batch(const Tensor& pixels) const;
};

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline bool is_cobra_config(const nlohmann::json& j) {
    const auto m = j.find("model");
    return j.is_object() && m != j.end() && m->is_object() && m->contains("vision_backbone_id");
}

namespace detail {

// Prismatic's registry ids: "<towers>-vit-...[-NNNpx]" -> the towers and the resolution (224 without a suffix).
inline std::vector<std::string> cobra_towers(const std::string& id, int& size, const std::string& file) {
    std::smatch m;
    size = std::regex_search(id, m, std::regex("-(\\d{2,5})px$")) ? std::stoi(m[1].str()) : 224;
    const std::string family = id.substr(0, id.find("-vit"));
    if (family == "dinosiglip") return {"dino", "siglip"};
    if (family == "siglip") return {"siglip"};
    if (family == "dinov2") return {"dino"};
    fail("cobra", file, ": vision_backbone_id '", id, "' is not supported: expected dinosiglip-vit-so-*, ",
         "siglip-vit-so400m-* or dinov2-vit-l-* (timm DINOv2 and SigLIP towers)");
}

// "[no-align+]fused-gelu-mlp" | "[no-align+]gelu-mlp" -> the connector type.
inline ConnectorType cobra_projector(const std::string& arch, const std::string& file) {
    if (arch.ends_with("fused-gelu-mlp")) return ConnectorType::FusedMlp;
    if (arch.ends_with("gelu-mlp")) return ConnectorType::Mlp;
    fail("cobra", file, ": arch_specifier '", arch, "' is not supported: expected *fused-gelu-mlp or *gelu-mlp");
}

}  // namespace detail

inline VlMambaConfig load_cobra_config(const std::filesystem::path& dir, const CobraPaths& paths) {
    constexpr const char* op = "cobra";
    namespace fs = std::filesystem;
    const fs::path file = dir / "config.json";
    const std::string f = file.string();
    const nlohmann::json j = read_json_file(file, op);
    VLM_CHECK(is_cobra_config(j), op, f, ": expected a \"model\" object with \"vision_backbone_id\" (Cobra), got ",
              detail::json_brief(j.value("model", nlohmann::json())));
    const nlohmann::json& mj = j["model"];
    const std::string where = f + " (model)";
    const std::string backbone = json_require<std::string>(mj, "vision_backbone_id", where, op);
    const std::string llm = json_get<std::string>(mj, "llm_backbone_id", "mamba-2.8b-zephyr", where, op);
    const std::string arch = json_get<std::string>(mj, "arch_specifier", "no-align+fused-gelu-mlp", where, op);
    const std::string resize = json_get<std::string>(mj, "image_resize_strategy", "resize-naive", where, op);
    VLM_CHECK(resize == "resize-naive", op, f, ": image_resize_strategy '", resize,
              "' is not supported: expected resize-naive (the released Cobra models)");

    // Paths: the caller's, else vlmamba.json's (relative to the Cobra directory).
    CobraPaths p = paths;
    const fs::path side = dir / "vlmamba.json";
    if (fs::exists(side)) {
        const nlohmann::json sj = read_json_file(side, op);
        const nlohmann::json towers = sj.value("towers", nlohmann::json::object());
        VLM_CHECK(towers.is_object(), op, side.string(), ": \"towers\" is ", detail::json_brief(towers),
                  ", expected an object {name: path}");
        for (const auto& [name, v] : towers.items())
            if (!p.towers.count(name))
                p.towers[name] = dir / json_require<std::string>(towers, name.c_str(), side.string(), op);
        if (p.tokenizer.empty() && sj.contains("tokenizer"))
            p.tokenizer = dir / json_require<std::string>(sj, "tokenizer", side.string(), op);
    }

    VlMambaConfig c;
    c.format = "cobra";
    c.dir = dir;
    c.weights = dir / "checkpoints" / "latest-checkpoint.pt";
    VLM_CHECK(fs::exists(c.weights), op, dir.string(), ": expected Cobra's checkpoint checkpoints/latest-checkpoint.pt,",
              " got none");
    c.connector_prefix = "model.projector.projector.";  // CobraVLM.projector (an nn.Sequential named projector)
    c.lm_prefix = "model.llm_backbone.llm.";            // MambaLLMBackbone.llm (mamba_ssm naming)
    int size = 0;
    for (const std::string& name : detail::cobra_towers(backbone, size, f)) {
        const auto it = p.towers.find(name);
        VLM_CHECK(it != p.towers.end(), op, f, ": vision_backbone_id '", backbone, "' needs the '", name,
                  "' tower: pass --tower ", name, "=DIR or name it in ", side.string());
        c.towers.push_back(load_timm_vit_config(it->second, size, name));
    }
    c.connector.type = detail::cobra_projector(arch, f);
    for (const TimmVitConfig& t : c.towers) {
        VLM_CHECK(t.grid() == c.towers.front().grid(), op, f, ": the towers' grids differ: ", c.towers.front().name,
                  " ", c.towers.front().grid(), " x ", c.towers.front().grid(), ", ", t.name, " ", t.grid(), " x ",
                  t.grid());
        c.connector.vision_width += t.embed_dim;
        // resize-naive: each tower resizes straight to S x S with its interpolation, then its own mean / std
        c.preprocess.push_back({size, ResizePolicy::ResizeNaive, t.mean, t.std, t.resample});
    }
    c.text = mamba_config_from_weights(WeightStore::open(c.weights), c.lm_prefix);
    c.connector.lm_width = c.text.d_model;
    // llm/mamba.py: prompt_builder_fn: ZephyrChatPromptBuilder for *zephyr, else MambaPromptBuilder
    c.chat_template = llm.ends_with("zephyr") ? "zephyr" : "In: {question}\nOut: ";
    c.tokenizer = p.tokenizer;
    if (!c.tokenizer.empty())
        VLM_CHECK(fs::is_regular_file(c.tokenizer), op, c.tokenizer.string(), ": expected the LM's tokenizer.json, got ",
                  fs::exists(c.tokenizer) ? "a directory" : "nothing");
    return c;
}

inline FusedVisionEncoder FusedVisionEncoder::load(const VlMambaConfig& c, WeightLoader&) {
    VLM_CHECK(!c.towers.empty(), "vlmamba", (c.dir / "config.json").string(),
              ": the compiled variant expects timm towers (Cobra), got a ", vision_family_name(c.vision.family),
              " tower");
    FusedVisionEncoder e;
    for (const TimmVitConfig& t : c.towers) e.towers.push_back(load_timm_vit(t));
    return e;
}

inline Tensor FusedVisionEncoder::features(const Tensor& pixels) const {
    const std::int64_t T = std::int64_t(towers.size()), S = towers.front().cfg.img_size;
    const Tensor px = pixels.ndim() == 3 ? pixels.unsqueeze(0) : pixels;  // (1, 3·T, S, S)
    VLM_CHECK(px.shape() == Shape({1, 3 * T, S, S}), "fused_vision", "pixel_values has shape ",
              shape_str(pixels.shape()), ", expected ", shape_str({1, 3 * T, S, S}), " (", T, " towers x 3 channels)");
    return features_batch(px).select(0, 0).contiguous();  // (G², Σ C_t)
}

inline Tensor FusedVisionEncoder::features_batch(const Tensor& pixels) const {
    const std::int64_t T = std::int64_t(towers.size()), S = towers.front().cfg.img_size;
    VLM_CHECK(pixels.ndim() == 4 && pixels.size(0) >= 1 && pixels.shape() == Shape({pixels.size(0), 3 * T, S, S}),
              "fused_vision", "pixel_values has shape ", shape_str(pixels.shape()), ", expected (B, ", 3 * T, ", ", S,
              ", ", S, ")");
    std::vector<Tensor> parts;  // T × (B, G², C_t)
    std::int64_t width = 0;
    for (std::int64_t t = 0; t < T; ++t) {
        parts.push_back(towers[std::size_t(t)].features_batch(pixels.slice(1, 3 * t, 3 * t + 3).contiguous()));
        width += parts.back().size(2);
    }
    // dinosiglip_vit.py: torch.cat([dino_patches, siglip_patches], dim=2)
    Tensor out = Tensor::empty({pixels.size(0), parts.front().size(1), width});  // (B, G², Σ C_t)
    std::int64_t off = 0;
    for (const Tensor& part : parts) {
        Tensor dst = out.slice(2, off, off + part.size(2));
        copy_into(dst, part);
        off += part.size(2);
    }
    return out;
}

}  // namespace vlmamba
