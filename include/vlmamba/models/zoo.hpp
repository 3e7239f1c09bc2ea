// The paper's grid of variants as types, {CLIP-L-336, SigLIP-SO-384} × {MLP, VSS-MLP, VSS-L2} × {BSM, CSM}, Cobra's
// two released structures, and a runtime factory that reads config.json and picks the compiled variant. Include this
// from ONE translation unit (the CLI's, a test's): that instantiates every variant once.
#pragma once
#include "vlmamba/models/any_vlmamba.hpp"
#include "vlmamba/models/cobra.hpp"

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
using CobraDinoSiglip = VlMamba<FusedVisionEncoder, FusedMlpConnector>;  // cobra+3b (DINOv2 + SigLIP, fused-gelu-mlp)
using CobraSiglip = VlMamba<FusedVisionEncoder, MlpConnector>;           // cobra-siglip+3b (SigLIP, gelu-mlp)

// Loads the compiled variant a config names; an unsupported combination names the supported ones.
inline AnyVlMamba load(const VlMambaConfig& c) {
    const std::filesystem::path dir = c.dir;
    const bool clip = c.vision.family == VisionFamily::Clip;
    const std::string name = variant_name(c);
    auto make = [&]<class M>(std::type_identity<M>) { return AnyVlMamba(M::load(c), name); };
    const bool bsm = c.connector.scan == "bsm", csm = c.connector.scan == "csm";
    if (!c.towers.empty()) {  // Cobra: timm towers fused on channels
        if (c.connector.type == ConnectorType::FusedMlp) return make(std::type_identity<CobraDinoSiglip>{});
        if (c.connector.type == ConnectorType::Mlp) return make(std::type_identity<CobraSiglip>{});
        fail("zoo", (dir / "config.json").string(), ": no compiled variant for ", name,
             "; supported with timm towers: fused_mlp, mlp");
    }
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
        case ConnectorType::FusedMlp: break;
    }
    fail("zoo", (dir / "config.json").string(), ": no compiled variant for ", name,
         "; supported: {clip, siglip} x {mlp, vss_mlp/bsm, vss_mlp/csm, vss_l2/bsm, vss_l2/csm}");
}

// Reads dir/config.json (a VL-Mamba or a Cobra directory; `paths` names a Cobra directory's towers and tokenizer)
// and loads the matching compiled variant.
inline AnyVlMamba load(const std::filesystem::path& dir, const CobraPaths& paths = {}) {
    return load(is_cobra_config(read_json_file(dir / "config.json", "zoo")) ? load_cobra_config(dir, paths)
                                                                           : load_vlmamba_config(dir));
}

}  // namespace vlmamba::zoo
