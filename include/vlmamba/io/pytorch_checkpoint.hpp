// PyTorch checkpoints (torch.save files: pytorch_model.bin, *.pt, *.pth) read safely, without Python (SPEC §9).
//
// Formats: the zip format of torch >= 1.6 (ARCHIVE/data.pkl, ARCHIVE/data/<key>, ARCHIVE/version, and torch 2's
// byteorder, .format_version, .storage_alignment and .data/serialization_id; ARCHIVE is any name; ZIP64 too), and
// the legacy format (magic number, protocol 1001, sys info, the object pickle, the storage keys, the storages).
// The pickle is read by the restricted unpickler of pickle.hpp with exactly these globals: collections.OrderedDict,
// torch._utils._rebuild_tensor_v2, _rebuild_parameter, _rebuild_parameter_with_state, and the typed storage classes
// (torch.FloatStorage, ..., torch.storage.UntypedStorage). Anything else is refused by name; nothing is executed.
//
// Tensors: F32, F16, BF16, I64, I32, U8, BOOL. Storage offset, sizes and strides are checked against the storage's
// length when the file opens; get() returns a view into the mapped file when the tensor is contiguous and aligned
// (two names on one storage then share its memory, as a tied lm_head does), and a contiguous copy otherwise. The
// top level must be a dict; nested dicts (and lists holding tensors or dicts) flatten to dotted names
// ({"model": {"llm": {"w": t}}} -> "model.llm.w"); other leaves (ints, floats, strings, ...) are kept in leaves().
// Every error is one line: "[pytorch] FILE: reason" (or "[pickle] FILE (data.pkl): reason at byte N", "[zip] ...").
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "vlmamba/core/dtype.hpp"
#include "vlmamba/core/error.hpp"
#include "vlmamba/core/shape.hpp"
#include "vlmamba/core/tensor.hpp"
#include "vlmamba/io/mmap_file.hpp"
#include "vlmamba/io/pickle.hpp"
#include "vlmamba/io/safetensors.hpp"
#include "vlmamba/io/zip.hpp"

namespace vlmamba {

// One tensor of a checkpoint. offset and strides are in elements of the storage.
struct PytorchEntry {
    std::string name;
    DType dtype = DType::F32;
    Shape shape, strides;
    std::uint64_t offset = 0;
    std::string storage;  // the storage's key ("data/3" in the archive)
    std::uint64_t nbytes() const { return std::uint64_t(shape_numel(shape)) * dtype_size(dtype); }
};

// A value of the checkpoint that is not a tensor ("step" = 1000, "optimizer.param_groups.0.lr" = 0.001).
struct PytorchLeaf {
    std::string name;
    std::string value;  // Python-like rendering
};

// The limits a checkpoint's structure must keep (besides the unpickler's own).
inline constexpr std::size_t kPytorchMaxNames = std::size_t(1) << 20;  // tensors plus leaves
inline constexpr int kPytorchMaxNesting = 64;

class PytorchCheckpoint {
public:
    enum class Format { Zip, Legacy };

    PytorchCheckpoint() = default;
    // Maps and validates the whole file; throws vlmamba::Error naming the file and the reason.
    static PytorchCheckpoint open(const std::filesystem::path& path);

    const std::filesystem::path& path() const;
    Format format() const;
    const std::string& archive() const;                       // the zip's top folder ("" for legacy)
    std::vector<std::string> names() const;                    // sorted
    bool contains(std::string_view name) const;
    const PytorchEntry& entry(std::string_view name) const;    // throws when missing
    const std::vector<PytorchEntry>& entries() const;          // sorted by name
    Tensor get(std::string_view name) const;                   // view, or contiguous copy (see above)
    const std::vector<PytorchLeaf>& leaves() const;            // in file order

private:
    struct Storage {
        std::string key;
        const std::byte* data = nullptr;
        std::uint64_t bytes = 0;
    };
    struct State {
        MmapFile file;
        Format format = Format::Zip;
        std::string archive;
        std::vector<Storage> storages;
        std::vector<PytorchEntry> entries;
        std::vector<std::size_t> entry_storage;                // entries position -> storages position
        std::map<std::string, std::size_t, std::less<>> index; // name -> entries position
        std::vector<PytorchLeaf> leaves;
    };
    const State& state() const;
    std::shared_ptr<const State> state_;

    friend struct PytorchReader;
};

// True when the file starts like a torch.save file (a zip, or a pickle): for callers that sniff a file's format.
bool looks_like_pytorch_checkpoint(const std::filesystem::path& path);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

// Reads one checkpoint into a State (a friend of PytorchCheckpoint).
struct PytorchReader {
    using Value = pickle::Value;
    using Kind = pickle::Kind;
    using State = PytorchCheckpoint::State;

    enum Tag { kStorageRef = 1, kTensor = 2 };
    struct StorageRef {           // one persistent id
        std::size_t storage = 0;  // State::storages position
        std::string cls;          // "torch.FloatStorage"
        bool supported = false;
        DType dtype = DType::F32;
        std::uint64_t numel = 0;
    };
    struct RawTensor {
        std::size_t ref = 0;
        std::uint64_t offset = 0;
        Shape shape, strides;
    };

    PytorchReader(State& state, std::string file_label) : st(state), label(std::move(file_label)) {}

    State& st;
    std::string label;
    pickle::Arena arena;
    std::vector<StorageRef> refs;
    std::vector<RawTensor> tensors;
    std::map<std::string, std::size_t, std::less<>> storage_pos;  // key -> storages position
    bool legacy = false;
    std::size_t visits = 0;

    [[noreturn]] static void refuse(const std::string& why) { throw pickle::Refused(why); }

    template <class... A>
    [[noreturn]] void bad(A&&... parts) const {
        fail("pytorch", label, ": ", std::forward<A>(parts)...);
    }

    // Storage classes: the typed ones torch writes, with our dtype where we support it.
    static bool storage_class(std::string_view name, DType& dt, bool& supported) {
        static const std::pair<std::string_view, int> table[] = {
            {"FloatStorage", int(DType::F32)},   {"HalfStorage", int(DType::F16)},
            {"BFloat16Storage", int(DType::BF16)}, {"LongStorage", int(DType::I64)},
            {"IntStorage", int(DType::I32)},     {"ByteStorage", int(DType::U8)},
            {"BoolStorage", int(DType::BOOL)},   {"DoubleStorage", -1},
            {"ShortStorage", -1},                {"CharStorage", -1},
            {"ComplexFloatStorage", -1},         {"ComplexDoubleStorage", -1},
            {"QInt8Storage", -1},                {"QUInt8Storage", -1},
            {"QInt32Storage", -1},               {"Float8_e4m3fnStorage", -1},
            {"Float8_e5m2Storage", -1},
        };
        for (const auto& [n, d] : table)
            if (n == name) {
                supported = d >= 0;
                dt = supported ? DType(d) : DType::U8;
                return true;
            }
        return false;
    }

    pickle::Hooks hooks() {
        pickle::Hooks h;
        h.allow_global = [](std::string_view module, std::string_view name) {
            if (module == "collections") return name == "OrderedDict";
            if (module == "torch._utils")
                return name == "_rebuild_tensor_v2" || name == "_rebuild_parameter" ||
                       name == "_rebuild_parameter_with_state";
            if (module == "torch.storage") return name == "UntypedStorage";
            DType dt;
            bool sup;
            return module == "torch" && storage_class(name, dt, sup);
        };
        h.reduce = [this](pickle::Arena& a, const Value& f, const Value& args) { return reduce(a, f, args); };
        h.persistent_load = [this](pickle::Arena& a, const Value& pid) { return persistent_load(a, pid); };
        h.build = [](const Value& obj, const Value&) {
            // OrderedDict state (the _metadata of a state dict) and parameter state: ignored.
            if (obj.kind != Kind::Dict && !(obj.kind == Kind::Object && obj.tag == kTensor))
                refuse(std::string("BUILD of ") + pickle::kind_name(obj) + " is not supported");
        };
        return h;
    }

    static std::int64_t as_int(const Value& v, const char* what) {
        if (v.kind != Kind::Int) refuse(std::string(what) + " is " + pickle::repr(v, 40) + ", expected an int");
        return v.integer;
    }

    static Shape int_tuple(const Value& v, const char* what) {
        if (v.kind != Kind::Tuple && v.kind != Kind::List)
            refuse(std::string(what) + " is " + pickle::repr(v, 40) + ", expected a tuple of ints");
        Shape s;
        for (const Value* x : v.items) s.push_back(as_int(*x, what));
        return s;
    }

    Value* reduce(pickle::Arena& a, const Value& f, const Value& args) {
        const auto& x = args.items;
        if (f.text == "collections.OrderedDict") {
            if (!x.empty()) refuse("collections.OrderedDict called with arguments, expected none");
            return a.make(Kind::Dict);
        }
        if (f.text == "torch._utils._rebuild_tensor_v2") {
            if (x.size() != 6 && x.size() != 7)
                refuse("torch._utils._rebuild_tensor_v2 called with " + std::to_string(x.size()) +
                       " arguments, expected (storage, offset, size, stride, requires_grad, hooks[, metadata])");
            if (x[0]->kind != Kind::Object || x[0]->tag != kStorageRef)
                refuse("torch._utils._rebuild_tensor_v2 on " + pickle::repr(*x[0], 40) + ", expected a storage");
            RawTensor t;
            t.ref = std::size_t(x[0]->integer);
            const std::int64_t off = as_int(*x[1], "a tensor's storage offset");
            t.shape = int_tuple(*x[2], "a tensor's size");
            t.strides = int_tuple(*x[3], "a tensor's stride");
            if (off < 0) refuse("a tensor has a negative storage offset " + std::to_string(off));
            t.offset = std::uint64_t(off);
            Value* v = a.make(Kind::Object);
            v->tag = kTensor;
            v->integer = std::int64_t(tensors.size());
            tensors.push_back(std::move(t));
            return v;
        }
        if (f.text == "torch._utils._rebuild_parameter" || f.text == "torch._utils._rebuild_parameter_with_state") {
            if (x.empty() || x[0]->kind != Kind::Object || x[0]->tag != kTensor)
                refuse(f.text + " called without a tensor as its first argument");
            return x[0];
        }
        refuse("refused call of " + f.text);
    }

    std::size_t storage_for(const std::string& key) {
        auto it = storage_pos.find(key);
        if (it != storage_pos.end()) return it->second;
        PytorchCheckpoint::Storage s;
        s.key = key;
        st.storages.push_back(std::move(s));
        storage_pos.emplace(key, st.storages.size() - 1);
        return st.storages.size() - 1;
    }

    Value* persistent_load(pickle::Arena& a, const Value& pid) {
        // ("storage", class, key, location, numel) or, legacy, (..., view_metadata).
        const auto& x = pid.items;
        if (pid.kind != Kind::Tuple || x.size() < 5 || x.size() > 6 || x[0]->kind != Kind::Str ||
            x[0]->text != "storage")
            refuse("persistent id " + pickle::repr(pid, 60) +
                   " is not a storage (\"storage\", class, key, location, numel)");
        if (x[1]->kind != Kind::Global) refuse("storage class " + pickle::repr(*x[1], 40) + " is not a class");
        StorageRef r;
        r.cls = x[1]->text;
        const std::string_view cls = r.cls;
        if (cls == "torch.storage.UntypedStorage") {
            r.dtype = DType::U8;
            r.supported = true;
        } else if (cls.substr(0, 6) != "torch." || !storage_class(cls.substr(6), r.dtype, r.supported)) {
            refuse("storage class " + r.cls + " is not a storage class");
        }
        if (x[2]->kind != Kind::Str) refuse("storage key " + pickle::repr(*x[2], 40) + " is not a string");
        if (x[2]->text.empty() || x[2]->text.size() > 64 ||
            x[2]->text.find_first_of("/\\") != std::string::npos)
            refuse("storage key " + pickle::repr(*x[2], 40) + " is not a plain name");
        if (x[3]->kind != Kind::Str) refuse("storage location " + pickle::repr(*x[3], 40) + " is not a string");
        const std::int64_t n = as_int(*x[4], "a storage's element count");
        if (n < 0) refuse("storage '" + x[2]->text + "' has a negative element count");
        if (x.size() == 6 && x[5]->kind != Kind::None)
            refuse("storage '" + x[2]->text + "' is a view of another storage (view_metadata), not supported");
        if (x.size() == 6 && !legacy) refuse("a legacy (6-field) storage id inside a zip checkpoint");
        r.numel = std::uint64_t(n);
        r.storage = storage_for(x[2]->text);
        Value* v = a.make(Kind::Object);
        v->tag = kStorageRef;
        v->integer = std::int64_t(refs.size());
        refs.push_back(std::move(r));
        return v;
    }

    // Checks a tensor against its storage and records it under `name`.
    void add_tensor(const std::string& name, const RawTensor& t) {
        const StorageRef& r = refs[t.ref];
        const auto& s = st.storages[r.storage];
        const std::string q = detail::quote(name);
        if (!r.supported)
            bad("tensor ", q, " has storage class ", r.cls,
                ", an unsupported dtype (expected F32, F16, BF16, I64, I32, U8 or BOOL)");
        if (t.shape.size() != t.strides.size())
            bad("tensor ", q, " has size ", shape_str(t.shape), " but stride ", shape_str(t.strides));
        if (t.shape.size() > 16) bad("tensor ", q, " has ", t.shape.size(), " dimensions, more than 16");
        const std::uint64_t es = dtype_size(r.dtype);
        // The declared element count must fit the stored bytes.
        if (r.numel > s.bytes / es)
            bad("tensor ", q, ": storage '", s.key, "' declares ", r.numel, " elements of ", es, " bytes but holds ",
                s.bytes, " bytes");
        constexpr auto kMax = std::uint64_t(std::numeric_limits<std::int64_t>::max());
        std::uint64_t numel = 1, last = t.offset;  // last: the highest element index read
        for (std::size_t d = 0; d < t.shape.size(); ++d) {
            if (t.shape[d] < 0) bad("tensor ", q, " has a negative size ", shape_str(t.shape));
            if (t.strides[d] < 0) bad("tensor ", q, " has a negative stride ", shape_str(t.strides));
            if (!detail::mul_within(numel, std::uint64_t(t.shape[d]), kMax, numel))
                bad("tensor ", q, " has size ", shape_str(t.shape), " whose element count overflows 64 bits");
        }
        if (numel > 0) {
            for (std::size_t d = 0; d < t.shape.size(); ++d) {
                std::uint64_t reach = 0;
                if (!detail::mul_within(std::uint64_t(t.shape[d] - 1), std::uint64_t(t.strides[d]), kMax, reach) ||
                    reach > kMax - last)
                    bad("tensor ", q, " has size ", shape_str(t.shape), " and stride ", shape_str(t.strides),
                        " that overflow 64 bits");
                last += reach;
            }
            if (last >= r.numel)
                bad("tensor ", q, " with offset ", t.offset, ", size ", shape_str(t.shape), " and stride ",
                    shape_str(t.strides), " reads element ", last, " of storage '", s.key, "', which holds ", r.numel,
                    " elements");
        }
        if (st.index.count(name)) bad("duplicate tensor name ", q);
        PytorchEntry e{name, r.dtype, t.shape, t.strides, t.offset, s.key};
        st.index.emplace(name, st.entries.size());
        st.entries.push_back(std::move(e));
        st.entry_storage.push_back(r.storage);
    }

    void add_leaf(const std::string& name, const Value& v) {
        st.leaves.push_back({name, pickle::repr(v)});
    }

    static bool has_structure(const Value& v) {
        for (const Value* c : v.items)
            if (c->kind == Kind::Object || c->kind == Kind::Dict || c->kind == Kind::List || c->kind == Kind::Tuple)
                return true;
        return false;
    }

    // The names the tree expands to, counted per distinct node before anything is expanded: shared references
    // (memo GETs) let a pickle of a few hundred bytes expand exponentially, and walking that up to the cap would
    // already take seconds. Saturates just past the cap.
    std::size_t expanded_size(const Value& v, std::unordered_map<const Value*, std::size_t>& memo, int depth) {
        if (depth > kPytorchMaxNesting) bad("the checkpoint nests deeper than ", kPytorchMaxNesting, " levels");
        if (const auto it = memo.find(&v); it != memo.end()) return it->second;
        std::size_t n = 1;
        if (v.kind == Kind::Dict || v.kind == Kind::List || v.kind == Kind::Tuple)
            for (const Value* c : v.items) n = std::min(kPytorchMaxNames + 1, n + expanded_size(*c, memo, depth + 1));
        memo.emplace(&v, n);
        return n;
    }

    void count_visit() {
        if (++visits > kPytorchMaxNames)
            bad("the checkpoint expands to more than ", kPytorchMaxNames, " names (shared references repeated?)");
    }

    void flatten(const Value& v, const std::string& name, int depth) {
        count_visit();
        if (depth > kPytorchMaxNesting) bad("the checkpoint nests deeper than ", kPytorchMaxNesting, " levels");
        const std::string prefix = name.empty() ? "" : name + ".";
        switch (v.kind) {
            case Kind::Object:
                if (v.tag == kTensor) return add_tensor(name, tensors[std::size_t(v.integer)]);
                return add_leaf(name, v);  // a bare storage
            case Kind::Dict:
                if (v.items.empty() && !name.empty()) return add_leaf(name, v);
                for (std::size_t i = 0; i + 1 < v.items.size(); i += 2) {
                    const Value& k = *v.items[i];
                    std::string key;
                    if (k.kind == Kind::Str) key = k.text;
                    else if (k.kind == Kind::Int) key = std::to_string(k.integer);
                    else bad("the dict at ", name.empty() ? "the top level" : detail::quote(name), " has key ",
                             pickle::repr(k, 40), ", expected strings or ints");
                    flatten(*v.items[i + 1], prefix + key, depth + 1);
                }
                return;
            case Kind::List:
            case Kind::Tuple:
                if (!has_structure(v)) return add_leaf(name, v);
                for (std::size_t i = 0; i < v.items.size(); ++i)
                    flatten(*v.items[i], prefix + std::to_string(i), depth + 1);
                return;
            default: return add_leaf(name, v);
        }
    }

    void finish(const Value& root) {
        if (root.kind != Kind::Dict)
            bad("the top level is ", pickle::kind_name(root), " (", pickle::repr(root, 40),
                "), expected a dict of tensors (a state dict)");
        std::unordered_map<const Value*, std::size_t> memo;
        if (expanded_size(root, memo, 0) > kPytorchMaxNames)
            bad("the checkpoint expands to more than ", kPytorchMaxNames, " names (shared references repeated?)");
        flatten(root, "", 0);
        std::vector<std::size_t> order(st.entries.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::sort(order.begin(), order.end(),
                  [&](std::size_t a, std::size_t b) { return st.entries[a].name < st.entries[b].name; });
        std::vector<PytorchEntry> entries;
        std::vector<std::size_t> where;
        for (std::size_t i : order) {
            entries.push_back(std::move(st.entries[i]));
            where.push_back(st.entry_storage[i]);
        }
        st.entries = std::move(entries);
        st.entry_storage = std::move(where);
        st.index.clear();
        for (std::size_t i = 0; i < st.entries.size(); ++i) st.index.emplace(st.entries[i].name, i);
    }

    // The zip format.
    void read_zip() {
        const std::byte* base = st.file.data();
        const std::vector<ZipEntry> dir = read_zip_directory(base, st.file.size(), label);
        const ZipEntry* pkl = nullptr;
        std::map<std::string_view, const ZipEntry*> by_name;
        for (const auto& z : dir) {
            by_name.emplace(z.name, &z);
            const auto slash = z.name.find('/');
            if (slash != std::string::npos && z.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
                if (pkl) bad("two pickles in one archive: '", pkl->name, "' and '", z.name, "'");
                pkl = &z;
            }
        }
        if (!pkl) bad("no ARCHIVE/data.pkl entry: a zip, but not a torch.save checkpoint");
        st.archive = pkl->name.substr(0, pkl->name.find('/'));
        const std::string root = st.archive + "/";
        if (auto it = by_name.find(root + "byteorder"); it != by_name.end()) {
            std::string_view order(reinterpret_cast<const char*>(base + it->second->offset),
                                   std::size_t(it->second->size));
            while (!order.empty() && (order.back() == '\n' || order.back() == '\r')) order.remove_suffix(1);
            if (order != "little")
                bad("byteorder is ", detail::quote(order), "; only little-endian checkpoints are supported");
        }
        const std::byte* pdata = base + pkl->offset;
        if (crc32(pdata, std::size_t(pkl->size)) != pkl->crc32)
            bad("'", pkl->name, "' fails its CRC-32 check (corrupt archive)");
        const std::string plabel = label + " (" + pkl->name + ")";
        const Value* obj = pickle::unpickle(arena, pdata, std::size_t(pkl->size), plabel, hooks());
        // Each storage the pickle named is the entry ARCHIVE/data/<key>.
        for (auto& s : st.storages) {
            auto it = by_name.find(root + "data/" + s.key);
            if (it == by_name.end())
                bad("storage '", s.key, "' has no entry '", root, "data/", s.key, "' in the archive");
            s.data = base + it->second->offset;
            s.bytes = it->second->size;
        }
        finish(*obj);
    }

    // The legacy format: five pickles, then the storages in the order of the key list.
    void read_legacy() {
        legacy = true;
        st.format = PytorchCheckpoint::Format::Legacy;
        const std::byte* p = st.file.data();
        const std::size_t size = st.file.size();
        std::size_t pos = 0, used = 0;
        pickle::Hooks none;  // the header pickles hold plain values only
        auto next = [&](const pickle::Hooks& h, const char* what) {
            const Value* v = pickle::unpickle(arena, p + pos, size - pos, label + " (" + what + ")", h, &used);
            pos += used;
            return v;
        };
        const Value* magic = next(none, "magic number");
        static const unsigned char kMagic[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
        if (magic->kind != Kind::BigInt || magic->text.size() != sizeof kMagic ||
            std::memcmp(magic->text.data(), kMagic, sizeof kMagic) != 0)
            bad("a pickle, but not a torch.save checkpoint: it does not start with torch's magic number");
        const Value* proto = next(none, "protocol version");
        if (proto->kind != Kind::Int || proto->integer != 1001)
            bad("legacy protocol version ", pickle::repr(*proto, 40), ", expected 1001");
        const Value* sys = next(none, "sys info");
        if (sys->kind != Kind::Dict) bad("sys info is ", pickle::kind_name(*sys), ", expected a dict");
        for (std::size_t i = 0; i + 1 < sys->items.size(); i += 2)
            if (sys->items[i]->kind == Kind::Str && sys->items[i]->text == "little_endian" &&
                !(sys->items[i + 1]->kind == Kind::Bool && sys->items[i + 1]->boolean))
                bad("the checkpoint was written big-endian; only little-endian checkpoints are supported");
        const Value* obj = next(hooks(), "object pickle");
        const Value* keys = next(none, "storage keys");
        if (keys->kind != Kind::List) bad("the storage key list is ", pickle::kind_name(*keys), ", expected a list");
        std::vector<bool> done(st.storages.size(), false);
        for (const Value* k : keys->items) {
            if (k->kind != Kind::Str) bad("storage key ", pickle::repr(*k, 40), " is not a string");
            auto it = storage_pos.find(k->text);
            if (it == storage_pos.end()) bad("storage key ", detail::quote(k->text), " is not used by the pickle");
            if (done[it->second]) bad("storage key ", detail::quote(k->text), " is listed twice");
            done[it->second] = true;
            // Element size: from the first persistent id naming this storage.
            std::uint64_t es = 1;
            for (const auto& r : refs)
                if (r.storage == it->second) {
                    es = dtype_size(r.dtype);
                    break;
                }
            if (size - pos < 8) bad("storage ", detail::quote(k->text), " is truncated: no element count");
            const std::uint64_t n = detail::le(p + pos, 8);
            pos += 8;
            if (n > (size - pos) / es)
                bad("storage ", detail::quote(k->text), " declares ", n, " elements of ", es, " bytes, but only ",
                    size - pos, " bytes remain (truncated?)");
            auto& s = st.storages[it->second];
            s.data = p + pos;
            s.bytes = n * es;
            pos += std::size_t(s.bytes);
        }
        for (std::size_t i = 0; i < done.size(); ++i)
            if (!done[i]) bad("storage ", detail::quote(st.storages[i].key), " is missing from the storage key list");
        if (pos != size) bad(size - pos, " unexpected bytes after the last storage");
        finish(*obj);
    }
};

inline bool looks_like_pytorch_checkpoint(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    unsigned char b[4] = {};
    in.read(reinterpret_cast<char*>(b), 4);
    if (in.gcount() < 2) return false;
    return (b[0] == 'P' && b[1] == 'K') || (b[0] == 0x80 && b[1] >= 2 && b[1] <= 5);
}

inline PytorchCheckpoint PytorchCheckpoint::open(const std::filesystem::path& path) {
    auto st = std::make_shared<State>();
    st->file = MmapFile::open(path);
    PytorchReader r(*st, path.string());
    const std::byte* p = st->file.data();
    const std::size_t n = st->file.size();
    const auto b = [&](std::size_t i) { return std::to_integer<unsigned>(p[i]); };
    if (n >= 4 && b(0) == 'P' && b(1) == 'K' && ((b(2) == 3 && b(3) == 4) || (b(2) == 5 && b(3) == 6)))
        r.read_zip();
    else if (n >= 2 && b(0) == 0x80 && b(1) >= 2 && b(1) <= 5)
        r.read_legacy();
    else
        r.bad("not a PyTorch checkpoint: neither a zip archive nor a pickle (",
              n == 0 ? std::string("empty file") : "starts with byte " + std::to_string(n ? b(0) : 0), ")");
    PytorchCheckpoint c;
    c.state_ = std::move(st);
    return c;
}

inline const PytorchCheckpoint::State& PytorchCheckpoint::state() const {
    VLM_CHECK(state_, "pytorch", "expected an opened checkpoint, got a default-constructed PytorchCheckpoint");
    return *state_;
}

inline const std::filesystem::path& PytorchCheckpoint::path() const { return state().file.path(); }
inline PytorchCheckpoint::Format PytorchCheckpoint::format() const { return state().format; }
inline const std::string& PytorchCheckpoint::archive() const { return state().archive; }
inline const std::vector<PytorchEntry>& PytorchCheckpoint::entries() const { return state().entries; }
inline const std::vector<PytorchLeaf>& PytorchCheckpoint::leaves() const { return state().leaves; }

inline std::vector<std::string> PytorchCheckpoint::names() const {
    std::vector<std::string> out;
    for (const auto& e : state().entries) out.push_back(e.name);
    return out;
}

inline bool PytorchCheckpoint::contains(std::string_view name) const {
    return state().index.find(name) != state().index.end();
}

inline const PytorchEntry& PytorchCheckpoint::entry(std::string_view name) const {
    const auto& st = state();
    auto it = st.index.find(name);
    if (it == st.index.end())
        fail("pytorch", path().string(), ": no tensor ", detail::quote(name), " (the file has ", st.entries.size(),
             " tensors)");
    return st.entries[it->second];
}

inline Tensor PytorchCheckpoint::get(std::string_view name) const {
    const PytorchEntry& e = entry(name);
    const auto& st = *state_;
    const Storage& s = st.storages[st.entry_storage[std::size_t(&e - st.entries.data())]];
    const std::size_t es = dtype_size(e.dtype);
    const std::byte* p = s.data + e.offset * es;
    // Contiguous in torch's sense: sizes of 1 may carry any stride.
    bool contiguous = true;
    std::int64_t expect = 1;
    for (std::size_t d = e.shape.size(); d-- > 0;) {
        if (e.shape[d] != 1 && e.strides[d] != expect) contiguous = false;
        expect *= e.shape[d];
    }
    if (contiguous && reinterpret_cast<std::uintptr_t>(p) % es == 0)
        return Tensor::view(const_cast<std::byte*>(p), e.shape, e.dtype, state_);
    Tensor t = Tensor::empty(e.shape, e.dtype);  // strided or unaligned: one contiguous copy
    std::byte* out = t.raw();
    if (contiguous) {
        if (t.nbytes()) std::memcpy(out, p, t.nbytes());
        return t;
    }
    detail::for_each_offset(e.shape, e.strides, [&](std::int64_t off) {
        std::memcpy(out, p + std::size_t(off) * es, es);
        out += es;
    });
    return t;
}

}  // namespace vlmamba
