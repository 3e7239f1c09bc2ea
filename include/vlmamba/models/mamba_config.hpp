// MambaConfig from config.json, in either dialect: mamba_ssm's (d_model, n_layer, ssm_cfg) or HF's (hidden_size, ...).
#pragma once
#include <cmath>
#include <cstdint>
#include <filesystem>

#include "vlmamba/io/json_config.hpp"

namespace vlmamba {

struct MambaConfig {
    int d_model = 0, n_layer = 0;
    int vocab_size = 0;  // rows of the embedding (padded)
    int d_state = 16, d_conv = 4, d_inner = 0, dt_rank = 0;
    float norm_eps = 1e-5f;
    bool tie_embeddings = true;
    bool conv_bias = true, proj_bias = false;
    int eos_token_id = 0;
};

// Parses a config object; `file` names it in errors.
MambaConfig parse_mamba_config(const nlohmann::json& j, const std::string& file);
MambaConfig load_mamba_config(const std::filesystem::path& config_json);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline MambaConfig parse_mamba_config(const nlohmann::json& j, const std::string& file) {
    constexpr const char* op = "mamba_config";
    MambaConfig c;
    int expand = 2;
    auto inner_width = [&](int e, int d) {  // expand * d_model, without int overflow
        const std::int64_t w = std::int64_t(e) * d;
        VLM_CHECK(w > 0 && w <= kMaxConfigWidth, op, file, ": expected expand * d_model in [1, ", kMaxConfigWidth,
                  "], got ", e, " * ", d);
        return int(w);
    };
    int dt_rank = -1;  // -1 = "auto"
    auto read_dt_rank = [&](const nlohmann::json& o, const char* key) {
        auto it = o.find(key);
        if (it == o.end() || it->is_null() || (it->is_string() && it->get<std::string>() == "auto")) return;
        if (!it->is_number_integer())
            fail(op, file, ": key '", key, "' must be an integer or \"auto\", got ", detail::json_brief(*it));
        dt_rank = json_get<int>(o, key, -1, file, op);
    };
    if (j.contains("d_model")) {  // mamba_ssm dialect
        c.d_model = json_require<int>(j, "d_model", file, op);
        c.n_layer = json_require<int>(j, "n_layer", file, op);
        const int vocab = json_require<int>(j, "vocab_size", file, op);
        const int pad = json_get<int>(j, "pad_vocab_size_multiple", 8, file, op);
        VLM_CHECK(pad > 0, op, file, ": expected pad_vocab_size_multiple > 0, got ", pad);
        VLM_CHECK(vocab > 0 && vocab <= kMaxConfigVocab && pad <= kMaxConfigVocab, op, file,
                  ": expected vocab_size in [1, ", kMaxConfigVocab, "] and pad_vocab_size_multiple <= ",
                  kMaxConfigVocab, ", got ", vocab, " and ", pad);
        c.vocab_size = (vocab + pad - 1) / pad * pad;  // < 2^25: no overflow
        c.tie_embeddings = json_get<bool>(j, "tie_embeddings", true, file, op);
        VLM_CHECK(json_get<bool>(j, "rms_norm", true, file, op), op, file, ": expected rms_norm true, got false");
        VLM_CHECK(json_get<int>(j, "d_intermediate", 0, file, op) == 0, op, file,
                  ": expected d_intermediate 0 (no MLP in Mamba-1 blocks), got ", detail::json_brief(j["d_intermediate"]));
        const nlohmann::json ssm = j.value("ssm_cfg", nlohmann::json::object());
        if (!ssm.is_object()) fail(op, file, ": expected ssm_cfg to be an object, got ", detail::json_brief(ssm));
        const std::string layer = json_get<std::string>(ssm, "layer", "Mamba1", file, op);
        VLM_CHECK(layer == "Mamba1", op, file, ": expected ssm_cfg.layer \"Mamba1\", got \"", layer, "\"");
        c.d_state = json_get<int>(ssm, "d_state", 16, file, op);
        c.d_conv = json_get<int>(ssm, "d_conv", 4, file, op);
        expand = json_get<int>(ssm, "expand", 2, file, op);
        c.conv_bias = json_get<bool>(ssm, "conv_bias", true, file, op);
        c.proj_bias = json_get<bool>(ssm, "bias", false, file, op);
        read_dt_rank(ssm, "dt_rank");
        c.norm_eps = json_get<float>(j, "norm_epsilon", 1e-5f, file, op);
        c.d_inner = inner_width(expand, c.d_model);
    } else if (j.contains("hidden_size")) {  // HF transformers dialect
        const std::string mt = json_get<std::string>(j, "model_type", "mamba", file, op);
        VLM_CHECK(mt == "mamba", op, file, ": expected model_type \"mamba\", got \"", mt, "\"");
        c.d_model = json_require<int>(j, "hidden_size", file, op);
        c.n_layer = json_require<int>(j, "num_hidden_layers", file, op);
        c.vocab_size = json_require<int>(j, "vocab_size", file, op);
        c.d_state = json_get<int>(j, "state_size", 16, file, op);
        c.d_conv = json_get<int>(j, "conv_kernel", 4, file, op);
        expand = json_get<int>(j, "expand", 2, file, op);
        c.d_inner = json_get<int>(j, "intermediate_size", 0, file, op);
        if (c.d_inner == 0 && (!j.contains("intermediate_size") || j["intermediate_size"].is_null()))
            c.d_inner = inner_width(expand, c.d_model);
        read_dt_rank(j, "time_step_rank");
        c.norm_eps = json_get<float>(j, "layer_norm_epsilon", 1e-5f, file, op);
        c.tie_embeddings = json_get<bool>(j, "tie_word_embeddings", true, file, op);
        c.conv_bias = json_get<bool>(j, "use_conv_bias", true, file, op);
        c.proj_bias = json_get<bool>(j, "use_bias", false, file, op);
        c.eos_token_id = json_get<int>(j, "eos_token_id", 0, file, op);
    } else {
        fail(op, file, ": unknown config: expected mamba_ssm keys (d_model, n_layer, ...) or HF Mamba keys "
             "(hidden_size, num_hidden_layers, ...)");
    }
    c.dt_rank = dt_rank > 0 ? dt_rank : int((std::int64_t(c.d_model) + 15) / 16);
    VLM_CHECK(c.d_model > 0 && c.n_layer > 0 && c.vocab_size > 0 && c.d_inner > 0, op, file,
              ": expected positive d_model, n_layer, vocab_size, d_inner, got ", c.d_model, ", ", c.n_layer, ", ",
              c.vocab_size, ", ", c.d_inner);
    VLM_CHECK(c.d_model <= kMaxConfigWidth && c.d_inner <= kMaxConfigWidth && c.dt_rank <= kMaxConfigWidth &&
                  c.n_layer <= kMaxConfigLayers && c.vocab_size <= kMaxConfigVocab,
              op, file, ": expected d_model, d_inner, dt_rank <= ", kMaxConfigWidth, ", n_layer <= ", kMaxConfigLayers,
              ", vocab_size <= ", kMaxConfigVocab, ", got ", c.d_model, ", ", c.d_inner, ", ", c.dt_rank, ", ",
              c.n_layer, ", ", c.vocab_size);
    VLM_CHECK(c.d_state >= 1 && c.d_state <= 64, op, file, ": expected d_state in [1, 64], got ", c.d_state);
    VLM_CHECK(c.d_conv >= 1 && c.d_conv <= 8, op, file, ": expected d_conv in [1, 8], got ", c.d_conv);
    VLM_CHECK(!c.proj_bias, op, file, ": expected use_bias false (in_proj/out_proj without bias), got true");
    return c;
}

inline MambaConfig load_mamba_config(const std::filesystem::path& config_json) {
    return parse_mamba_config(read_json_file(config_json, "mamba_config"), config_json.string());
}

}  // namespace vlmamba
