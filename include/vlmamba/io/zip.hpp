// The directory of a zip archive held in memory (a mapped file), as torch.save writes them: entries stored without
// compression, so each entry's data is a byte range of the file. ZIP64 records (files over 4 GiB, or a writer that
// forces them) are read. Only what a reader of stored entries needs is checked, and checked strictly: the end
// record and the central directory lie inside the file, every entry's local header matches its central entry, no
// entry overlaps the central directory, names are unique, and nothing is encrypted, compressed or split over
// disks. Errors: "[zip] LABEL: <reason>".
#pragma once
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "vlmamba/core/error.hpp"

namespace vlmamba {

struct ZipEntry {
    std::string name;
    std::uint64_t offset = 0;  // of the data, from the start of the file
    std::uint64_t size = 0;
    std::uint32_t crc32 = 0;
};

// Parses the central directory of `data` (the whole file). Entries come in directory order.
std::vector<ZipEntry> read_zip_directory(const std::byte* data, std::size_t size, const std::string& label);

// CRC-32 (ISO-HDLC, as zip uses it).
std::uint32_t crc32(const std::byte* data, std::size_t size);

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

namespace detail {

inline std::uint64_t le(const std::byte* p, int n) {
    std::uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = v << 8 | std::to_integer<std::uint64_t>(p[i]);
    return v;
}

inline const char* zip_method_name(std::uint64_t m) {
    switch (m) {
        case 8: return "deflate";
        case 9: return "deflate64";
        case 12: return "bzip2";
        case 14: return "lzma";
        case 93: return "zstd";
        default: return "compressed";
    }
}

}  // namespace detail

inline std::uint32_t crc32(const std::byte* data, std::size_t size) {
    static const std::array<std::uint32_t, 256> table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    std::uint32_t c = 0xFFFFFFFFu;
    for (std::size_t i = 0; i < size; ++i) c = table[(c ^ std::to_integer<std::uint32_t>(data[i])) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

inline std::vector<ZipEntry> read_zip_directory(const std::byte* data, std::size_t size, const std::string& label) {
    using detail::le;
    auto bad = [&](auto&&... parts) { fail("zip", label, ": ", parts...); };
    constexpr std::uint32_t kEnd = 0x06054b50, kEnd64 = 0x06064b50, kLocator64 = 0x07064b50, kCentral = 0x02014b50,
                            kLocal = 0x04034b50;

    // End of central directory: 22 bytes plus a comment of up to 65535 bytes, at the very end of the file.
    if (size < 22) bad("file is ", size, " bytes, too short for a zip archive (truncated?)");
    std::size_t eocd = std::size_t(-1);
    const std::size_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
    for (std::size_t i = size - 22 + 1; i-- > lowest;) {
        if (le(data + i, 4) == kEnd && i + 22 + le(data + i + 20, 2) == size) {
            eocd = i;
            break;
        }
    }
    if (eocd == std::size_t(-1)) bad("no end-of-central-directory record (truncated or not a zip archive)");
    const std::byte* e = data + eocd;
    if (le(e + 4, 2) != 0 || le(e + 6, 2) != 0) bad("multi-disk archives are not supported");
    std::uint64_t count = le(e + 10, 2), cd_size = le(e + 12, 4), cd_offset = le(e + 16, 4);
    if (le(e + 8, 2) != count)
        bad("the end record counts ", le(e + 8, 2), " entries on this disk and ", count, " in all");
    std::uint64_t cd_end_limit = eocd;  // the central directory ends where the next record starts

    // ZIP64: a locator just before the end record points at the ZIP64 end record.
    if (eocd >= 20 && le(data + eocd - 20, 4) == kLocator64) {
        const std::byte* loc = data + eocd - 20;
        const std::uint64_t at = le(loc + 8, 8);
        if (le(loc + 4, 4) != 0 || le(loc + 16, 4) > 1) bad("multi-disk archives are not supported");
        if (at > eocd - 20 || eocd - 20 - at < 56) bad("the ZIP64 end record at ", at, " lies outside the file");
        const std::byte* z = data + at;
        if (le(z, 4) != kEnd64) bad("no ZIP64 end record at offset ", at, " (corrupt archive)");
        if (le(z + 16, 4) != 0 || le(z + 20, 4) != 0) bad("multi-disk archives are not supported");
        count = le(z + 32, 8);
        if (le(z + 24, 8) != count) bad("the ZIP64 end record counts ", le(z + 24, 8), " entries on this disk and ",
                                        count, " in all");
        cd_size = le(z + 40, 8);
        cd_offset = le(z + 48, 8);
        cd_end_limit = at;
    } else if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
        bad("the end record defers to a ZIP64 record, but there is no ZIP64 locator (corrupt archive)");
    }
    if (cd_offset > cd_end_limit || cd_size > cd_end_limit - cd_offset)
        bad("the central directory [", cd_offset, ", +", cd_size, ") lies outside the file of ", size,
            " bytes (truncated?)");
    if (count > cd_size / 46) bad(count, " entries cannot fit a central directory of ", cd_size, " bytes");

    std::vector<ZipEntry> out;
    out.reserve(std::size_t(count));
    std::map<std::string_view, std::size_t> seen;
    std::uint64_t pos = cd_offset;
    const std::uint64_t cd_end = cd_offset + cd_size;
    for (std::uint64_t n = 0; n < count; ++n) {
        if (cd_end - pos < 46 || le(data + pos, 4) != kCentral)
            bad("central directory entry ", n, " at offset ", pos, " is malformed (corrupt archive)");
        const std::byte* c = data + pos;
        const std::uint64_t flags = le(c + 8, 2), method = le(c + 10, 2), name_len = le(c + 28, 2),
                            extra_len = le(c + 30, 2), comment_len = le(c + 32, 2);
        std::uint64_t csize = le(c + 20, 4), usize = le(c + 24, 4), local = le(c + 42, 4), disk = le(c + 34, 2);
        if (46 + name_len + extra_len + comment_len > cd_end - pos)
            bad("central directory entry ", n, " runs past the directory (corrupt archive)");
        ZipEntry z;
        z.name.assign(reinterpret_cast<const char*>(c + 46), std::size_t(name_len));
        z.crc32 = std::uint32_t(le(c + 16, 4));
        const std::string q = "entry '" + z.name + "'";
        // ZIP64 extra field (id 1): the 64-bit values of the fields set to all ones, in this order.
        for (std::uint64_t x = 0; x + 4 <= extra_len;) {
            const std::byte* f = c + 46 + name_len + x;
            const std::uint64_t id = le(f, 2), len = le(f + 2, 2);
            if (x + 4 + len > extra_len) bad(q, " has a malformed extra field (corrupt archive)");
            if (id == 1) {
                std::uint64_t k = 0;
                auto take = [&](std::uint64_t& field, int width) {
                    if (k + 8 > len) bad(q, " has a ZIP64 field too short for its values (corrupt archive)");
                    if (field == (width == 4 ? 0xFFFFFFFFu : 0xFFFFu)) field = le(f + 4 + k, 8);
                    k += 8;
                };
                if (usize == 0xFFFFFFFF) take(usize, 4);
                if (csize == 0xFFFFFFFF) take(csize, 4);
                if (local == 0xFFFFFFFF) take(local, 4);
                if (disk == 0xFFFF) take(disk, 2);
            }
            x += 4 + len;
        }
        if (disk != 0) bad(q, " lies on disk ", disk, "; multi-disk archives are not supported");
        if (flags & 1) bad(q, " is encrypted");
        if (method != 0)
            bad(q, " is compressed (method ", method, ", ", detail::zip_method_name(method),
                "); torch.save stores entries uncompressed: save it again with torch.save");
        if (csize != usize) bad(q, " is stored with ", csize, " bytes but claims ", usize, " (corrupt archive)");
        // The local header: signature, the same name, then the data.
        if (local > cd_offset || cd_offset - local < 30 || le(data + local, 4) != kLocal)
            bad(q, " has no local header at offset ", local, " (corrupt archive)");
        const std::byte* l = data + local;
        const std::uint64_t lname = le(l + 26, 2), lextra = le(l + 28, 2);
        const std::uint64_t start = local + 30 + lname + lextra;
        if (start > cd_offset || usize > cd_offset - start)
            bad(q, " data [", start, ", +", usize, ") runs into the central directory at ", cd_offset,
                " (truncated or corrupt archive)");
        if (lname != name_len || std::memcmp(l + 30, c + 46, std::size_t(name_len)) != 0)
            bad(q, " has a different name in its local header (corrupt archive)");
        z.offset = start;
        z.size = usize;
        if (!seen.emplace(std::string_view(reinterpret_cast<const char*>(c + 46), std::size_t(name_len)), out.size())
                 .second)
            bad("duplicate ", q);
        out.push_back(std::move(z));
        pos += 46 + name_len + extra_len + comment_len;
    }
    return out;
}

}  // namespace vlmamba
