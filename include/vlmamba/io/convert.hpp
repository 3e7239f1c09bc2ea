// The logic of `vlmamba convert IN OUT`: any weights WeightStore opens (a PyTorch checkpoint .bin/.pt, a directory
// with pytorch_model.bin or its sharded index, or safetensors) written as one safetensors file with the same tensor
// names and dtypes. Tensors that share a storage in the checkpoint (a tied lm_head) are written once per name, as
// safetensors has no sharing. Non-contiguous tensors are written contiguous. Errors name the file and the reason.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "vlmamba/io/safetensors.hpp"
#include "vlmamba/io/weights.hpp"

namespace vlmamba {

struct ConvertSummary {
    std::size_t tensors = 0;
    std::uint64_t bytes = 0;   // tensor data written
    std::size_t skipped_leaves = 0;  // non-tensor values of the checkpoint, which safetensors cannot hold
};

// Writes `out` (via out.tmp, then a rename). The metadata holds {"format": "pt"} for a PyTorch source, as
// transformers writes it; a safetensors source keeps its merged __metadata__.
ConvertSummary convert_to_safetensors(const std::filesystem::path& in, const std::filesystem::path& out);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline ConvertSummary convert_to_safetensors(const std::filesystem::path& in, const std::filesystem::path& out) {
    const WeightStore store = WeightStore::open(in);
    std::vector<std::pair<std::string, Tensor>> tensors;
    ConvertSummary s;
    for (const auto& name : store.names()) {
        tensors.emplace_back(name, store.view(name));  // streamed from the map, never copied whole
        s.bytes += tensors.back().second.nbytes();
    }
    s.tensors = tensors.size();
    std::map<std::string, std::string> metadata;
    if (store.format() == WeightFormat::Pytorch) {
        metadata["format"] = "pt";
        for (const auto& c : store.checkpoints()) s.skipped_leaves += c.leaves().size();
    } else {
        for (const auto& f : store.files())
            for (const auto& [k, v] : f.metadata()) metadata.emplace(k, v);
    }
    save_safetensors(out, tensors, metadata);
    return s;
}

}  // namespace vlmamba
