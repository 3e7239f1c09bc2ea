// Loading a Mamba LM directory (config.json + safetensors, single or sharded) into a MambaLm.
#pragma once
#include <filesystem>

#include "vlmamba/io/weights.hpp"
#include "vlmamba/models/mamba_lm.hpp"

namespace vlmamba {

// Wraps a WeightLoader as a ParamSource that converts every tensor to f32 (compute is f32).
ParamSource param_source(WeightLoader& loader);

// Loads `dir` (config.json + model.safetensors[.index.json]). Every missing tensor and every wrong shape is reported
// in one error that names the files.
MambaLm load_mamba_lm(const std::filesystem::path& dir);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline ParamSource param_source(WeightLoader& loader) {
    return {[&loader](const std::string& n) { return loader.contains(n); },
            [&loader](const std::string& n, const Shape& s) { return loader.take(n, s, DType::F32); }};
}

inline MambaLm load_mamba_lm(const std::filesystem::path& dir) {
    const MambaConfig cfg = load_mamba_config(dir / "config.json");
    const WeightStore store = WeightStore::open(dir);
    WeightLoader loader(store);
    MambaLm lm = MambaLm::load(cfg, param_source(loader));
    loader.finish();
    return lm;
}

}  // namespace vlmamba
