// Model::load: reads a model directory's config.json and builds the model it describes (a Mamba LM, or the compiled
// VL-Mamba variant; zoo.hpp instantiates every variant, so include this header in one translation unit).
#pragma once
#include <fstream>
#include <sstream>

#include "vlmamba/core/parallel.hpp"
#include "vlmamba/models/load_mamba.hpp"
#include "vlmamba/models/zoo.hpp"
#include "vlmamba/session/model.hpp"

namespace vlmamba {

namespace detail {
inline void fnv1a(std::uint64_t& h, std::string_view bytes) {
    for (const char c : bytes) h = (h ^ std::uint8_t(c)) * 0x100000001b3ull;
}

inline void fingerprint_file(std::uint64_t& h, const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    fnv1a(h, ss.str());
}

// Every tensor header (name, dtype, shape) of a weights file or directory.
inline void fingerprint_store(std::uint64_t& h, const std::filesystem::path& file_or_dir) {
    const WeightStore store = WeightStore::open(file_or_dir);
    for (const std::string& n : store.names()) {
        const WeightInfo t = store.info(n);
        fnv1a(h, n);
        fnv1a(h, dtype_name(t.dtype));
        fnv1a(h, shape_str(t.shape));
    }
}

// config.json and every tensor header of a directory, and of the component directories it names.
inline void fingerprint_dir(std::uint64_t& h, const std::filesystem::path& dir) {
    fingerprint_file(h, dir / "config.json");
    fingerprint_store(h, dir);
    const nlohmann::json j = read_json_file(dir / "config.json", "model");
    for (const char* key : {"vision_tower_path", "language_model_path"})
        if (j.contains(key) && j[key].is_string()) fingerprint_dir(h, dir / j[key].get<std::string>());
}

// A Cobra directory: its config.json and checkpoint, and each tower's config and checkpoint.
inline void fingerprint_cobra(std::uint64_t& h, const VlMambaConfig& c) {
    fingerprint_file(h, c.dir / "config.json");
    fingerprint_store(h, c.weights);
    for (const TimmVitConfig& t : c.towers) {
        fingerprint_file(h, t.config_file);
        fingerprint_store(h, t.weights);
    }
}

inline void require_cuda(const std::filesystem::path& dir) {
#ifdef VLMAMBA_WITH_CUDA
    VLM_CHECK(cuda::available(), "model", dir.string(), ": --device cuda: expected a CUDA device, got none");
#else
    fail("model", dir.string(), ": --device cuda: vlmamba was built without CUDA (configure with -DVLMAMBA_CUDA=ON ",
         "where nvcc is found)");
#endif
}
}  // namespace detail

struct ModelLoader {
    static Model load(const std::filesystem::path& dir, const ModelOptions& o) {
        constexpr const char* op = "model";
        if (o.threads > 0) set_num_threads(o.threads);
        VLM_CHECK(std::filesystem::is_directory(dir), op, dir.string(), ": expected a model directory, got ",
                  std::filesystem::exists(dir) ? "a file" : "nothing");
        if (o.device == Device::Cuda) detail::require_cuda(dir);
        const MappedWeights mapped(o.mmap);
        const nlohmann::json j = read_json_file(dir / "config.json", op);
        Model m;
        m.dir_ = dir;
        m.device_ = o.device;
        std::string tmpl = "plain";
        const bool cobra = is_cobra_config(j);
        VLM_CHECK(cobra || o.towers.empty(), op, (dir / "config.json").string(),
                  ": towers are named (--tower) but this is not a Cobra directory");
        if (cobra || j.value("model_type", std::string()) == "vlmamba") {
            auto vl = std::make_shared<zoo::AnyVlMamba>(zoo::load(dir, CobraPaths{o.towers, {}}));
            m.variant_ = vl->config().format + " " + vl->variant();
            tmpl = vl->config().chat_template;
            if (vl->tokenizer()) m.tokenizer_ = *vl->tokenizer();
            m.vl_ = std::move(vl);
        } else {
            m.lm_ = std::make_shared<MambaLm>(load_mamba_lm(dir));
            m.variant_ = "mamba-lm";
            tmpl = json_get<std::string>(j, "chat_template", "plain", (dir / "config.json").string(), op);
            if (std::filesystem::exists(dir / "tokenizer.json"))
                m.tokenizer_ = Tokenizer::from_file(dir / "tokenizer.json");
        }
        if (!o.tokenizer.empty()) m.tokenizer_ = Tokenizer::from_file(o.tokenizer);
        if (!o.chat_template.empty()) tmpl = o.chat_template;
        m.template_ = tmpl.ends_with(".json") || std::filesystem::is_regular_file(tmpl) ? ChatTemplate::from_file(tmpl)
                                                                                        : ChatTemplate::named(tmpl);
        m.fingerprint_ = 0xcbf29ce484222325ull;
        if (cobra) detail::fingerprint_cobra(m.fingerprint_, m.vl_->config());
        else detail::fingerprint_dir(m.fingerprint_, dir);
        // The whole model on its device, the LM's matrices in the asked dtype (Cobra's timm towers stay on the CPU).
        if (o.device != Device::Cpu || o.weights != DType::F32) {
            if (m.vl_ && m.vl_->movable()) m.vl_ = m.vl_->to(o.device, o.weights);
            else m.lm_ = std::make_shared<MambaLm>(m.lm().to(o.device, o.weights));
        }
        return m;
    }
};

inline Model Model::load(const std::filesystem::path& dir, const ModelOptions& o) { return ModelLoader::load(dir, o); }

}  // namespace vlmamba
