// safetensors reader (mmap, strict validation as in huggingface/safetensors tensor.rs) and writer.
//
// Format: 8-byte little-endian header length N, N bytes of JSON, then the data section. The JSON object maps
// tensor names to {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative to the data section), plus
// an optional "__metadata__" string->string map. The reader rejects, naming the file (and tensor):
//   a file shorter than 8 bytes, N > 100 MB or beyond the file, invalid JSON (or a byte-order mark), a header
//   that is not an object, duplicate keys at any depth (nlohmann keeps the last silently, so a parser callback
//   catches them), unknown dtypes, missing or mistyped fields, negative, non-integer or overflowing dims,
//   offsets that are reversed, outside the data section, overlapping, leaving a gap (also at the end of the
//   file), or whose byte count differs from shape x dtype size. Unknown extra fields in an entry are ignored,
//   as the reference does.
//
// Alignment: safetensors does not guarantee that a tensor's data is aligned. get() returns a zero-copy view
// into the mmap when the data is aligned to its element size (always so for files written by save_safetensors
// or by the reference writer) and an owned, 64-byte aligned copy otherwise, so consumers may rely on natural
// alignment. Views are read-only memory (PROT_READ): writing through them faults; clone() first.
#pragma once
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <cerrno>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vlmamba/core/dtype.hpp"
#include "vlmamba/core/error.hpp"
#include "vlmamba/core/shape.hpp"
#include "vlmamba/core/tensor.hpp"
#include "vlmamba/io/json_config.hpp"
#include "vlmamba/io/mmap_file.hpp"

namespace vlmamba {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

inline constexpr std::uint64_t kSafetensorsMaxHeader = 100'000'000;  // as the reference's MAX_HEADER_SIZE

// One header entry; begin/end are byte offsets into the data section.
struct SafetensorsEntry {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
    std::uint64_t begin = 0, end = 0;
    std::uint64_t nbytes() const { return end - begin; }
};

// A parsed, validated header.
struct SafetensorsHeader {
    std::uint64_t data_start = 0;                    // 8 + N
    std::vector<SafetensorsEntry> entries;           // sorted by data offset
    std::map<std::string, std::string> metadata;
};

// Validates a whole file image; `label` (the file name) prefixes every error.
SafetensorsHeader parse_safetensors(const std::byte* buf, std::size_t size, const std::string& label);

class SafetensorsFile {
public:
    SafetensorsFile() = default;
    // mmaps and validates the whole header; throws vlmamba::Error naming the file (and tensor).
    static SafetensorsFile open(const std::filesystem::path& path);

    const std::filesystem::path& path() const;
    std::vector<std::string> names() const;                      // sorted
    bool contains(std::string_view name) const;
    const SafetensorsEntry& entry(std::string_view name) const;  // throws when missing
    const std::vector<SafetensorsEntry>& entries() const;        // sorted by data offset
    Tensor get(std::string_view name) const;                     // view into the mmap (see alignment note)
    const std::map<std::string, std::string>& metadata() const;
    std::uint64_t data_bytes() const;                            // size of the data section

private:
    struct State {
        MmapFile file;
        SafetensorsHeader header;
        std::map<std::string, std::size_t, std::less<>> index;  // name -> entries position
    };
    const State& state() const;
    std::shared_ptr<const State> state_;
};

// Writes tensors (any strides, any dtype) and metadata. The header holds __metadata__, then tensors sorted by
// name, each as {"dtype", "shape", "data_offsets"} in that order, in compact JSON; the data is
// laid out by decreasing element size, then name, as the reference does, with the header padded by spaces to
// a multiple of 8, so every tensor is naturally aligned. Writes PATH.tmp, then renames it to PATH.
void save_safetensors(const std::filesystem::path& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

namespace detail {
// Parses JSON, rejecting duplicate keys at any depth and nesting deeper than kMaxJsonDepth; throws
// "[op] label: <what> is not valid JSON: ...".
// `top_key` names the keys of the outermost object in messages ("tensor name" for a safetensors header).
nlohmann::json parse_json_strict(std::string_view text, const std::string& label, const char* op, const char* what,
                                 const char* top_key);
// 'name' with control and non-ASCII bytes escaped, so messages stay on one line.
std::string quote(std::string_view s);
}  // namespace detail

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {

inline std::string quote(std::string_view s) {
    std::string out = "'";
    for (unsigned char c : s) {
        if (c >= 0x20 && c < 0x7f) {
            out += char(c);
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    return out + "'";
}

inline std::string one_line(std::string s, std::size_t limit = 200) {
    for (char& c : s)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
    if (s.size() > limit) s = s.substr(0, limit) + "...";
    return s;
}

inline const char* json_kind(const nlohmann::json& j) {
    switch (j.type()) {
        case nlohmann::json::value_t::object: return "an object";
        case nlohmann::json::value_t::array: return "an array";
        case nlohmann::json::value_t::string: return "a string";
        case nlohmann::json::value_t::boolean: return "a boolean";
        case nlohmann::json::value_t::null: return "null";
        default: return "a number";
    }
}

inline nlohmann::json parse_json_strict(std::string_view text, const std::string& label, const char* op,
                                        const char* what, const char* top_key) {
    using json = nlohmann::json;
    if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF")
        fail(op, label, ": ", what, " is not valid JSON: it starts with a byte-order mark");
    check_json_depth(text, label, op);
    std::vector<std::set<std::string>> open;  // keys seen, one set per open object
    std::string current, dup, dup_parent;  // current: the latest key of the outermost object
    std::size_t dup_depth = 0;
    auto cb = [&](int, json::parse_event_t ev, json& parsed) -> bool {
        if (ev == json::parse_event_t::object_start) {
            open.emplace_back();
        } else if (ev == json::parse_event_t::object_end) {
            if (!open.empty()) open.pop_back();
        } else if (ev == json::parse_event_t::key && !open.empty()) {
            const auto& k = parsed.get_ref<const std::string&>();
            if (open.size() == 1) current = k;
            if (!open.back().insert(k).second && dup_depth == 0) {
                dup = k;
                dup_depth = open.size();
                dup_parent = current;
            }
        }
        return true;
    };
    json j;
    try {
        j = json::parse(text.begin(), text.end(), cb);
    } catch (const json::exception& e) {
        fail(op, label, ": ", what, " is not valid JSON: ", one_line(e.what()));
    }
    if (dup_depth == 1) fail(op, label, ": duplicate ", top_key, " ", quote(dup));
    if (dup_depth > 1) fail(op, label, ": duplicate key ", quote(dup), " inside entry ", quote(dup_parent));
    return j;
}

// Checked a * b for non-negative values bounded by `limit`.
inline bool mul_within(std::uint64_t a, std::uint64_t b, std::uint64_t limit, std::uint64_t& out) {
    if (a != 0 && b > limit / a) return false;
    out = a * b;
    return true;
}

inline SafetensorsEntry parse_entry(const std::string& name, const nlohmann::json& v, const std::string& label) {
    auto bad = [&](auto&&... parts) { fail("safetensors", label, ": tensor ", quote(name), " ", parts...); };
    if (!v.is_object()) bad("is ", json_brief(v), ", expected an object with dtype, shape and data_offsets");
    SafetensorsEntry e;
    e.name = name;

    auto it = v.find("dtype");
    if (it == v.end()) bad("has no 'dtype' field");
    if (!it->is_string()) bad("has dtype ", json_brief(*it), ", expected a string");
    if (!dtype_from_name(it->get_ref<const std::string&>(), e.dtype))
        bad("has unknown dtype ", quote(it->get_ref<const std::string&>()),
            ", expected one of F32, F16, BF16, I32, I64, U8, BOOL");

    it = v.find("shape");
    if (it == v.end()) bad("has no 'shape' field");
    if (!it->is_array()) bad("has shape ", json_brief(*it), ", expected an array of non-negative integers");
    constexpr auto kMax = std::uint64_t(std::numeric_limits<std::int64_t>::max());
    std::uint64_t numel = 1, span = 1;  // span: product of max(dim, 1), keeps strides within int64
    for (const auto& d : *it) {
        if (d.is_number_integer() && !d.is_number_unsigned())
            bad("has a negative dim ", d.get<std::int64_t>(), " in shape ", json_brief(*it));
        if (!d.is_number_unsigned())
            bad("has shape ", json_brief(*it), ", expected non-negative integers, got ", json_brief(d));
        const auto dim = d.get<std::uint64_t>();
        if (!mul_within(span, std::max<std::uint64_t>(dim, 1), kMax, span))
            bad("has shape ", json_brief(*it), " whose element count overflows 64 bits");
        numel *= dim;  // <= span
        e.shape.push_back(std::int64_t(dim));
    }

    it = v.find("data_offsets");
    if (it == v.end()) bad("has no 'data_offsets' field");
    if (!it->is_array() || it->size() != 2 || !(*it)[0].is_number_unsigned() || !(*it)[1].is_number_unsigned())
        bad("has data_offsets ", json_brief(*it), ", expected [begin, end] of two non-negative integers");
    e.begin = (*it)[0].get<std::uint64_t>();
    e.end = (*it)[1].get<std::uint64_t>();
    if (e.end < e.begin) bad("has reversed data_offsets [", e.begin, ", ", e.end, ")");

    std::uint64_t nbytes = 0;
    if (!mul_within(numel, dtype_size(e.dtype), kMax, nbytes))
        bad("has shape ", shape_str(e.shape), " whose byte count overflows 64 bits");
    if (e.end - e.begin != nbytes)
        bad("has data_offsets [", e.begin, ", ", e.end, ") = ", e.end - e.begin, " bytes, expected ", nbytes,
            " bytes for ", dtype_name(e.dtype), " ", shape_str(e.shape));
    return e;
}

}  // namespace detail

inline SafetensorsHeader parse_safetensors(const std::byte* buf, std::size_t size, const std::string& label) {
    using detail::quote;
    if (size < 8) fail("safetensors", label, ": file is ", size, " bytes, shorter than the 8-byte header length");
    std::uint64_t n = 0;
    std::memcpy(&n, buf, 8);
    if (n > kSafetensorsMaxHeader)
        fail("safetensors", label, ": header length ", n, " exceeds the limit of ", kSafetensorsMaxHeader, " bytes");
    if (n > size - 8)
        fail("safetensors", label, ": header length ", n, " exceeds the file: 8 + ", n, " > ", size, " bytes");

    const std::string_view text(reinterpret_cast<const char*>(buf) + 8, std::size_t(n));
    const nlohmann::json j = detail::parse_json_strict(text, label, "safetensors", "header", "tensor name");
    if (!j.is_object()) fail("safetensors", label, ": header is ", detail::json_kind(j), ", expected a JSON object");

    SafetensorsHeader h;
    h.data_start = 8 + n;
    const std::uint64_t data_size = size - h.data_start;
    for (const auto& [key, v] : j.items()) {
        if (key == "__metadata__") {
            if (v.is_null()) continue;  // serde reads null as "no metadata"
            if (!v.is_object())
                fail("safetensors", label, ": __metadata__ is ", detail::json_brief(v),
                     ", expected an object of strings");
            for (const auto& [mk, mv] : v.items()) {
                if (!mv.is_string())
                    fail("safetensors", label, ": __metadata__ key ", quote(mk), " has value ", detail::json_brief(mv),
                         ", expected a string");
                h.metadata.emplace(mk, mv.get<std::string>());
            }
            continue;
        }
        SafetensorsEntry e = detail::parse_entry(key, v, label);
        if (e.end > data_size)
            fail("safetensors", label, ": tensor ", quote(key), " has data_offsets [", e.begin, ", ", e.end,
                 ") outside the data section of ", data_size, " bytes");
        h.entries.push_back(std::move(e));
    }

    // Sorted by offset, the ranges must tile [0, data_size) exactly (reference: Metadata::validate).
    std::sort(h.entries.begin(), h.entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
        return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
    });
    std::uint64_t cursor = 0;
    const SafetensorsEntry* prev = nullptr;
    for (const auto& e : h.entries) {
        if (e.begin < cursor)
            fail("safetensors", label, ": tensor ", quote(e.name), " has data_offsets [", e.begin, ", ", e.end,
                 ") overlapping tensor ", quote(prev->name), " at [", prev->begin, ", ", prev->end, ")");
        if (e.begin > cursor)
            fail("safetensors", label, ": the data section has a gap at [", cursor, ", ", e.begin,
                 ") before tensor ", quote(e.name));
        cursor = e.end;
        prev = &e;
    }
    if (cursor != data_size)
        fail("safetensors", label, ": the data section has a gap at [", cursor, ", ", data_size,
             ") after the last tensor (the file has ", data_size - cursor, " unused bytes)");
    return h;
}

inline SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
    auto st = std::make_shared<State>();
    st->file = MmapFile::open(path);
    st->header = parse_safetensors(st->file.data(), st->file.size(), path.string());
    for (std::size_t i = 0; i < st->header.entries.size(); ++i) st->index.emplace(st->header.entries[i].name, i);
    SafetensorsFile f;
    f.state_ = std::move(st);
    return f;
}

inline const SafetensorsFile::State& SafetensorsFile::state() const {
    VLM_CHECK(state_, "safetensors", "expected an opened file, got a default-constructed SafetensorsFile");
    return *state_;
}

inline const std::filesystem::path& SafetensorsFile::path() const { return state().file.path(); }

inline std::vector<std::string> SafetensorsFile::names() const {
    std::vector<std::string> out;
    for (const auto& kv : state().index) out.push_back(kv.first);
    return out;
}

inline bool SafetensorsFile::contains(std::string_view name) const {
    return state().index.find(name) != state().index.end();
}

inline const SafetensorsEntry& SafetensorsFile::entry(std::string_view name) const {
    const auto& st = state();
    auto it = st.index.find(name);
    if (it == st.index.end())
        fail("safetensors", path().string(), ": no tensor ", detail::quote(name), " (the file has ",
             st.header.entries.size(), " tensors)");
    return st.header.entries[it->second];
}

inline const std::vector<SafetensorsEntry>& SafetensorsFile::entries() const { return state().header.entries; }

inline Tensor SafetensorsFile::get(std::string_view name) const {
    const SafetensorsEntry& e = entry(name);
    const std::byte* p = state_->file.data() + state_->header.data_start + e.begin;
    if (reinterpret_cast<std::uintptr_t>(p) % dtype_size(e.dtype) == 0)
        return Tensor::view(const_cast<std::byte*>(p), e.shape, e.dtype, state_);
    Tensor t = Tensor::empty(e.shape, e.dtype);  // unaligned in the file: copy once
    if (e.nbytes()) std::memcpy(t.raw(), p, e.nbytes());
    return t;
}

inline const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return state().header.metadata; }

inline std::uint64_t SafetensorsFile::data_bytes() const {
    return state().file.size() - state().header.data_start;
}

inline void save_safetensors(const std::filesystem::path& path,
                             const std::vector<std::pair<std::string, Tensor>>& tensors,
                             const std::map<std::string, std::string>& metadata) {
    const std::string label = path.string();
    std::set<std::string_view> seen;
    for (const auto& [name, t] : tensors) {
        VLM_CHECK(name != "__metadata__", "safetensors", label, ": expected tensor names other than '__metadata__'");
        VLM_CHECK(seen.insert(name).second, "safetensors", label, ": duplicate tensor name ", detail::quote(name));
        VLM_CHECK(t.defined() || t.numel() == 0, "safetensors", label, ": tensor ", detail::quote(name),
                  " is undefined");
    }
    // Data order: decreasing element size, then name (reference: prepare()).
    std::vector<std::size_t> order(tensors.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        const auto sa = dtype_size(tensors[a].second.dtype()), sb = dtype_size(tensors[b].second.dtype());
        return sa != sb ? sa > sb : tensors[a].first < tensors[b].first;
    });

    std::vector<std::uint64_t> begin(tensors.size());
    std::uint64_t offset = 0;
    for (std::size_t i : order) {
        begin[i] = offset;
        offset += tensors[i].second.nbytes();
    }
    // Header: __metadata__ first, then tensors by name, fields in the reference's order.
    std::vector<std::size_t> by_name = order;
    std::sort(by_name.begin(), by_name.end(), [&](std::size_t a, std::size_t b) {
        return tensors[a].first < tensors[b].first;
    });
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    for (std::size_t i : by_name) {
        const auto& [name, t] = tensors[i];
        nlohmann::ordered_json e = nlohmann::ordered_json::object();
        e["dtype"] = std::string(dtype_name(t.dtype()));
        e["shape"] = t.shape();
        e["data_offsets"] = {begin[i], begin[i] + t.nbytes()};
        header[name] = std::move(e);
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::json::exception&) {
        fail("safetensors", label, ": cannot write: tensor names and metadata must be valid UTF-8");
    }
    text.append((8 - text.size() % 8) % 8, ' ');
    const std::uint64_t n = text.size();

    // Written to PATH.tmp, then renamed: a failed write (read-only directory, full disk, file-size limit) leaves
    // no partial file, and an existing PATH untouched.
    std::filesystem::path tmp = path;
    tmp += ".tmp";
    std::FILE* out = std::fopen(tmp.c_str(), "wb");
    if (!out) fail("safetensors", label, ": cannot open ", tmp.string(), " for writing: ", std::strerror(errno));
    int err = 0;
    const auto put = [&](const void* p, std::size_t n) {
        if (err == 0 && n > 0 && std::fwrite(p, 1, n, out) != n) err = errno ? errno : EIO;
    };
    put(&n, 8);
    put(text.data(), text.size());
    for (std::size_t i : order) {
        const Tensor t = tensors[i].second.to(Device::Cpu);  // a tensor on the GPU is copied down first
        if (t.numel() == 0) continue;
        if (t.is_contiguous()) {
            put(t.raw(), t.nbytes());
            continue;
        }
        // Strided: gather element bytes without dtype conversion (exact for integers too).
        const auto es = std::int64_t(dtype_size(t.dtype()));
        std::vector<char> buf;
        buf.reserve(t.nbytes());
        const char* base = reinterpret_cast<const char*>(t.raw());
        detail::for_each_offset(t.shape(), t.strides(), [&](std::int64_t off) {
            buf.insert(buf.end(), base + off * es, base + (off + 1) * es);
        });
        put(buf.data(), buf.size());
    }
    if (err == 0 && std::fflush(out) != 0) err = errno ? errno : EIO;
    if (std::fclose(out) != 0 && err == 0) err = errno ? errno : EIO;
    std::error_code ec;
    if (err != 0) {
        std::filesystem::remove(tmp, ec);
        fail("safetensors", label, ": cannot write ", tmp.string(), ": ", std::strerror(err),
             " (nothing was written to ", path.string(), ")");
    }
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::filesystem::remove(tmp, ec);
        fail("safetensors", label, ": cannot rename ", tmp.string(), " into place: ", ec.message());
    }
}

}  // namespace vlmamba
