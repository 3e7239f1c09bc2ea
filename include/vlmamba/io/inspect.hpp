// The logic of `vlmamba inspect FILE|DIR`: validate a weights file (safetensors, or a PyTorch checkpoint: .bin, .pt)
// or checkpoint directory and list its tensors (name, dtype, shape, bytes) with totals, then the non-tensor values
// of a PyTorch checkpoint (a training step, a learning rate). A bad file throws vlmamba::Error with a one-line
// message naming the file (and tensor); the CLI prints it to stderr and exits 1.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "vlmamba/core/dtype.hpp"
#include "vlmamba/core/shape.hpp"
#include "vlmamba/io/weights.hpp"

namespace vlmamba {

struct InspectRow {
    std::string name;
    DType dtype = DType::F32;
    Shape shape;
    std::uint64_t bytes = 0;
    std::string file;  // the shard's file name (sharded checkpoints only)
};

struct InspectLeaf {
    std::string name;
    std::string value;  // Python-like rendering
};

struct InspectReport {
    std::filesystem::path path;
    std::string format;  // "safetensors" or "pytorch"
    bool sharded = false;
    std::size_t n_files = 0;
    std::vector<InspectRow> rows;                 // sorted by name
    std::map<std::string, std::string> metadata;  // merged __metadata__ of all files
    std::vector<InspectLeaf> leaves;              // non-tensor values (PyTorch checkpoints), in file order
    std::uint64_t total_bytes = 0;
    std::uint64_t total_elements = 0;
};

// Opens and validates; throws vlmamba::Error on a bad file or directory.
InspectReport inspect_report(const std::filesystem::path& file_or_dir);
// Prints the table and totals to `out`.
void print_inspect(const InspectReport& report, std::ostream& out);
// inspect_report + print_inspect.
void inspect(const std::filesystem::path& file_or_dir, std::ostream& out);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline InspectReport inspect_report(const std::filesystem::path& file_or_dir) {
    const WeightStore store = WeightStore::open(file_or_dir);
    InspectReport r;
    r.path = file_or_dir;
    r.format = store.format() == WeightFormat::Pytorch ? "pytorch" : "safetensors";
    r.sharded = store.sharded();
    r.n_files = store.n_files();
    for (const auto& f : store.files())
        for (const auto& [k, v] : f.metadata()) r.metadata.emplace(k, v);
    for (const auto& c : store.checkpoints())
        for (const auto& l : c.leaves()) r.leaves.push_back({l.name, l.value});
    for (const auto& name : store.names()) {
        const WeightInfo e = store.info(name);
        InspectRow row{name, e.dtype, e.shape, e.nbytes, store.sharded() ? e.file.filename().string() : ""};
        r.total_bytes += row.bytes;
        r.total_elements += std::uint64_t(shape_numel(e.shape));
        r.rows.push_back(std::move(row));
    }
    return r;
}

inline void print_inspect(const InspectReport& r, std::ostream& out) {
    std::size_t wn = 4, ws = 5, wb = 5;
    std::vector<std::string> names, shapes, bytes;
    for (const auto& row : r.rows) {
        const std::string q = detail::quote(row.name);  // escapes control bytes: one row per line
        names.push_back(q.substr(1, q.size() - 2));
        shapes.push_back(shape_str(row.shape));
        bytes.push_back(std::to_string(row.bytes));
        wn = std::max(wn, names.back().size());
        ws = std::max(ws, shapes.back().size());
        wb = std::max(wb, bytes.back().size());
    }
    auto pad = [](const std::string& s, std::size_t w) { return s + std::string(w > s.size() ? w - s.size() : 0, ' '); };
    auto rpad = [](const std::string& s, std::size_t w) { return std::string(w > s.size() ? w - s.size() : 0, ' ') + s; };

    out << r.path.string() << (r.format == "pytorch" ? " (PyTorch checkpoint)" : "")
        << (r.sharded ? " (sharded, " + std::to_string(r.n_files) + " files)" : "") << "\n";
    for (const auto& [k, v] : r.metadata) out << "metadata " << detail::quote(k) << " = " << detail::quote(v) << "\n";
    out << pad("name", wn) << "  " << pad("dtype", 5) << "  " << pad("shape", ws) << "  " << rpad("bytes", wb)
        << (r.sharded ? "  file" : "") << "\n";
    for (std::size_t i = 0; i < r.rows.size(); ++i) {
        const auto& row = r.rows[i];
        out << pad(names[i], wn) << "  " << pad(std::string(dtype_name(row.dtype)), 5) << "  " << pad(shapes[i], ws)
            << "  " << rpad(bytes[i], wb) << (r.sharded ? "  " + row.file : "") << "\n";
    }
    char mib[32];
    std::snprintf(mib, sizeof mib, "%.2f", double(r.total_bytes) / (1024.0 * 1024.0));
    out << r.rows.size() << (r.rows.size() == 1 ? " tensor, " : " tensors, ") << r.total_elements
        << (r.total_elements == 1 ? " element, " : " elements, ")
        << r.total_bytes << " bytes (" << mib << " MiB)\n";
    if (r.leaves.empty()) return;
    out << r.leaves.size() << (r.leaves.size() == 1 ? " other value:\n" : " other values:\n");
    for (const auto& l : r.leaves) {
        const std::string q = detail::quote(l.name);
        out << "  " << q.substr(1, q.size() - 2) << " = " << detail::one_line(l.value) << "\n";
    }
}

inline void inspect(const std::filesystem::path& file_or_dir, std::ostream& out) {
    print_inspect(inspect_report(file_or_dir), out);
}

}  // namespace vlmamba
