// A loaded model directory, ready to generate: a Mamba LM, or a VL-Mamba (vision tower + connector + Mamba LM), with
// its tokenizer, its default chat template and a fingerprint. A Model is immutable after load(): any number of
// Sessions on any number of threads may share one (on the CPU; a CUDA model serves one thread at a time).
//
//   vlmamba::Model m = vlmamba::Model::load("zoo/shapes-vlmamba", {.device = vlmamba::Device::Cpu});
//   vlmamba::Session s(m);
//   auto r = s.generate({.prompt = "What color is the circle?", .images = {vlmamba::ImageInput("a.png")}});
//
// Model::load is defined in vlmamba/session/load.hpp (it instantiates every compiled variant; vlmamba.hpp includes
// it): include that header in one of your translation units.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "vlmamba/core/device.hpp"
#include "vlmamba/io/chat_template.hpp"
#include "vlmamba/io/image.hpp"
#include "vlmamba/io/tokenizer.hpp"
#include "vlmamba/models/any_vlmamba.hpp"
#include "vlmamba/models/mamba_lm.hpp"

namespace vlmamba {

struct ModelOptions {
    Device device = Device::Cpu;
    DType weights = DType::F32;        // the LM's big matrices: F32 or BF16 (CPU: also F16); the rest stays f32
    int threads = 0;                   // 0: all cores
    std::filesystem::path tokenizer;   // a tokenizer.json when the directory has none (state-spaces checkpoints, Cobra)
    std::map<std::string, std::filesystem::path> towers;  // Cobra: "dino", "siglip" -> timm tower directory
    std::string chat_template;         // a template name or a JSON file; empty: the directory's default
    bool mmap = false;                 // weights stay views of the mapped files (io/weights.hpp MappedWeights)
};

// An image for a request: a file, a decoded image, or preprocessed pixels (3, S, S) or (1, 3, S, S); a model of
// several towers (Cobra) takes their pixels stacked on channels, (3·T, S, S).
using ImageInput = std::variant<std::filesystem::path, Image, Tensor>;

struct Timings {
    double preprocess = 0, vision = 0, connector = 0, prefill = 0, decode = 0;  // seconds
};

class Model {
public:
    enum class Kind { MambaLm, VlMamba };

    static Model load(const std::filesystem::path& dir, const ModelOptions& options = {});  // load.hpp

    Kind kind() const { return vl_ ? Kind::VlMamba : Kind::MambaLm; }
    // "mamba-lm", or the VL-Mamba variant, e.g. "vlmamba siglip/vss_l2/bsm", "cobra dino+siglip/fused_mlp".
    const std::string& variant() const { return variant_; }
    const std::filesystem::path& dir() const { return dir_; }
    Device device() const { return device_; }
    // The LM on the model's device.
    const MambaLm& lm() const { return lm_ ? *lm_ : vl_->language_model(); }
    const zoo::AnyVlMamba* vl() const { return vl_.get(); }
    const Tokenizer* tokenizer() const { return tokenizer_ ? &*tokenizer_ : nullptr; }
    const ChatTemplate& chat_template() const { return template_; }
    std::int32_t eos_token_id() const { return lm().cfg.eos_token_id; }
    // Tokens the sampler may pick: the tokenizer's vocabulary within the LM head (the rest is padding).
    std::int64_t n_valid_tokens() const {
        const std::int64_t V = lm().cfg.vocab_size;
        return tokenizer_ ? std::min<std::int64_t>(tokenizer_->vocab_size(), V) : V;
    }
    // FNV-1a over config.json and every tensor's name, dtype and shape: a saved state names the model it needs.
    std::uint64_t fingerprint() const { return fingerprint_; }
    // An image as pixels (1, 3·T, S, S), preprocessed as the model's config says (T = 1 but for Cobra's towers).
    Tensor pixels(const ImageInput& image) const;
    // Image prefixes for B images (B, 3, S, S): the tower runs once over the batch, then the connector per image.
    // Each prefix is (L_v, d). Adds the seconds spent to t.vision and t.connector.
    std::vector<Tensor> image_prefixes(const Tensor& pixels, Timings& t) const;

private:
    std::filesystem::path dir_;
    std::string variant_;
    Device device_ = Device::Cpu;
    std::shared_ptr<const zoo::AnyVlMamba> vl_;
    std::shared_ptr<const MambaLm> lm_;  // a Mamba LM directory, or a VL-Mamba's LM moved to the device
    std::optional<Tokenizer> tokenizer_;
    ChatTemplate template_;
    std::uint64_t fingerprint_ = 0;
    std::shared_ptr<const VisionEncoder> vision_;  // a CLIP / SigLIP tower moved to the device
    friend struct ModelLoader;
};

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline Tensor Model::pixels(const ImageInput& image) const {
    VLM_CHECK(vl_, "model", dir_.string(), " is a text-only Mamba LM: it takes no images");
    const VlMambaConfig& c = vl_->config();
    const std::int64_t S = c.image_size(), Ch = c.pixel_channels();
    if (const Tensor* t = std::get_if<Tensor>(&image)) {
        const Shape want{1, Ch, S, S};
        const Tensor px = t->ndim() == 3 ? t->unsqueeze(0) : *t;
        VLM_CHECK(px.shape() == want, "model", "pixel_values has shape ", shape_str(t->shape()), ", expected ",
                  shape_str(want));
        return px.to(DType::F32).contiguous();
    }
    const Image img = std::holds_alternative<Image>(image) ? std::get<Image>(image)
                                                           : load_image(std::get<std::filesystem::path>(image));
    Tensor t = Tensor::empty({1, Ch, S, S});  // (1, 3·T, S, S): each tower's preprocessing, stacked on channels
    float* dst = t.data<float>();
    for (const PreprocessConfig& pc : c.preprocess) {
        const std::vector<float> px = preprocess(img, pc);  // (3, S, S)
        dst = std::copy(px.begin(), px.end(), dst);
    }
    return t;
}

inline std::vector<Tensor> Model::image_prefixes(const Tensor& pixels, Timings& t) const {
    VLM_CHECK(vl_, "model", dir_.string(), " is a text-only Mamba LM: it takes no images");
    using clock = std::chrono::steady_clock;
    auto seconds = [](clock::time_point a) { return std::chrono::duration<double>(clock::now() - a).count(); };
    const std::int64_t B = pixels.size(0);
    auto t0 = clock::now();
    std::vector<Tensor> features;  // B × (L_v, C_v)
    const Tensor f = vl_->features_batch(pixels);                             // (B, L_v, C_v) on the model's device
    for (std::int64_t b = 0; b < B; ++b) features.push_back(f.select(0, b));  // (L_v, C_v)
    t.vision += seconds(t0);
    t0 = clock::now();
    std::vector<Tensor> out;
    for (const Tensor& f : features) out.push_back(vl_->connect(f));  // (L_v, d)
    t.connector += seconds(t0);
    return out;
}

}  // namespace vlmamba
