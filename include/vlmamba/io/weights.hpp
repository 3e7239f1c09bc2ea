// WeightStore: name -> Tensor over one safetensors file, a directory holding model.safetensors, or a sharded
// checkpoint (model.safetensors.index.json, as in transformers). WeightLoader: strict model loading that
// collects every missing tensor and every shape mismatch, then reports them all in one error.
//
//   auto store = WeightStore::open(dir);
//   WeightLoader root(store);
//   WeightLoader lm = root.scope("language_model.");
//   Tensor w = lm.take("backbone.embeddings.weight", {V, D});   // (V, D); undefined if missing or mis-shaped
//   ...
//   root.finish();                                               // throws one Error listing every problem
#pragma once
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "vlmamba/core/error.hpp"
#include "vlmamba/core/shape.hpp"
#include "vlmamba/core/tensor.hpp"
#include "vlmamba/io/safetensors.hpp"

namespace vlmamba {

inline constexpr const char* kSafetensorsIndexName = "model.safetensors.index.json";
inline constexpr const char* kSafetensorsSingleName = "model.safetensors";

class WeightStore {
public:
    WeightStore() = default;
    // A .safetensors file; or a directory with model.safetensors.index.json (preferred) or model.safetensors.
    // Every shard is opened and validated; every name in the index must exist in its shard.
    static WeightStore open(const std::filesystem::path& file_or_dir);

    const std::filesystem::path& path() const { return path_; }
    bool sharded() const { return sharded_; }
    bool contains(std::string_view name) const { return where_.find(name) != where_.end(); }
    Tensor get(std::string_view name) const;                     // throws naming the store and tensor
    std::vector<std::string> names() const;                      // sorted
    const SafetensorsFile& file_of(std::string_view name) const; // the file (shard) that holds `name`
    const std::vector<SafetensorsFile>& files() const { return files_; }

private:
    std::filesystem::path path_;
    bool sharded_ = false;
    std::vector<SafetensorsFile> files_;
    std::map<std::string, std::size_t, std::less<>> where_;      // name -> files_ position
};

// Requests tensors by name with expected shapes. take() never throws for a missing or mis-shaped tensor: it
// records the problem and returns an undefined Tensor; finish() throws one error listing them all. Loaders made
// by scope() share the record with their parent. The store must outlive the loader.
class WeightLoader {
public:
    explicit WeightLoader(const WeightStore& store, std::string prefix = {});

    // A loader whose names get `prefix` appended to this one's (e.g. "vision_tower.").
    WeightLoader scope(std::string_view prefix) const;
    const std::string& prefix() const { return prefix_; }
    bool contains(std::string_view name) const { return store_->contains(prefix_ + std::string(name)); }

    // The stored tensor (dtype as stored) if present with shape `expected`; otherwise records and returns {}.
    Tensor take(std::string_view name, const Shape& expected);
    // As take(), converted to `dtype` (a copy unless the stored dtype already matches).
    Tensor take(std::string_view name, const Shape& expected, DType dtype);
    // As take(), but a missing tensor is not an error (optional biases); a wrong shape still is.
    Tensor take_optional(std::string_view name, const Shape& expected);

    std::vector<std::string> missing() const { return state_->missing; }
    std::vector<std::string> mismatched() const { return state_->mismatched; }
    // Stored names under this loader's prefix that no loader sharing this record has taken (sorted).
    std::vector<std::string> unused() const;
    // Throws "[weights] PATH: N missing tensors: 'a', 'b'; M shape mismatches: 'c' has shape (..), expected (..)".
    void finish() const;

private:
    struct State {
        std::vector<std::string> missing, mismatched;
        std::set<std::string, std::less<>> taken;
    };
    Tensor lookup(std::string_view name, const Shape& expected, bool required);

    const WeightStore* store_;
    std::string prefix_;
    std::shared_ptr<State> state_;
};

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {
// A shard name from an index must stay inside the checkpoint directory.
inline bool is_safe_relative(const std::filesystem::path& p) {
    if (p.empty() || p.is_absolute()) return false;
    for (const auto& part : p)
        if (part == "..") return false;
    return true;
}
}  // namespace detail

inline WeightStore WeightStore::open(const std::filesystem::path& file_or_dir) {
    namespace fs = std::filesystem;
    WeightStore s;
    s.path_ = file_or_dir;
    const std::string label = file_or_dir.string();
    std::error_code ec;
    if (!fs::exists(file_or_dir, ec)) fail("weights", label, ": no such file or directory");

    if (!fs::is_directory(file_or_dir, ec)) {
        s.files_.push_back(SafetensorsFile::open(file_or_dir));
        for (const auto& e : s.files_[0].entries()) s.where_.emplace(e.name, 0);
        return s;
    }
    const fs::path index = file_or_dir / kSafetensorsIndexName;
    if (!fs::exists(index, ec)) {
        const fs::path single = file_or_dir / kSafetensorsSingleName;
        if (!fs::exists(single, ec))
            fail("weights", label, ": expected ", kSafetensorsSingleName, " or ", kSafetensorsIndexName,
                 " in the directory, found neither");
        WeightStore one = open(single);
        one.path_ = file_or_dir;
        return one;
    }

    // Sharded: {"metadata": {...}, "weight_map": {"tensor name": "shard file", ...}}
    s.sharded_ = true;
    const std::string ilabel = index.string();
    const MmapFile text = MmapFile::open(index);
    const nlohmann::json j = detail::parse_json_strict(
        std::string_view(reinterpret_cast<const char*>(text.data()), text.size()), ilabel, "weights", "index", "key");
    if (!j.is_object()) fail("weights", ilabel, ": index is ", detail::json_kind(j), ", expected a JSON object");
    auto wm = j.find("weight_map");
    if (wm == j.end()) fail("weights", ilabel, ": index has no 'weight_map' field");
    if (!wm->is_object()) fail("weights", ilabel, ": weight_map is ", detail::json_brief(*wm), ", expected an object");
    std::map<std::string, std::size_t> shard_pos;
    for (const auto& [name, shard] : wm->items()) {
        if (!shard.is_string())
            fail("weights", ilabel, ": tensor ", detail::quote(name), " maps to ", detail::json_brief(shard),
                 ", expected a shard file name");
        const std::string& rel = shard.get_ref<const std::string&>();
        if (!detail::is_safe_relative(rel))
            fail("weights", ilabel, ": tensor ", detail::quote(name), " maps to ", detail::quote(rel),
                 ", expected a file name inside the checkpoint directory");
        auto [it, fresh] = shard_pos.emplace(rel, s.files_.size());
        if (fresh) s.files_.push_back(SafetensorsFile::open(file_or_dir / rel));
        if (!s.files_[it->second].contains(name))
            fail("weights", ilabel, ": tensor ", detail::quote(name), " is listed in ", detail::quote(rel),
                 " but ", s.files_[it->second].path().string(), " does not hold it");
        s.where_.emplace(name, it->second);
    }
    return s;
}

inline const SafetensorsFile& WeightStore::file_of(std::string_view name) const {
    auto it = where_.find(name);
    if (it == where_.end()) fail("weights", path_.string(), ": no tensor ", detail::quote(name));
    return files_[it->second];
}

inline Tensor WeightStore::get(std::string_view name) const { return file_of(name).get(name); }

inline std::vector<std::string> WeightStore::names() const {
    std::vector<std::string> out;
    out.reserve(where_.size());
    for (const auto& kv : where_) out.push_back(kv.first);
    return out;
}

inline WeightLoader::WeightLoader(const WeightStore& store, std::string prefix)
    : store_(&store), prefix_(std::move(prefix)), state_(std::make_shared<State>()) {}

inline WeightLoader WeightLoader::scope(std::string_view prefix) const {
    WeightLoader l = *this;
    l.prefix_ += prefix;
    return l;
}

inline Tensor WeightLoader::lookup(std::string_view name, const Shape& expected, bool required) {
    const std::string full = prefix_ + std::string(name);
    if (!store_->contains(full)) {
        if (required) state_->missing.push_back(full);
        return {};
    }
    state_->taken.insert(full);
    const SafetensorsEntry& e = store_->file_of(full).entry(full);
    if (e.shape != expected) {
        std::string where = store_->sharded() ? " in " + store_->file_of(full).path().filename().string() : "";
        state_->mismatched.push_back(detail::quote(full) + " has shape " + shape_str(e.shape) + ", expected " +
                                     shape_str(expected) + where);
        return {};
    }
    return store_->get(full);
}

inline Tensor WeightLoader::take(std::string_view name, const Shape& expected) {
    return lookup(name, expected, true);
}

inline Tensor WeightLoader::take(std::string_view name, const Shape& expected, DType dtype) {
    Tensor t = lookup(name, expected, true);
    return !t.defined() || t.dtype() == dtype ? t : t.to(dtype);
}

inline Tensor WeightLoader::take_optional(std::string_view name, const Shape& expected) {
    return lookup(name, expected, false);
}

inline std::vector<std::string> WeightLoader::unused() const {
    std::vector<std::string> out;
    for (const auto& n : store_->names())
        if (n.compare(0, prefix_.size(), prefix_) == 0 && !state_->taken.count(n)) out.push_back(n);
    return out;
}

inline void WeightLoader::finish() const {
    const auto& m = state_->missing;
    const auto& s = state_->mismatched;
    if (m.empty() && s.empty()) return;
    std::string msg = store_->path().string() + ": ";
    if (!m.empty()) {
        msg += std::to_string(m.size()) + (m.size() == 1 ? " missing tensor: " : " missing tensors: ");
        for (std::size_t i = 0; i < m.size(); ++i) msg += (i ? ", " : "") + detail::quote(m[i]);
    }
    if (!s.empty()) {
        if (!m.empty()) msg += "; ";
        msg += std::to_string(s.size()) + (s.size() == 1 ? " shape mismatch: " : " shape mismatches: ");
        for (std::size_t i = 0; i < s.size(); ++i) msg += (i ? "; " : "") + s[i];
    }
    fail("weights", msg);
}

}  // namespace vlmamba
