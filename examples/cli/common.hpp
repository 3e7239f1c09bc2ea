// Shared CLI helpers: id lists, pixel files, model-directory kinds, timers, peak memory.
#pragma once
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "vlmamba/core/error.hpp"
#include "vlmamba/io/json_config.hpp"
#include "vlmamba/io/safetensors.hpp"

namespace cli {

// "1,2,3" -> {1, 2, 3}; spaces allowed; an empty or malformed list is an error.
inline std::vector<std::int32_t> parse_ids(const std::string& s) {
    std::vector<std::int32_t> ids;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && (s[i] == ' ' || s[i] == ',' || s[i] == '[' || s[i] == ']')) ++i;
        if (i >= s.size()) break;
        std::size_t used = 0;
        long long v = 0;
        try {
            v = std::stoll(s.substr(i), &used);
        } catch (const std::exception&) {
            vlmamba::fail("cli", "--ids: expected comma-separated integers, got '", s, "'");
        }
        if (v < 0 || v > INT32_MAX) vlmamba::fail("cli", "--ids: expected ids in [0, 2^31), got ", v);
        ids.push_back(std::int32_t(v));
        i += used;
    }
    return ids;
}

inline std::string ids_json(const std::vector<std::int32_t>& ids) {
    std::string s = "[";
    for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
    return s + "]";
}

inline double peak_rss_mib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) / 1024.0;  // ru_maxrss is KiB on Linux
}

struct Timer {
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
    double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
};

// Reads tensor `pixel_values`, shaped (B, 3, H, W) or (3, H, W), from a safetensors file (SPEC §8.3) -> (B, 3, H, W).
inline vlmamba::Tensor read_pixels(const std::string& file) {
    const vlmamba::SafetensorsFile f = vlmamba::SafetensorsFile::open(file);
    if (!f.contains("pixel_values"))
        vlmamba::fail("pixels", file, ": no tensor 'pixel_values' (expected one shaped (B, 3, H, W) or (3, H, W))");
    const vlmamba::Tensor px = f.get("pixel_values");
    const bool ok = (px.ndim() == 4 && px.size(0) >= 1 && px.size(1) == 3) || (px.ndim() == 3 && px.size(0) == 3);
    if (!ok)
        vlmamba::fail("pixels", file, ": tensor 'pixel_values' has shape ", vlmamba::shape_str(px.shape()),
                      ", expected (B, 3, H, W) or (3, H, W)");
    return (px.ndim() == 3 ? px.unsqueeze(0) : px).to(vlmamba::DType::F32).contiguous();
}

// Whether DIR/config.json says model_type "vlmamba" (read before any weights load).
inline bool is_vlmamba_dir(const std::string& dir) {
    const nlohmann::json j = vlmamba::read_json_file(std::filesystem::path(dir) / "config.json", "cli");
    return j.value("model_type", std::string()) == "vlmamba";
}

}  // namespace cli
