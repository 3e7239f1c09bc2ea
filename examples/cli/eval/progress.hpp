// eval's progress on stderr.
#pragma once
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "../common.hpp"

namespace cli::eval {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

// ---------------------------------------------------------------------------------------------
// Progress on stderr: a redrawn bar on a terminal, else a line every few items
// ---------------------------------------------------------------------------------------------

class Progress {
public:
    Progress(std::size_t total, std::string label) : total_(total), label_(std::move(label)), tty_(isatty(2)) {
        every_ = std::clamp<std::size_t>(total / 20, 1, 50);
    }

    void update(std::size_t done) {
        const double now = t_.seconds();
        const bool last = done == total_;
        if (tty_) {
            if (!last && now - shown_ < 0.1) return;
            std::fprintf(stderr, "\r%s%s\033[K", label_.c_str(), line(done, now, true).c_str());
            if (last) std::fputc('\n', stderr);
        } else {
            if (!last && done % every_ != 0 && now - shown_ < 30) return;
            std::fprintf(stderr, "%s%s\n", label_.c_str(), line(done, now, false).c_str());
        }
        std::fflush(stderr);
        shown_ = now;
    }
    double seconds() const { return t_.seconds(); }

private:
    static std::string clock(double s) {
        const long t = long(s + 0.5);
        char b[32];
        std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
        return b;
    }
    std::string line(std::size_t done, double now, bool bar) const {
        const double rate = now > 0 ? double(done) / now : 0.0;
        const double frac = total_ ? double(done) / double(total_) : 1.0;
        std::string s;
        if (bar) {
            constexpr int width = 30;
            const int full = int(frac * width);
            s = "[" + std::string(std::size_t(full), '#') + std::string(std::size_t(width - full), '.') + "] ";
        }
        char b[160];
        std::snprintf(b, sizeof b, "%zu/%zu %3.0f%% | %.2f images/s | elapsed %s | ETA %s", done, total_, 100 * frac,
                      rate, clock(now).c_str(),
                      rate > 0 ? clock(double(total_ - done) / rate).c_str() : "?");
        return s + b;
    }
    std::size_t total_, every_;
    std::string label_;
    bool tty_;
    Timer t_;
    double shown_ = -1e9;
};


}  // namespace cli::eval
