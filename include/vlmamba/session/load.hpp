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

// config.json and every tensor header of a directory, and of the component directories it names.
inline void fingerprint_dir(std::uint64_t& h, const std::filesystem::path& dir) {
    std::ifstream in(dir / "config.json", std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    fnv1a(h, ss.str());
    const WeightStore store = WeightStore::open(dir);
    for (const std::string& n : store.names()) {
        const Tensor t = store.get(n);
        fnv1a(h, n);
        fnv1a(h, dtype_name(t.dtype()));
        fnv1a(h, shape_str(t.shape()));
    }
    const nlohmann::json j = read_json_file(dir / "config.json", "model");
    for (const char* key : {"vision_tower_path", "language_model_path"})
        if (j.contains(key) && j[key].is_string()) fingerprint_dir(h, dir / j[key].get<std::string>());
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
        const nlohmann::json j = read_json_file(dir / "config.json", op);
        Model m;
        m.dir_ = dir;
        m.device_ = o.device;
        std::string tmpl = "plain";
        if (j.value("model_type", std::string()) == "vlmamba") {
            auto vl = std::make_shared<zoo::AnyVlMamba>(zoo::load(dir));
            m.variant_ = "vlmamba " + vl->variant();
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
        detail::fingerprint_dir(m.fingerprint_, dir);
#ifdef VLMAMBA_WITH_CUDA
        if (o.device == Device::Cuda) {
            m.cuda_lm_ = std::make_shared<CudaMambaLm>(CudaMambaLm::upload(m.lm(), o.weights));
            if (m.vl_) m.cuda_vision_ = std::make_shared<CudaVisionEncoder>(CudaVisionEncoder::upload(m.vl_->vision_encoder()));
        }
#endif
        return m;
    }
};

inline Model Model::load(const std::filesystem::path& dir, const ModelOptions& o) { return ModelLoader::load(dir, o); }

}  // namespace vlmamba
