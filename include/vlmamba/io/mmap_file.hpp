// MmapFile: a read-only file mapped into memory (POSIX open/fstat/mmap, MAP_PRIVATE, PROT_READ), unmapped on
// destruction. Writing through data() faults: the pages are read-only.
#pragma once
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <utility>

#include "vlmamba/core/error.hpp"

namespace vlmamba {

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
        if (data_) ::munmap(data_, size_);
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
    }
    ::close(fd);  // the mapping stays valid without the descriptor
    return f;
}

}  // namespace vlmamba
