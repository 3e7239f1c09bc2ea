// AnyVlMamba: a loaded VL-Mamba variant behind one run-time interface (zoo.hpp's factory makes them). Including
// this header instantiates no variant.
#pragma once
#include <memory>
#include <string>

#include "vlmamba/models/vl_mamba.hpp"

namespace vlmamba::zoo {

// A loaded variant behind one interface (the hot paths inside stay fully typed).
class AnyVlMamba {
public:
    template <class M>
    explicit AnyVlMamba(M m, std::string name) : impl_(std::make_unique<Impl<M>>(std::move(m))), name_(std::move(name)) {}

    const std::string& variant() const { return name_; }  // e.g. "siglip/vss_l2/bsm", "dino+siglip/fused_mlp"
    // Whether to() can move this variant (Cobra's timm towers cannot yet).
    bool movable() const { return impl_->movable(); }
    // The same variant on `d` (VlMamba::to); an error for a variant that cannot move.
    std::shared_ptr<const AnyVlMamba> to(Device d, DType weights) const {
        return std::shared_ptr<const AnyVlMamba>(new AnyVlMamba(impl_->to(d, weights), name_));
    }
    const VlMambaConfig& config() const { return impl_->config(); }
    const MambaLm& language_model() const { return impl_->lm(); }
    // The CLIP / SigLIP tower; nullptr for a variant with another encoder (Cobra's timm towers).
    const VisionEncoder* single_tower() const { return impl_->vision(); }
    // The same, as a reference; an error for a variant without one.
    const VisionEncoder& vision_encoder() const {
        VLM_CHECK(single_tower(), "vlmamba", "variant ", name_, " has no single CLIP / SigLIP tower");
        return *single_tower();
    }
    const std::optional<Tokenizer>& tokenizer() const { return impl_->tokenizer(); }
    Tensor image_prefix(const Tensor& pixels) const { return impl_->image_prefix(pixels); }     // (L_v, d)
    Tensor features(const Tensor& pixels) const { return impl_->features(pixels); }             // (L_v, C_v)
    Tensor features_batch(const Tensor& pixels) const { return impl_->features_batch(pixels); }  // (B, L_v, C_v)
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
        virtual std::unique_ptr<Base> to(Device, DType) const = 0;
        virtual bool movable() const = 0;
        virtual const VlMambaConfig& config() const = 0;
        virtual const MambaLm& lm() const = 0;
        virtual const VisionEncoder* vision() const = 0;
        virtual const std::optional<Tokenizer>& tokenizer() const = 0;
        virtual Tensor image_prefix(const Tensor&) const = 0;
        virtual Tensor features(const Tensor&) const = 0;
        virtual Tensor features_batch(const Tensor&) const = 0;
        virtual Tensor connect(const Tensor&) const = 0;
        virtual Tensor input_embeddings(const std::vector<Tensor>&, std::span<const std::int32_t>) const = 0;
        virtual Tensor text_logits(const std::vector<Tensor>&, std::span<const std::int32_t>) const = 0;
    };
    template <class M>
    struct Impl final : Base {
        M m;
        explicit Impl(M x) : m(std::move(x)) {}
        bool movable() const override { return requires { m.to(Device::Cpu, DType::F32); }; }
        std::unique_ptr<Base> to(Device d, DType w) const override {
            if constexpr (requires { m.to(d, w); }) return std::make_unique<Impl>(m.to(d, w));
            else fail("vlmamba", "this variant's towers run on the cpu only; load it with --device cpu");
        }
        const VlMambaConfig& config() const override { return m.cfg; }
        const MambaLm& lm() const override { return m.language_model; }
        const VisionEncoder* vision() const override {
            if constexpr (requires { m.vision_tower.encoder; }) return &m.vision_tower.encoder;
            else return nullptr;
        }
        const std::optional<Tokenizer>& tokenizer() const override { return m.tokenizer; }
        Tensor image_prefix(const Tensor& p) const override { return m.image_prefix(p); }
        Tensor features(const Tensor& p) const override { return m.vision_tower.features(p); }
        Tensor features_batch(const Tensor& p) const override { return m.vision_tower.features_batch(p); }
        Tensor connect(const Tensor& f) const override {
            const int g = m.cfg.grid();
            return m.mm_projector.forward(f, g, g);
        }
        Tensor input_embeddings(const std::vector<Tensor>& p, std::span<const std::int32_t> ids) const override {
            return m.input_embeddings(p, ids);
        }
        Tensor text_logits(const std::vector<Tensor>& p, std::span<const std::int32_t> ids) const override {
            return m.text_logits(p, ids);
        }
    };
    AnyVlMamba(std::unique_ptr<Base> impl, std::string name) : impl_(std::move(impl)), name_(std::move(name)) {}
    std::unique_ptr<Base> impl_;
    std::string name_;
};

}  // namespace vlmamba::zoo
