// WeightStore: name -> Tensor over one weights file, a directory, or a sharded checkpoint. A file is safetensors or a
// PyTorch checkpoint (torch.save: .bin, .pt, .pth; read safely by pytorch_checkpoint.hpp). A directory holds, in this
// order of preference, model.safetensors.index.json (sharded, as in transformers), model.safetensors,
// pytorch_model.bin.index.json (sharded) or pytorch_model.bin. WeightLoader: strict model loading that collects
// every missing tensor and every shape mismatch, then reports them all in one error.
//
//   auto store = WeightStore::open(dir);
//   WeightLoader root(store);
//   WeightLoader lm = root.scope("language_model.");
//   Tensor w = lm.take("backbone.embeddings.weight", {V, D});   // (V, D); undefined if missing or mis-shaped
//   ...
//   root.finish();                                               // throws one Error listing every problem
#pragma once
#include <sys/mman.h>

#include <cstdint>
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
#include "vlmamba/io/pytorch_checkpoint.hpp"
#include "vlmamba/io/safetensors.hpp"

namespace vlmamba {

inline constexpr const char* kSafetensorsIndexName = "model.safetensors.index.json";
inline constexpr const char* kSafetensorsSingleName = "model.safetensors";
inline constexpr const char* kPytorchIndexName = "pytorch_model.bin.index.json";
inline constexpr const char* kPytorchSingleName = "pytorch_model.bin";

enum class WeightFormat { Safetensors, Pytorch };

// Where a store's tensors live once taken. By default each is copied out of the mapped file into ordinary memory
// (huge pages where the kernel gives them): reading it is then as fast as memory, and a file changed or truncated
// later does not matter. While a MappedWeights lives on this thread, tensors stay zero-copy views of the map:
// less memory, pages read from the file on first use (vlmamba --mmap).
class MappedWeights {
public:
    explicit MappedWeights(bool on = true);
    ~MappedWeights();
    MappedWeights(const MappedWeights&) = delete;
    MappedWeights& operator=(const MappedWeights&) = delete;
    static bool active();

private:
    bool prev_;
};

// What a store knows of one tensor without reading it.
struct WeightInfo {
    DType dtype = DType::F32;
    Shape shape;
    std::uint64_t nbytes = 0;
    std::filesystem::path file;  // the file (shard) that holds it
};

class WeightStore {
public:
    WeightStore() = default;
    // A .safetensors file or a PyTorch checkpoint (.bin, .pt, .pth; other names are sniffed); or a directory (see
    // above). Every file is opened and validated; every name in an index must exist in its shard.
    static WeightStore open(const std::filesystem::path& file_or_dir);

    const std::filesystem::path& path() const { return path_; }
    bool sharded() const { return sharded_; }
    WeightFormat format() const { return format_; }
    bool contains(std::string_view name) const { return where_.find(name) != where_.end(); }
    // The tensor in ordinary memory, or a view of the map under MappedWeights; throws naming the store and tensor.
    Tensor get(std::string_view name) const;
    Tensor view(std::string_view name) const;                    // always the view of the mapped file, as stored
    WeightInfo info(std::string_view name) const;                // throws naming the store and tensor
    std::vector<std::string> names() const;                      // sorted
    // Safetensors stores: the file (shard) that holds `name`, and all files (empty for PyTorch stores).
    const SafetensorsFile& file_of(std::string_view name) const;
    const std::vector<SafetensorsFile>& files() const { return files_; }
    // PyTorch stores: the checkpoints (shards), whose leaves() list their non-tensor values.
    const std::vector<PytorchCheckpoint>& checkpoints() const { return checkpoints_; }
    std::size_t n_files() const { return files_.size() + checkpoints_.size(); }

private:
    void add_file(const std::filesystem::path& file);
    bool file_has(std::size_t i, std::string_view name) const;
    const std::filesystem::path& file_path(std::size_t i) const;

    std::filesystem::path path_;
    bool sharded_ = false;
    WeightFormat format_ = WeightFormat::Safetensors;
    std::vector<SafetensorsFile> files_;
    std::vector<PytorchCheckpoint> checkpoints_;
    std::map<std::string, std::size_t, std::less<>> where_;      // name -> files_ or checkpoints_ position
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

namespace detail {
inline bool is_pytorch_file(const std::filesystem::path& p) {
    const std::string ext = p.extension().string();
    if (ext == ".safetensors") return false;
    if (ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".ckpt") return true;
    return looks_like_pytorch_checkpoint(p);
}
}  // namespace detail

inline void WeightStore::add_file(const std::filesystem::path& file) {
    // One store holds one format: a PyTorch shard in a safetensors index (or the reverse) is refused.
    const WeightFormat f = detail::is_pytorch_file(file) ? WeightFormat::Pytorch : WeightFormat::Safetensors;
    if (n_files() > 0 && f != format_)
        fail("weights", path_.string(), ": ", file.string(), " is ",
             f == WeightFormat::Pytorch ? "a PyTorch checkpoint" : "a safetensors file", ", but the other files are ",
             format_ == WeightFormat::Pytorch ? "PyTorch checkpoints" : "safetensors files");
    format_ = f;
    if (f == WeightFormat::Pytorch)
        checkpoints_.push_back(PytorchCheckpoint::open(file));
    else
        files_.push_back(SafetensorsFile::open(file));
}

inline bool WeightStore::file_has(std::size_t i, std::string_view name) const {
    return format_ == WeightFormat::Pytorch ? checkpoints_[i].contains(name) : files_[i].contains(name);
}

inline const std::filesystem::path& WeightStore::file_path(std::size_t i) const {
    return format_ == WeightFormat::Pytorch ? checkpoints_[i].path() : files_[i].path();
}

inline WeightStore WeightStore::open(const std::filesystem::path& file_or_dir) {
    namespace fs = std::filesystem;
    WeightStore s;
    s.path_ = file_or_dir;
    const std::string label = file_or_dir.string();
    std::error_code ec;
    if (!fs::exists(file_or_dir, ec)) fail("weights", label, ": no such file or directory");

    if (!fs::is_directory(file_or_dir, ec)) {
        s.add_file(file_or_dir);
        if (s.format_ == WeightFormat::Pytorch)
            for (const auto& e : s.checkpoints_[0].entries()) s.where_.emplace(e.name, 0);
        else
            for (const auto& e : s.files_[0].entries()) s.where_.emplace(e.name, 0);
        return s;
    }
    fs::path index;
    for (const char* name : {kSafetensorsIndexName, kSafetensorsSingleName, kPytorchIndexName, kPytorchSingleName}) {
        if (!fs::exists(file_or_dir / name, ec)) continue;
        if (std::string_view(name).ends_with(".index.json")) {
            index = file_or_dir / name;
            break;
        }
        WeightStore one = open(file_or_dir / name);
        one.path_ = file_or_dir;
        return one;
    }
    if (index.empty())
        fail("weights", label, ": expected ", kSafetensorsSingleName, ", ", kSafetensorsIndexName, ", ",
             kPytorchSingleName, " or ", kPytorchIndexName, " in the directory, found none");

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
        auto [it, fresh] = shard_pos.emplace(rel, s.n_files());
        if (fresh) s.add_file(file_or_dir / rel);
        if (!s.file_has(it->second, name))
            fail("weights", ilabel, ": tensor ", detail::quote(name), " is listed in ", detail::quote(rel),
                 " but ", s.file_path(it->second).string(), " does not hold it");
        s.where_.emplace(name, it->second);
    }
    return s;
}

inline const SafetensorsFile& WeightStore::file_of(std::string_view name) const {
    auto it = where_.find(name);
    if (it == where_.end()) fail("weights", path_.string(), ": no tensor ", detail::quote(name));
    if (format_ != WeightFormat::Safetensors)
        fail("weights", path_.string(), ": tensor ", detail::quote(name),
             " is in a PyTorch checkpoint, not a safetensors file");
    return files_[it->second];
}

inline WeightInfo WeightStore::info(std::string_view name) const {
    auto it = where_.find(name);
    if (it == where_.end()) fail("weights", path_.string(), ": no tensor ", detail::quote(name));
    if (format_ == WeightFormat::Pytorch) {
        const PytorchCheckpoint& c = checkpoints_[it->second];
        const PytorchEntry& e = c.entry(name);
        return {e.dtype, e.shape, e.nbytes(), c.path()};
    }
    const SafetensorsFile& f = files_[it->second];
    const SafetensorsEntry& e = f.entry(name);
    return {e.dtype, e.shape, e.nbytes(), f.path()};
}

namespace detail {
inline bool& mapped_weights_flag() {
    thread_local bool on = false;
    return on;
}

// A contiguous copy of t in ordinary memory; large buffers are offered to transparent huge pages before the copy
// touches them (best effort: madvise errors are ignored).
inline Tensor in_memory(const Tensor& t) {
    Tensor c = Tensor::empty(t.shape(), t.dtype());
    constexpr std::uintptr_t page = 4096, huge = std::uintptr_t(2) << 20;
    if (c.nbytes() >= huge) {
        const auto begin = (reinterpret_cast<std::uintptr_t>(c.raw()) + page - 1) / page * page;
        const auto end = (reinterpret_cast<std::uintptr_t>(c.raw()) + c.nbytes()) / page * page;
        if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
    }
    copy_into(c, t);
    return c;
}
}  // namespace detail

inline MappedWeights::MappedWeights(bool on) : prev_(detail::mapped_weights_flag()) {
    detail::mapped_weights_flag() = on;
}
inline MappedWeights::~MappedWeights() { detail::mapped_weights_flag() = prev_; }
inline bool MappedWeights::active() { return detail::mapped_weights_flag(); }

inline Tensor WeightStore::view(std::string_view name) const {
    auto it = where_.find(name);
    if (it == where_.end()) fail("weights", path_.string(), ": no tensor ", detail::quote(name));
    return format_ == WeightFormat::Pytorch ? checkpoints_[it->second].get(name) : files_[it->second].get(name);
}

inline Tensor WeightStore::get(std::string_view name) const {
    const Tensor t = view(name);
    return MappedWeights::active() ? t : detail::in_memory(t);
}

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
    const WeightInfo e = store_->info(full);
    if (e.shape != expected) {
        std::string where = store_->sharded() ? " in " + e.file.filename().string() : "";
        state_->mismatched.push_back(detail::quote(full) + " has shape " + shape_str(e.shape) + ", expected " +
                                     shape_str(expected) + where);
        return {};
    }
    return store_->view(full);
}

inline Tensor WeightLoader::take(std::string_view name, const Shape& expected) {
    const Tensor t = lookup(name, expected, true);
    return !t.defined() || MappedWeights::active() ? t : detail::in_memory(t);
}

inline Tensor WeightLoader::take(std::string_view name, const Shape& expected, DType dtype) {
    const Tensor t = lookup(name, expected, true);
    if (!t.defined()) return t;
    if (t.dtype() != dtype) return t.to(dtype);  // a conversion is a copy in ordinary memory anyway
    return MappedWeights::active() ? t : detail::in_memory(t);
}

inline Tensor WeightLoader::take_optional(std::string_view name, const Shape& expected) {
    const Tensor t = lookup(name, expected, false);
    return !t.defined() || MappedWeights::active() ? t : detail::in_memory(t);
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
