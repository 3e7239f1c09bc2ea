// Image decoding: PNG, JPEG, BMP and GIF (first frame) through stb_image, to 8-bit RGB.
//
// Channels are converted as PIL's Image.convert("RGB") does (what transformers' convert_to_rgb calls):
// gray is replicated, alpha is dropped (no compositing), a GIF's transparent index keeps its palette colour,
// 16-bit gray is clipped to 255. EXIF orientation is not applied (HF's processors take the image as given). The size is checked from the header, before any
// pixel is decoded (SPEC §8.1: at most 16384 pixels per side and 2^28 pixels; a GIF at most 2^24 pixels), and
// so is the file's length against what that size needs (min_encoded_bytes). Every error names the file.
#pragma once
#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "vlmamba/core/error.hpp"
#include "vlmamba/io/stb_image_impl.hpp"

namespace vlmamba {

// ---------------------------------------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------------------------------------

// An 8-bit RGB image, rows top to bottom.
struct Image {
    int width = 0, height = 0;
    std::vector<std::uint8_t> rgb;  // (H, W, 3) interleaved
};

inline constexpr int kMaxImageSide = 16384;
inline constexpr std::int64_t kMaxImagePixels = std::int64_t{1} << 28;
inline constexpr std::int64_t kMaxGifPixels = std::int64_t{1} << 24;  // 4096 x 4096

// The container format from the leading bytes: "png", "jpeg", "bmp", "gif" (decodable) or "webp", "heic",
// "heif", "avif", "tiff", "jxl", "psd" (recognised, refused) or "unknown".
std::string_view sniff_image_format(std::span<const std::uint8_t> bytes);

// Decodes an encoded image held in memory; `name` is used in error messages.
Image decode_image(std::span<const std::uint8_t> bytes, std::string_view name);

// Reads and decodes a file.
Image load_image(const std::filesystem::path& path);

// ---------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------

namespace detail {

inline bool bytes_equal(std::span<const std::uint8_t> b, std::size_t at, std::string_view magic) {
    return b.size() >= at + magic.size() && std::memcmp(b.data() + at, magic.data(), magic.size()) == 0;
}

inline std::uint32_t read_be32(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

// The marker structure of a JPEG, checked before stb_image reads any of it (stbi_info included): Debian's stb
// (2022-09) reads a Huffman table whose code counts exceed 256 out of bounds (fixed upstream later), and decodes
// with Huffman or quantisation tables that no segment defined (uninitialised memory). So: every DHT table must
// be a valid canonical code (at most 256 symbols, no length overflowing its code space, as libjpeg's
// jpeg_make_d_derived_tbl requires), and every scan may only use tables defined before it. A JPEG must also be
// complete: stb decodes a cut-off JPEG silently (it pads with zeros) while PIL refuses it, so an end-of-image
// marker must follow the scans. Segments are skipped by their lengths (an EXIF thumbnail carries its own EOI),
// stray bytes between segments are skipped as libjpeg does; in entropy-coded data a 0xFF byte is followed by 0x00,
// a restart marker or the next segment. Returns nullptr for a well-formed file, else what is wrong.
inline const char* jpeg_problem(std::span<const std::uint8_t> b) {
    bool scanned = false, progressive = false;
    unsigned dc_defined = 0, ac_defined = 0, quant_defined = 0;  // bit t: table t has been defined
    std::array<std::uint8_t, 256> frame_quant{};                  // component id -> quantisation table + 1
    std::size_t i = 2;  // after SOI
    while (true) {
        if (i + 1 >= b.size()) return scanned ? "no end-of-image marker after the scan data" : "no scan data";
        if (b[i] != 0xFF) { ++i; continue; }
        const std::uint8_t marker = b[i + 1];
        if (marker == 0xFF || marker == 0xD8) { ++i; continue; }
        if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) { i += 2; continue; }
        if (marker == 0xD9) return scanned ? nullptr : "end-of-image marker before any scan data";
        if (i + 4 > b.size()) return "a segment cut off, no end-of-image marker";
        const std::size_t len = (std::size_t{b[i + 2]} << 8) | b[i + 3];
        if (len < 2 || i + 2 + len > b.size()) return "a segment longer than the file, no end-of-image marker";
        const std::span<const std::uint8_t> seg = b.subspan(i + 4, len - 2);
        if (marker == 0xC4) {  // DHT: one or more tables of (class/id, 16 counts, symbols)
            for (std::size_t p = 0; p < seg.size();) {
                if (seg.size() - p < 17 || (seg[p] >> 4) > 1 || (seg[p] & 15) > 3) return "a malformed Huffman table";
                std::uint32_t code = 0, total = 0;
                for (int l = 1; l <= 16; ++l) {
                    code += seg[p + std::size_t(l)];
                    total += seg[p + std::size_t(l)];
                    if (code >= (std::uint32_t{1} << l)) return "a Huffman table whose code lengths overflow";
                    code <<= 1;
                }
                if (total > 256 || seg.size() - p - 17 < total) return "a malformed Huffman table";
                ((seg[p] >> 4) ? ac_defined : dc_defined) |= 1u << (seg[p] & 15);
                p += 17 + total;
            }
        } else if (marker == 0xDB) {  // DQT: tables of (precision/id, 64 values of 1 or 2 bytes)
            for (std::size_t p = 0; p < seg.size();) {
                const std::size_t n = (seg[p] >> 4) == 0 ? 64 : 128;
                if ((seg[p] >> 4) > 1 || (seg[p] & 15) > 3 || seg.size() - p < 1 + n)
                    return "a malformed quantisation table";
                quant_defined |= 1u << (seg[p] & 15);
                p += 1 + n;
            }
        } else if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {  // SOF
            if (seg.size() < 6 || seg.size() != 6 + 3 * std::size_t{seg[5]}) return "a malformed frame header";
            progressive = marker == 0xC2 || marker == 0xC6 || marker == 0xCA || marker == 0xCE;
            frame_quant.fill(0);
            for (std::size_t c = 0; c < seg[5]; ++c) frame_quant[seg[6 + 3 * c]] = std::uint8_t((seg[8 + 3 * c] & 15) + 1);
        } else if (marker == 0xDA) {  // SOS: components with their DC/AC tables, then the spectral selection
            if (seg.empty() || seg.size() != 4 + 2 * std::size_t{seg[0]}) return "a malformed scan header";
            const std::uint8_t ss = seg[seg.size() - 3], ah = std::uint8_t(seg[seg.size() - 1] >> 4);
            const bool uses_dc = !progressive || (ss == 0 && ah == 0), uses_ac = !progressive || ss > 0;
            for (std::size_t c = 0; c < seg[0]; ++c) {
                const std::uint8_t q = frame_quant[seg[1 + 2 * c]], td = seg[2 + 2 * c] >> 4, ta = seg[2 + 2 * c] & 15;
                if (q == 0 || q > 4 || !(quant_defined & (1u << (q - 1))))
                    return "a scan of a component without a defined quantisation table";
                if ((uses_dc && (td > 3 || !(dc_defined & (1u << td)))) || (uses_ac && (ta > 3 || !(ac_defined & (1u << ta)))))
                    return "a scan that uses an undefined Huffman table";
            }
            scanned = true;
        }
        i += 2 + len;  // after SOS, the entropy-coded data follows: skipped byte by byte above
    }
}

// Whether every PNG chunk up to IEND lies inside the file: stb grows its IDAT buffer to a chunk's declared length
// before reading it, so a 100-byte file could claim a 2 GB chunk.
inline bool png_chunks_fit(std::span<const std::uint8_t> b) {
    std::size_t i = 8;
    while (i + 8 <= b.size()) {
        const std::uint64_t len = read_be32(b.data() + i);
        if (len > b.size() - i - 8 || b.size() - i - 8 - len < 4) return false;  // data and CRC
        if (bytes_equal(b, i + 4, "IEND")) return true;
        i += 12 + len;
    }
    return true;  // no IEND: stb reports the missing data itself, without a large allocation
}

// A lower bound on the file size of a w x h image, from what each format must store: an uncompressed BMP (the only
// kind stb reads) holds every padded row; a PNG's zlib stream expands at most 1032:1 (deflate's limit: a 258-byte
// match in 2 bits); a JPEG codes every 8x8 luma block with at least one bit. 0 for GIF (capped by pixels instead).
inline std::int64_t min_encoded_bytes(std::span<const std::uint8_t> b, std::string_view format, std::int64_t w,
                                      std::int64_t h) {
    if (format == "bmp") {
        if (b.size() < 30) return 0;  // stbi_info refused it already
        const std::uint32_t header = b[14] | (std::uint32_t{b[15]} << 8) | (std::uint32_t{b[16]} << 16) |
                                     (std::uint32_t{b[17]} << 24);
        const std::size_t at = header == 12 ? 24 : 28;  // bits per pixel (OS/2 v1 or Windows header)
        const std::int64_t bpp = std::max<std::int64_t>(b[at] | (std::int64_t{b[at + 1]} << 8), 1);  // stb: 0 -> 1
        return 14 + (w * bpp + 31) / 32 * 4 * h;
    }
    if (format == "png") {
        const std::uint8_t depth = b[24], colour = b[25];
        const std::int64_t channels = colour == 2 ? 3 : colour == 4 ? 2 : colour == 6 ? 4 : 1;
        return h * (1 + (w * channels * depth + 7) / 8) / 1032;
    }
    if (format == "jpeg") return (w + 7) / 8 * ((h + 7) / 8) / 8;
    return 0;
}

// A copy of a GIF with the transparency flag of the first frame's graphic control extension cleared. PIL opens
// a GIF's first frame as a palette image and convert("RGB") maps a transparent index to its palette colour;
// stb would leave those pixels black.
inline std::vector<std::uint8_t> gif_without_transparency(std::span<const std::uint8_t> b) {
    std::vector<std::uint8_t> out(b.begin(), b.end());
    if (out.size() < 13) return out;
    std::size_t i = 13;                                              // header + logical screen descriptor
    if (out[10] & 0x80) i += 3 * (std::size_t{2} << (out[10] & 7));  // global colour table
    while (i + 2 < out.size() && out[i] == 0x21) {                   // extensions before the first image
        if (out[i + 1] == 0xF9 && out[i + 2] == 4 && i + 3 < out.size()) out[i + 3] &= 0xFE;
        i += 2;
        while (i < out.size() && out[i] != 0) i += 1 + std::size_t{out[i]};  // data sub-blocks
        ++i;
    }
    return out;
}

// A 16-bit grayscale PNG, as PIL converts it: mode "I;16" (or "I") to "RGB" clips each value to 255 rather than
// taking the high byte (which stb does, and PIL does for every other 16-bit PNG).
inline bool png_is_gray16(std::span<const std::uint8_t> b) {
    return b.size() >= 26 && b[24] == 16 && b[25] == 0;  // IHDR bit depth, colour type
}

}  // namespace detail

inline std::string_view sniff_image_format(std::span<const std::uint8_t> b) {
    using detail::bytes_equal;
    if (bytes_equal(b, 0, "\x89PNG\r\n\x1a\n")) return "png";
    if (bytes_equal(b, 0, "\xff\xd8\xff")) return "jpeg";
    if (bytes_equal(b, 0, "GIF87a") || bytes_equal(b, 0, "GIF89a")) return "gif";
    if (bytes_equal(b, 0, "BM")) return "bmp";
    if (bytes_equal(b, 0, "RIFF") && bytes_equal(b, 8, "WEBP")) return "webp";
    if (bytes_equal(b, 4, "ftyp")) {  // ISO base media file: the major brand names the codec
        for (std::string_view brand : {"avif", "avis"})
            if (bytes_equal(b, 8, brand)) return "avif";
        for (std::string_view brand : {"heic", "heix", "hevc", "hevx", "heim", "heis", "hevm", "hevs"})
            if (bytes_equal(b, 8, brand)) return "heic";
        for (std::string_view brand : {"mif1", "msf1"})
            if (bytes_equal(b, 8, brand)) return "heif";
        return "unknown";
    }
    if (bytes_equal(b, 0, std::string_view("II*\0", 4)) || bytes_equal(b, 0, std::string_view("MM\0*", 4)))
        return "tiff";
    if (bytes_equal(b, 0, "\xff\x0a") || bytes_equal(b, 0, std::string_view("\0\0\0\x0cJXL ", 8))) return "jxl";
    if (bytes_equal(b, 0, "8BPS")) return "psd";
    return "unknown";
}

inline Image decode_image(std::span<const std::uint8_t> bytes, std::string_view name) {
    constexpr const char* op = "load_image";
    VLM_CHECK(!bytes.empty(), op, name, ": expected an image, got an empty file");
    const std::string_view format = sniff_image_format(bytes);
    if (format != "png" && format != "jpeg" && format != "bmp" && format != "gif")
        fail(op, name, ": unsupported image format: ", format, "; expected png, jpeg, bmp or gif");
    VLM_CHECK(bytes.size() <= static_cast<std::size_t>(INT_MAX), op, name, ": file of ", bytes.size(),
              " bytes, expected at most ", INT_MAX);
    const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
    const int len = static_cast<int>(bytes.size());

    if (format == "jpeg") {
        if (const char* problem = detail::jpeg_problem(bytes))
            fail(op, name, ": corrupt or truncated jpeg (", problem, ")");
    }
    // Header dimensions, before decoding anything. A PNG's IHDR is read directly: stb's header parser refuses
    // a 0-pixel PNG without saying its size.
    std::int64_t w = 0, h = 0;
    if (format == "png") {
        VLM_CHECK(bytes.size() >= 24 && detail::bytes_equal(bytes, 12, "IHDR"), op, name,
                  ": expected a PNG IHDR header, got a truncated or corrupt file");
        w = detail::read_be32(data + 16);
        h = detail::read_be32(data + 20);
        VLM_CHECK(detail::png_chunks_fit(bytes), op, name,
                  ": corrupt or truncated png (a chunk runs past the end of the file)");
    } else {
        int iw = 0, ih = 0, comp = 0;
        if (!stbi_info_from_memory(data, len, &iw, &ih, &comp))  // stb's reason is that of its last format tried
            fail(op, name, ": corrupt or truncated ", format, " header");
        w = iw;
        h = ih;
    }
    VLM_CHECK(w > 0 && h > 0, op, name, ": image is ", w, "x", h, ", expected a non-empty image");
    VLM_CHECK(w <= kMaxImageSide && h <= kMaxImageSide && w * h <= kMaxImagePixels, op, name, ": image is ", w,
              "x", h, ", expected at most ", kMaxImageSide, " pixels per side and 2^28 pixels in all");
    VLM_CHECK(format != "gif" || w * h <= kMaxGifPixels, op, name, ": gif is ", w, "x", h, ", expected at most ",
              kMaxGifPixels, " pixels (stb keeps 9 bytes per gif pixel)");
    // stb allocates the whole image before it reads the data: a file too short for the size it claims is refused
    if (const std::int64_t need = detail::min_encoded_bytes(bytes, format, w, h); std::int64_t(bytes.size()) < need)
        fail(op, name, ": truncated ", format, ": ", w, "x", h, " pixels need at least ", need, " bytes, the file has ",
             bytes.size());

    int iw = 0, ih = 0, comp = 0;
    Image img;
    if (format == "png" && detail::png_is_gray16(bytes)) {
        std::unique_ptr<stbi_us, void (*)(void*)> gray(stbi_load_16_from_memory(data, len, &iw, &ih, &comp, 1),
                                                       stbi_image_free);
        if (!gray) fail(op, name, ": corrupt or truncated png (", stbi_failure_reason(), ")");
        VLM_CHECK(iw == w && ih == h, op, name, ": decoded ", iw, "x", ih, ", expected the header's ", w, "x", h);
        const std::size_t n = static_cast<std::size_t>(iw) * static_cast<std::size_t>(ih);
        img.rgb.resize(3 * n);
        for (std::size_t i = 0; i < n; ++i) {
            const auto v = static_cast<std::uint8_t>(std::min<stbi_us>(gray.get()[i], 255));
            img.rgb[3 * i] = img.rgb[3 * i + 1] = img.rgb[3 * i + 2] = v;
        }
    } else {
        std::vector<std::uint8_t> opaque;
        if (format == "gif") {
            opaque = detail::gif_without_transparency(bytes);
            data = opaque.data();
        }
        std::unique_ptr<stbi_uc, void (*)(void*)> pixels(stbi_load_from_memory(data, len, &iw, &ih, &comp, 3),
                                                         stbi_image_free);
        if (!pixels) fail(op, name, ": corrupt or truncated ", format, " (", stbi_failure_reason(), ")");
        VLM_CHECK(iw == w && ih == h, op, name, ": decoded ", iw, "x", ih, ", expected the header's ", w, "x", h);
        img.rgb.assign(pixels.get(), pixels.get() + static_cast<std::size_t>(iw) * static_cast<std::size_t>(ih) * 3);
    }
    img.width = iw;
    img.height = ih;
    return img;
}

inline Image load_image(const std::filesystem::path& path) {
    constexpr const char* op = "load_image";
    const std::string name = path.string();
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    VLM_CHECK(std::filesystem::exists(status), op, name, ": file not found");
    VLM_CHECK(!std::filesystem::is_directory(status), op, name, ": expected an image file, got a directory");

    std::ifstream in(path, std::ios::binary);
    VLM_CHECK(in.good(), op, name, ": cannot open file for reading");
    std::vector<std::uint8_t> bytes;
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    VLM_CHECK(size >= 0, op, name, ": cannot read file");
    in.seekg(0, std::ios::beg);
    bytes.resize(static_cast<std::size_t>(size));
    in.read(reinterpret_cast<char*>(bytes.data()), size);
    VLM_CHECK(in.gcount() == size, op, name, ": read ", in.gcount(), " bytes, expected ", size);
    return decode_image(bytes, name);
}

}  // namespace vlmamba
