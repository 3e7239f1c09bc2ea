// MmapFile: a read-only file mapped into memory (POSIX open/fstat/mmap, MAP_PRIVATE, PROT_READ), unmapped on
// destruction. Writing through data() faults: the pages are read-only.
// A file truncated by someone else while mapped raises SIGBUS on the next read of a lost page.
// install_bus_error_handler() turns that into one line naming the file, then _exit(1) (for programs such as the CLI).
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>

#include "vlmamba/core/error.hpp"

namespace vlmamba {

namespace detail {

// The live mappings, for the SIGBUS handler: fixed slots, claimed and released with atomics (no allocation, no lock,
// readable from a signal handler). Mappings beyond the slots work as usual; their bus errors name no file.
struct MappedSlot {
    std::atomic<const void*> begin{nullptr};
    std::size_t size = 0;
    char path[240] = {};
};
inline std::array<MappedSlot, 64> g_mapped;

inline void remember_mapping(const void* p, std::size_t size, const std::string& path) {
    for (MappedSlot& s : g_mapped) {
        const void* empty = nullptr;
        if (!s.begin.compare_exchange_strong(empty, reinterpret_cast<const void*>(1))) continue;  // claimed
        s.size = size;
        std::snprintf(s.path, sizeof s.path, "%s", path.c_str());
        s.begin.store(p);
        return;
    }
}

inline void forget_mapping(const void* p) {
    for (MappedSlot& s : g_mapped)
        if (s.begin.load() == p) return s.begin.store(nullptr);
}

inline void write_str(const char* s) {
    if (::write(2, s, std::strlen(s)) < 0) return;
}

inline void on_bus_error(int, siginfo_t* info, void*) {
    const auto* addr = static_cast<const char*>(info->si_addr);
    for (const MappedSlot& s : g_mapped) {
        const auto* b = static_cast<const char*>(s.begin.load());
        if (b == nullptr || b == reinterpret_cast<const char*>(1) || addr < b || addr >= b + s.size) continue;
        char off[24];
        std::size_t n = std::size_t(addr - b), i = sizeof off - 1;
        off[i] = 0;
        do off[--i] = char('0' + n % 10); while ((n /= 10) && i > 0);
        write_str("vlmamba: error: [mmap] ");
        write_str(s.path);
        write_str(": the file shrank while it was in use (bus error reading byte ");
        write_str(off + i);
        write_str("); was it overwritten during the run?\n");
        ::_exit(1);
    }
    write_str("vlmamba: error: bus error (SIGBUS) outside any mapped model file\n");
    ::_exit(1);
}

}  // namespace detail

// Prints one line naming the mapped file that shrank under a read, then _exit(1), instead of dying of SIGBUS.
inline void install_bus_error_handler() {
    struct sigaction sa {};
    sa.sa_sigaction = &detail::on_bus_error;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, nullptr);
}

class MmapFile {
public:
    MmapFile() = default;
    // Throws "[mmap] cannot open PATH: reason". An empty file maps to data() == nullptr, size() == 0.
    static MmapFile open(const std::filesystem::path& path);

    MmapFile(MmapFile&& o) noexcept { swap(o); }
    MmapFile& operator=(MmapFile&& o) noexcept {
        MmapFile tmp(std::move(o));
        swap(tmp);
        return *this;
    }
    MmapFile(const MmapFile&) = delete;
    MmapFile& operator=(const MmapFile&) = delete;
    ~MmapFile() {
        if (data_) {
            detail::forget_mapping(data_);
            ::munmap(data_, size_);
        }
    }

    const std::byte* data() const { return static_cast<const std::byte*>(data_); }
    std::size_t size() const { return size_; }
    const std::filesystem::path& path() const { return path_; }

private:
    void swap(MmapFile& o) noexcept {
        std::swap(data_, o.data_);
        std::swap(size_, o.size_);
        std::swap(path_, o.path_);
    }

    void* data_ = nullptr;
    std::size_t size_ = 0;
    std::filesystem::path path_;
};

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline MmapFile MmapFile::open(const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("mmap", "cannot open ", path.string(), ": ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int e = errno;
        ::close(fd);
        fail("mmap", "cannot stat ", path.string(), ": ", std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        fail("mmap", "cannot map ", path.string(), ": expected a regular file");
    }
    MmapFile f;
    f.path_ = path;
    f.size_ = std::size_t(st.st_size);
    if (f.size_ > 0) {
        void* p = ::mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            const int e = errno;
            ::close(fd);
            f.size_ = 0;
            fail("mmap", "cannot map ", path.string(), ": ", std::strerror(e));
        }
        f.data_ = p;
        detail::remember_mapping(p, f.size_, path.string());
    }
    ::close(fd);  // the mapping stays valid without the descriptor
    return f;
}

}  // namespace vlmamba
