// The paper's grid of variants as types, {CLIP-L-336, SigLIP-SO-384} × {MLP, VSS-MLP, VSS-L2} × {BSM, CSM}, and a
// runtime factory that reads config.json and picks the compiled variant. Include this from ONE translation unit
// (the CLI's, a test's): that instantiates every variant once.
#pragma once
#include <memory>

#include "vlmamba/models/vl_mamba.hpp"

namespace vlmamba::zoo {

using ClipMlp = VlMamba<ClipVisionEncoder, MlpConnector>;
using ClipVssMlpBsm = VlMamba<ClipVisionEncoder, VssMlpConnector<BidirectionalScan>>;
using ClipVssMlpCsm = VlMamba<ClipVisionEncoder, VssMlpConnector<CrossScan>>;
using ClipVssL2Bsm = VlMamba<ClipVisionEncoder, VssL2Connector<BidirectionalScan>>;
using ClipVssL2Csm = VlMamba<ClipVisionEncoder, VssL2Connector<CrossScan>>;
using SiglipMlp = VlMamba<SiglipVisionEncoder, MlpConnector>;
using SiglipVssMlpBsm = VlMamba<SiglipVisionEncoder, VssMlpConnector<BidirectionalScan>>;
using SiglipVssMlpCsm = VlMamba<SiglipVisionEncoder, VssMlpConnector<CrossScan>>;
using SiglipVssL2Bsm = VlMamba<SiglipVisionEncoder, VssL2Connector<BidirectionalScan>>;  // the paper's final model
using SiglipVssL2Csm = VlMamba<SiglipVisionEncoder, VssL2Connector<CrossScan>>;

// A loaded variant behind one interface (the hot paths inside stay fully typed).
class AnyVlMamba {
public:
    template <class M>
    explicit AnyVlMamba(M m, std::string name) : impl_(std::make_unique<Impl<M>>(std::move(m))), name_(std::move(name)) {}

    const std::string& variant() const { return name_; }  // e.g. "siglip/vss_l2/bsm"
    const VlMambaConfig& config() const { return impl_->config(); }
    const MambaLm& language_model() const { return impl_->lm(); }
    const VisionEncoder& vision_encoder() const { return impl_->vision(); }
    const std::optional<Tokenizer>& tokenizer() const { return impl_->tokenizer(); }
    Tensor image_prefix(const Tensor& pixels) const { return impl_->image_prefix(pixels); }     // (L_v, d)
    Tensor features(const Tensor& pixels) const { return impl_->features(pixels); }             // (L_v, C_v)
    Tensor connect(const Tensor& features) const { return impl_->connect(features); }          // (L_v, d)
    Tensor input_embeddings(const std::vector<Tensor>& prefixes, std::span<const std::int32_t> ids) const {
        return impl_->input_embeddings(prefixes, ids);
    }
    Tensor text_logits(const std::vector<Tensor>& prefixes, std::span<const std::int32_t> ids) const {
        return impl_->text_logits(prefixes, ids);
    }

private:
    struct Base {
        virtual ~Base() = default;
        virtual const VlMambaConfig& config() const = 0;
        virtual const MambaLm& lm() const = 0;
        virtual const VisionEncoder& vision() const = 0;
        virtual const std::optional<Tokenizer>& tokenizer() const = 0;
        virtual Tensor image_prefix(const Tensor&) const = 0;
        virtual Tensor features(const Tensor&) const = 0;
        virtual Tensor connect(const Tensor&) const = 0;
        virtual Tensor input_embeddings(const std::vector<Tensor>&, std::span<const std::int32_t>) const = 0;
        virtual Tensor text_logits(const std::vector<Tensor>&, std::span<const std::int32_t>) const = 0;
    };
    template <class M>
    struct Impl final : Base {
        M m;
        explicit Impl(M x) : m(std::move(x)) {}
        const VlMambaConfig& config() const override { return m.cfg; }
        const MambaLm& lm() const override { return m.language_model; }
        const VisionEncoder& vision() const override { return m.vision_tower.encoder; }
        const std::optional<Tokenizer>& tokenizer() const override { return m.tokenizer; }
        Tensor image_prefix(const Tensor& p) const override { return m.image_prefix(p); }
        Tensor features(const Tensor& p) const override { return m.vision_tower.features(p); }
        Tensor connect(const Tensor& f) const override {
            const int g = m.cfg.vision.grid();
            return m.mm_projector.forward(f, g, g);
        }
        Tensor input_embeddings(const std::vector<Tensor>& p, std::span<const std::int32_t> ids) const override {
            return m.input_embeddings(p, ids);
        }
        Tensor text_logits(const std::vector<Tensor>& p, std::span<const std::int32_t> ids) const override {
            return m.text_logits(p, ids);
        }
    };
    std::unique_ptr<Base> impl_;
    std::string name_;
};

// Reads dir/config.json and loads the matching compiled variant; an unsupported combination names the supported ones.
inline AnyVlMamba load(const std::filesystem::path& dir) {
    const VlMambaConfig c = load_vlmamba_config(dir);
    const bool clip = c.vision.family == VisionFamily::Clip;
    const std::string name = std::string(clip ? "clip" : "siglip") + "/" + connector_type_name(c.connector.type) +
                             (c.connector.type == ConnectorType::Mlp ? "" : "/" + c.connector.scan);
    auto make = [&]<class M>(std::type_identity<M>) { return AnyVlMamba(M::load(c), name); };
    const bool bsm = c.connector.scan == "bsm", csm = c.connector.scan == "csm";
    switch (c.connector.type) {
        case ConnectorType::Mlp:
            return clip ? make(std::type_identity<ClipMlp>{}) : make(std::type_identity<SiglipMlp>{});
        case ConnectorType::VssMlp:
            if (bsm) return clip ? make(std::type_identity<ClipVssMlpBsm>{}) : make(std::type_identity<SiglipVssMlpBsm>{});
            if (csm) return clip ? make(std::type_identity<ClipVssMlpCsm>{}) : make(std::type_identity<SiglipVssMlpCsm>{});
            break;
        case ConnectorType::VssL2:
            if (bsm) return clip ? make(std::type_identity<ClipVssL2Bsm>{}) : make(std::type_identity<SiglipVssL2Bsm>{});
            if (csm) return clip ? make(std::type_identity<ClipVssL2Csm>{}) : make(std::type_identity<SiglipVssL2Csm>{});
            break;
    }
    fail("zoo", (dir / "config.json").string(), ": no compiled variant for ", name,
         "; supported: {clip, siglip} x {mlp, vss_mlp/bsm, vss_mlp/csm, vss_l2/bsm, vss_l2/csm}");
}

}  // namespace vlmamba::zoo
