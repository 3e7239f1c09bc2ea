// vlmamba inspect FILE|DIR: which model a directory holds, then its validated tensor table.
#include <iostream>

#include "commands.hpp"
#include "common.hpp"
#include "vlmamba/io/inspect.hpp"
#include "vlmamba/models/cobra.hpp"
#include "vlmamba/models/vl_mamba.hpp"

namespace cli {

namespace {
// "VL-Mamba siglip/vss_l2/bsm ...", "Mamba LM ..." or "CLIP vision tower ...", from config.json alone.
std::string describe_model_dir(const std::filesystem::path& dir) {
    const nlohmann::json j = vlmamba::read_json_file(dir / "config.json", "inspect");
    if (j.value("model_type", std::string()) == "vlmamba") {
        const vlmamba::VlMambaConfig c = vlmamba::load_vlmamba_config(dir);
        return "VL-Mamba, variant " + vlmamba::variant_name(c) + " (" + vlmamba::vision_family_name(c.vision.family) +
               " tower of " + std::to_string(c.vision.num_hidden_layers) + " layers, " +
               std::to_string(c.vision.grid() * c.vision.grid()) + " image tokens; Mamba LM of " +
               std::to_string(c.text.n_layer) + " layers, d_model " + std::to_string(c.text.d_model) +
               "; chat template " + c.chat_template + ")";
    }
    if (vlmamba::is_cobra_config(j)) {  // its tensors are in checkpoints/latest-checkpoint.pt (listed below)
        const nlohmann::json& m = j["model"];
        return "Cobra " + m.value("model_id", std::string("?")) + " (vision " + m.value("vision_backbone_id", "?") +
               ", projector " + m.value("arch_specifier", "?") + ", LM " + m.value("llm_backbone_id", "?") +
               "; run it with --tower NAME=DIR per tower, see docs/cobra.md)";
    }
    try {
        const vlmamba::VisionConfig v = vlmamba::load_vision_config(dir / "config.json");
        return std::string(vlmamba::vision_family_name(v.family)) + " vision tower (" +
               std::to_string(v.num_hidden_layers) + " layers, hidden " + std::to_string(v.hidden_size) + ", " +
               std::to_string(v.image_size) + " px)";
    } catch (const vlmamba::Error&) {
    }
    const vlmamba::MambaConfig c = vlmamba::load_mamba_config(dir / "config.json");
    return "Mamba LM (" + std::to_string(c.n_layer) + " layers, d_model " + std::to_string(c.d_model) + ", vocab " +
           std::to_string(c.vocab_size) + ")";
}
}  // namespace

void add_inspect(CLI::App& app) {
    auto* cmd = app.add_subcommand("inspect", "Say which model a directory holds; list and validate its tensors");
    cmd->footer("Exits 0 when the file is valid; otherwise prints a one-line reason to stderr and exits 1.\n"
                "Examples: vlmamba inspect zoo/shapes-vlmamba\n"
                "          vlmamba inspect model.safetensors | pytorch_model.bin | checkpoint.pt");
    auto path = std::make_shared<std::string>();
    cmd->add_option("path", *path, "a .safetensors/.bin/.pt file, or a model directory")->required();
    cmd->callback([path] {
        const std::filesystem::path p(*path);
        const bool cobra = std::filesystem::is_directory(p) && std::filesystem::exists(p / "config.json") &&
                           vlmamba::is_cobra_config(vlmamba::read_json_file(p / "config.json", "inspect"));
        if (std::filesystem::is_directory(p) && std::filesystem::exists(p / "config.json"))
            std::cout << "model: " << describe_model_dir(p) << "\n";
        vlmamba::inspect(cobra ? p / "checkpoints" / "latest-checkpoint.pt" : p, std::cout);
    });
}

}  // namespace cli
