// Image loading, PIL-exact resizing, HF center crop, expand-to-square and preprocessing.
// Golden pixel_values from transformers' PIL processors are read from tests/data/images/expected.safetensors
// when it exists (SPEC §8.4).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_helpers.hpp"
#include "vlmamba/io/image.hpp"
#include "vlmamba/io/image_resize.hpp"
#include "vlmamba/io/preprocess.hpp"

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#endif
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace fs = std::filesystem;
using namespace vlmamba;
using vlmamba::test::read_bytes;
using vlmamba::test::write_bytes;

namespace {

using Bytes = std::vector<std::uint8_t>;

// A fresh directory per process for the files the tests write, removed at exit.
struct ScratchDir {
    fs::path path;
    ScratchDir() {
        std::random_device rd;
        path = fs::temp_directory_path() / ("vlmamba_test_image_" + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~ScratchDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

const fs::path& scratch_dir() {
    static const ScratchDir dir;
    return dir.path;
}

std::uint32_t crc32(const std::uint8_t* p, std::size_t n) {
    std::uint32_t c = 0xFFFFFFFFu;
    for (std::size_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

void put_be32(Bytes& b, std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
}

void put_chunk(Bytes& b, const char* type, const Bytes& data) {
    put_be32(b, static_cast<std::uint32_t>(data.size()));
    const std::size_t type_at = b.size();
    b.insert(b.end(), type, type + 4);
    b.insert(b.end(), data.begin(), data.end());
    put_be32(b, crc32(&b[type_at], 4 + data.size()));
}

Bytes ihdr(std::uint32_t w, std::uint32_t h, std::uint8_t depth, std::uint8_t colour_type) {
    Bytes d;
    put_be32(d, w);
    put_be32(d, h);
    for (std::uint8_t v : {depth, colour_type, std::uint8_t{0}, std::uint8_t{0}, std::uint8_t{0}}) d.push_back(v);
    return d;
}

const Bytes kPngSignature = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

// A PNG signature plus an IHDR chunk (8-bit RGB) with a correct CRC, and nothing else.
Bytes png_header(std::uint32_t w, std::uint32_t h) {
    Bytes b = kPngSignature;
    put_chunk(b, "IHDR", ihdr(w, h, 8, 2));
    return b;
}

// A complete PNG from raw scanlines (each led by filter byte 0), zlib-wrapped in one stored deflate block.
Bytes png_stored(std::uint32_t w, std::uint32_t h, std::uint8_t depth, std::uint8_t colour_type, const Bytes& raw) {
    REQUIRE(raw.size() < 65536);
    Bytes z = {0x78, 0x01, 0x01};
    const auto n = static_cast<std::uint16_t>(raw.size());
    for (std::uint16_t v : {n, static_cast<std::uint16_t>(~n)}) z.push_back(v & 0xFF), z.push_back(v >> 8);
    z.insert(z.end(), raw.begin(), raw.end());
    std::uint32_t a = 1, s = 0;  // adler32
    for (std::uint8_t v : raw) a = (a + v) % 65521, s = (s + a) % 65521;
    put_be32(z, (s << 16) | a);
    Bytes b = kPngSignature;
    put_chunk(b, "IHDR", ihdr(w, h, depth, colour_type));
    put_chunk(b, "IDAT", z);
    put_chunk(b, "IEND", {});
    return b;
}

void append_to(void* ctx, void* data, int size) {
    auto* out = static_cast<Bytes*>(ctx);
    const auto* p = static_cast<const std::uint8_t*>(data);
    out->insert(out->end(), p, p + size);
}

Bytes encode_png(int w, int h, int comp, const Bytes& px) {
    Bytes out;
    REQUIRE(stbi_write_png_to_func(append_to, &out, w, h, comp, px.data(), w * comp));
    return out;
}

Bytes encode_jpg(int w, int h, const Bytes& rgb, int quality) {
    Bytes out;
    REQUIRE(stbi_write_jpg_to_func(append_to, &out, w, h, 3, rgb.data(), quality));
    return out;
}

Bytes random_bytes(std::size_t n, std::uint32_t seed) {
    std::mt19937 gen(seed);
    Bytes b(n);
    for (auto& v : b) v = static_cast<std::uint8_t>(gen() & 0xFF);
    return b;
}

Image random_image(int w, int h, std::uint32_t seed) {
    return Image{w, h, random_bytes(static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * 3, seed)};
}

// Checks that `f` throws vlmamba::Error whose message contains every string in `parts`.
template <class F>
void check_error(F&& f, std::initializer_list<std::string> parts) {
    try {
        f();
        FAIL("expected vlmamba::Error");
    } catch (const Error& e) {
        const std::string msg = e.what();
        for (const auto& p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "'", p, "' not in: ", msg);
    }
}

// transformers' center_crop, step by step: pad with zeros (ceil of half the excess on top/left), then slice.
Image hf_center_crop(const Image& img, int w, int h) {
    auto floordiv2 = [](int n) { return static_cast<int>(std::floor(n / 2.0)); };
    int top = floordiv2(img.height - h), left = floordiv2(img.width - w);
    int bottom = top + h, right = left + w;
    if (top >= 0 && bottom <= img.height && left >= 0 && right <= img.width) {
        Image out{w, h, {}};
        for (int y = top; y < bottom; ++y)
            for (int x = left; x < right; ++x)
                for (int c = 0; c < 3; ++c) out.rgb.push_back(img.rgb[(static_cast<std::size_t>(y) * img.width + x) * 3 + c]);
        return out;
    }
    const int nh = std::max(h, img.height), nw = std::max(w, img.width);
    const int tp = static_cast<int>(std::ceil((nh - img.height) / 2.0)), lp = static_cast<int>(std::ceil((nw - img.width) / 2.0));
    std::vector<std::uint8_t> padded(static_cast<std::size_t>(nh) * nw * 3, 0);
    for (int y = 0; y < img.height; ++y)
        for (int x = 0; x < img.width; ++x)
            for (int c = 0; c < 3; ++c)
                padded[(static_cast<std::size_t>(y + tp) * nw + x + lp) * 3 + c] = img.rgb[(static_cast<std::size_t>(y) * img.width + x) * 3 + c];
    top += tp, bottom += tp, left += lp, right += lp;
    Image out{0, 0, {}};
    const int y0 = std::max(0, top), y1 = std::min(nh, bottom), x0 = std::max(0, left), x1 = std::min(nw, right);
    out.height = y1 - y0, out.width = x1 - x0;
    for (int y = y0; y < y1; ++y)
        for (int x = x0; x < x1; ++x)
            for (int c = 0; c < 3; ++c) out.rgb.push_back(padded[(static_cast<std::size_t>(y) * nw + x) * 3 + c]);
    return out;
}

// Minimal safetensors reader: F32 and U8 tensors.
struct FixtureTensor {
    std::string dtype;
    std::vector<std::int64_t> shape;
    std::vector<float> f32;
    Bytes u8;
};

std::map<std::string, FixtureTensor> read_safetensors(const fs::path& p) {
    const Bytes b = read_bytes(p);
    REQUIRE(b.size() >= 8);
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | b[static_cast<std::size_t>(i)];
    REQUIRE(8 + n <= b.size());
    const auto header = nlohmann::json::parse(b.begin() + 8, b.begin() + 8 + static_cast<std::ptrdiff_t>(n));
    std::map<std::string, FixtureTensor> out;
    for (const auto& item : header.items()) {
        const std::string name = item.key();  // not a structured binding: doctest's macros capture it
        const auto& info = item.value();
        if (name == "__metadata__") continue;
        FixtureTensor t;
        t.dtype = info.at("dtype").get<std::string>();
        t.shape = info.at("shape").get<std::vector<std::int64_t>>();
        const auto off = info.at("data_offsets").get<std::vector<std::uint64_t>>();
        REQUIRE(8 + n + off[1] <= b.size());
        const std::uint8_t* data = &b[8 + n + off[0]];
        if (t.dtype == "F32") {
            t.f32.resize((off[1] - off[0]) / 4);
            std::memcpy(t.f32.data(), data, off[1] - off[0]);
        } else {
            REQUIRE_MESSAGE(t.dtype == "U8", name, ": dtype ", t.dtype);
            t.u8.assign(data, data + (off[1] - off[0]));
        }
        out.emplace(name, std::move(t));
    }
    return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------------------

TEST_CASE("sniff_image_format recognises magic bytes") {
    auto sniff = [](std::string s) {
        return std::string(sniff_image_format(Bytes(s.begin(), s.end())));
    };
    CHECK(sniff(std::string("\x89PNG\r\n\x1a\n....", 12)) == "png");
    CHECK(sniff("\xff\xd8\xff\xe0") == "jpeg");
    CHECK(sniff("GIF89a..") == "gif");
    CHECK(sniff("BM......") == "bmp");
    CHECK(sniff("RIFF\x10\x20\x30\x40WEBPVP8 ") == "webp");
    CHECK(sniff(std::string("\0\0\0\x18" "ftypheic", 12)) == "heic");
    CHECK(sniff(std::string("\0\0\0\x18" "ftypmif1", 12)) == "heif");
    CHECK(sniff(std::string("\0\0\0\x1c" "ftypavif", 12)) == "avif");
    CHECK(sniff(std::string("II*\0", 4)) == "tiff");
    CHECK(sniff(std::string("MM\0*", 4)) == "tiff");
    CHECK(sniff("hello, world") == "unknown");
    CHECK(sniff("") == "unknown");
}

TEST_CASE("load_image converts gray, gray+alpha and RGBA to RGB as PIL's convert('RGB')") {
    const int w = 13, h = 7;
    for (int comp : {1, 2, 3, 4}) {
        CAPTURE(comp);
        const Bytes px = random_bytes(static_cast<std::size_t>(w * h * comp), 10u + static_cast<std::uint32_t>(comp));
        const fs::path p = scratch_dir() / ("comp" + std::to_string(comp) + ".png");
        write_bytes(p, encode_png(w, h, comp, px));
        const Image img = load_image(p);
        REQUIRE(img.width == w);
        REQUIRE(img.height == h);
        REQUIRE(img.rgb.size() == static_cast<std::size_t>(w * h * 3));
        bool same = true;
        for (int i = 0; i < w * h; ++i)
            for (int c = 0; c < 3; ++c) {
                // gray replicated; alpha dropped without compositing
                const std::uint8_t want = comp <= 2 ? px[static_cast<std::size_t>(i * comp)] : px[static_cast<std::size_t>(i * comp + c)];
                same = same && img.rgb[static_cast<std::size_t>(i * 3 + c)] == want;
            }
        CHECK(same);
    }
}

TEST_CASE("load_image decodes BMP, JPEG and the first GIF frame") {
    const int w = 9, h = 5;
    const Bytes px = random_bytes(w * h * 3, 3);
    Bytes bmp;
    REQUIRE(stbi_write_bmp_to_func(append_to, &bmp, w, h, 3, px.data()));
    const Image b = decode_image(bmp, "x.bmp");
    CHECK(b.width == w);
    CHECK(b.height == h);
    CHECK(b.rgb == px);

    // A flat colour survives JPEG within a couple of levels.
    Bytes flat(static_cast<std::size_t>(16 * 16 * 3));
    for (std::size_t i = 0; i < flat.size(); i += 3) flat[i] = 200, flat[i + 1] = 100, flat[i + 2] = 50;
    const Image j = decode_image(encode_jpg(16, 16, flat, 95), "x.jpg");
    REQUIRE(j.rgb.size() == flat.size());
    int maxd = 0;
    for (std::size_t i = 0; i < flat.size(); ++i) maxd = std::max(maxd, std::abs(int(j.rgb[i]) - int(flat[i])));
    CHECK(maxd <= 3);

    // 16-bit gray: PIL's "I;16" -> "RGB" clips to 255 (it does not take the high byte).
    const Bytes g16 = png_stored(3, 1, 16, 0, {0, 0x00, 0x07, 0x01, 0x00, 0xAB, 0xCD});  // 7, 256, 43981
    CHECK(decode_image(g16, "g16.png").rgb == Bytes{7, 7, 7, 255, 255, 255, 255, 255, 255});
    // 16-bit RGB: the high byte, as PIL's "RGB;16B" raw mode.
    const Bytes rgb16 = png_stored(1, 1, 16, 2, {0, 0x12, 0x34, 0xAB, 0xCD, 0x00, 0xFF});
    CHECK(decode_image(rgb16, "rgb16.png").rgb == Bytes{0x12, 0xAB, 0x00});

    // 2x1 GIF whose transparent index 0 keeps its palette colour, as PIL's P -> RGB does.
    const Bytes gif_t = {'G', 'I', 'F', '8', '9', 'a', 2, 0, 1, 0, 0x80, 0, 0, 255, 0, 0, 0, 0, 255,
                         0x21, 0xF9, 4, 1, 0, 0, 0, 0,  // graphic control: transparent index 0
                         0x2C, 0, 0, 0, 0, 2, 0, 1, 0, 0, 0x02, 0x02, 0x44, 0x0A, 0x00, 0x3B};
    CHECK(decode_image(gif_t, "t.gif").rgb == Bytes{255, 0, 0, 0, 0, 255});

    // 1x1 GIF, 2-colour global palette (red, blue), pixel index 0.
    const Bytes gif = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 255, 0, 0, 0, 0, 255,
                       0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3B};
    const Image g = decode_image(gif, "x.gif");
    CHECK(g.width == 1);
    CHECK(g.height == 1);
    CHECK(g.rgb == Bytes{255, 0, 0});
}

TEST_CASE("load_image errors name the file") {
    const fs::path dir = scratch_dir();
    check_error([&] { load_image(dir / "missing.png"); }, {"[load_image]", "missing.png", "not found"});
    check_error([&] { load_image(dir); }, {"[load_image]", "directory"});

    write_bytes(dir / "fake.webp", Bytes{'R', 'I', 'F', 'F', 0x24, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', ' '});
    check_error([&] { load_image(dir / "fake.webp"); }, {"fake.webp", "unsupported image format: webp"});
    write_bytes(dir / "photo.heic", Bytes{0, 0, 0, 0x18, 'f', 't', 'y', 'p', 'h', 'e', 'i', 'c', 0, 0, 0, 0});
    check_error([&] { load_image(dir / "photo.heic"); }, {"photo.heic", "unsupported image format: heic"});
    write_bytes(dir / "scan.tif", Bytes{'I', 'I', '*', 0, 8, 0, 0, 0});
    check_error([&] { load_image(dir / "scan.tif"); }, {"scan.tif", "unsupported image format: tiff"});
    const std::string text = "this is not an image\n";
    write_bytes(dir / "unknown.png", Bytes(text.begin(), text.end()));
    check_error([&] { load_image(dir / "unknown.png"); }, {"unknown.png", "unsupported image format: unknown"});
    write_bytes(dir / "empty.png", Bytes{});
    check_error([&] { load_image(dir / "empty.png"); }, {"empty.png", "empty"});

    write_bytes(dir / "zero.png", png_header(0, 0));
    check_error([&] { load_image(dir / "zero.png"); }, {"zero.png", "0x0"});
    write_bytes(dir / "huge.png", png_header(100000, 100000));
    check_error([&] { load_image(dir / "huge.png"); }, {"huge.png", "100000x100000", "16384"});
    write_bytes(dir / "long.png", png_header(16385, 1));
    check_error([&] { load_image(dir / "long.png"); }, {"long.png", "16385x1"});

    const Bytes good = encode_png(40, 30, 3, random_bytes(40 * 30 * 3, 5));
    write_bytes(dir / "truncated.png",
                Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(good.size() / 2)));
    check_error([&] { load_image(dir / "truncated.png"); }, {"truncated.png", "corrupt or truncated png"});
    write_bytes(dir / "stub.png", Bytes(good.begin(), good.begin() + 12));
    check_error([&] { load_image(dir / "stub.png"); }, {"stub.png", "IHDR"});

    const Bytes jpg = encode_jpg(32, 24, random_bytes(32 * 24 * 3, 6), 90);
    CHECK(decode_image(jpg, "ok.jpg").width == 32);
    write_bytes(dir / "cut.jpg", Bytes(jpg.begin(), jpg.begin() + static_cast<std::ptrdiff_t>(jpg.size() * 2 / 3)));
    check_error([&] { load_image(dir / "cut.jpg"); }, {"cut.jpg", "corrupt or truncated jpeg", "end-of-image"});
    // An APP1 segment holding an embedded EOI (as an EXIF thumbnail does) must not hide the truncation.
    Bytes exif = {jpg[0], jpg[1], 0xFF, 0xE1, 0x00, 0x08, 'E', 'x', 0xFF, 0xD8, 0xFF, 0xD9};
    exif.insert(exif.end(), jpg.begin() + 2, jpg.end());
    CHECK(decode_image(exif, "exif.jpg").height == 24);
    check_error([&] { decode_image(Bytes(exif.begin(), exif.end() - 40), "exif_cut.jpg"); },
                {"exif_cut.jpg", "end-of-image"});
    write_bytes(dir / "header.jpg", Bytes{0xFF, 0xD8, 0xFF, 0xE0, 0x00});
    check_error([&] { load_image(dir / "header.jpg"); }, {"header.jpg", "jpeg"});
}

// ---------------------------------------------------------------------------------------------------------
// Geometry
// ---------------------------------------------------------------------------------------------------------

TEST_CASE("resize keeps constant images constant and copies at equal size") {
    std::mt19937 gen(7);
    for (int it = 0; it < 40; ++it) {
        const int w = 1 + static_cast<int>(gen() % 90), h = 1 + static_cast<int>(gen() % 90);
        const int ow = 1 + static_cast<int>(gen() % 150), oh = 1 + static_cast<int>(gen() % 150);
        const auto r = static_cast<Resample>(gen() % 4);
        const std::uint8_t v[3] = {static_cast<std::uint8_t>(gen()), 0, 255};
        Image img{w, h, Bytes(static_cast<std::size_t>(w * h * 3))};
        for (std::size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = v[i % 3];
        CAPTURE(w);
        CAPTURE(h);
        CAPTURE(ow);
        CAPTURE(oh);
        CAPTURE(resample_name(r));
        const Image out = resize(img, ow, oh, r);
        REQUIRE(out.rgb.size() == static_cast<std::size_t>(ow * oh * 3));
        bool constant = true;
        for (std::size_t i = 0; i < out.rgb.size(); ++i) constant = constant && out.rgb[i] == v[i % 3];
        CHECK(constant);
    }
    const Image img = random_image(17, 11, 1);
    CHECK(resize(img, 17, 11).rgb == img.rgb);
}

TEST_CASE("resize: box halving is the rounded mean, horizontal pass first") {
    // Box 2:1 puts two taps of weight 1/2: each pass is floor((a + b + 1) / 2), horizontal first (PIL's order).
    const int w = 2 * 7, h = 2 * 5;
    const Image img = random_image(w, h, 2);
    const Image out = resize(img, w / 2, h / 2, Resample::Box);
    auto px = [&](int x, int y, int c) { return int(img.rgb[static_cast<std::size_t>((y * w + x) * 3 + c)]); };
    bool ok = true;
    for (int y = 0; y < h / 2; ++y)
        for (int x = 0; x < w / 2; ++x)
            for (int c = 0; c < 3; ++c) {
                const int top = (px(2 * x, 2 * y, c) + px(2 * x + 1, 2 * y, c) + 1) / 2;
                const int bot = (px(2 * x, 2 * y + 1, c) + px(2 * x + 1, 2 * y + 1, c) + 1) / 2;
                ok = ok && out.rgb[static_cast<std::size_t>((y * (w / 2) + x) * 3 + c)] == (top + bot + 1) / 2;
            }
    CHECK(ok);
}

TEST_CASE("resize: bilinear and bicubic weights with antialiasing support") {
    // 4 -> 2 bilinear: support widens to 2 input pixels; output 0 reads inputs 0..2 with weights 3:3:1.
    Image row{4, 1, {0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255}};
    const Image bl = resize(row, 2, 1, Resample::Bilinear);
    CHECK(int(bl.rgb[0]) == 71);    // (0*3 + 100*3 + 200) / 7 = 71.43
    CHECK(int(bl.rgb[3]) == 209);   // (100 + 200*3 + 255*3) / 7 = 209.3
    // 2 -> 4 bicubic upsampling of a step overshoots, and clips to 0..255.
    Image step{2, 1, {0, 0, 0, 255, 255, 255}};
    const Image bc = resize(step, 4, 1, Resample::Bicubic);
    // output 0: centre 0.25, taps d = 0.25, 1.25 -> w = 0.8671875, -0.0703125, renormalised by their sum.
    CHECK(int(bc.rgb[0]) == 0);
    CHECK(int(bc.rgb[9]) == 255);
    // output 1: centre 0.75, taps d = -0.25, 0.75 -> 255 * 0.2265625 / (0.8671875 + 0.2265625) = 52.8
    CHECK(int(bc.rgb[3]) == 53);
}

TEST_CASE("center_crop matches transformers' pad-then-slice over random sizes") {
    std::mt19937 gen(11);
    for (int it = 0; it < 60; ++it) {
        const int w = 1 + static_cast<int>(gen() % 30), h = 1 + static_cast<int>(gen() % 30);
        const int cw = 1 + static_cast<int>(gen() % 30), ch = 1 + static_cast<int>(gen() % 30);
        CAPTURE(w);
        CAPTURE(h);
        CAPTURE(cw);
        CAPTURE(ch);
        const Image img = random_image(w, h, static_cast<std::uint32_t>(it));
        const Image ref = hf_center_crop(img, cw, ch);
        const Image out = center_crop(img, cw, ch);
        REQUIRE(out.width == cw);
        REQUIRE(out.height == ch);
        CHECK(ref.width == cw);
        CHECK(ref.height == ch);
        CHECK(out.rgb == ref.rgb);
    }
}

TEST_CASE("expand_to_square pastes centred on the background") {
    const Image wide = random_image(7, 4, 3);
    const Image sq = expand_to_square(wide, {122, 116, 104});
    REQUIRE(sq.width == 7);
    REQUIRE(sq.height == 7);
    // offset (W - H) // 2 = 1 rows on top, 2 below
    for (int y = 0; y < 7; ++y)
        for (int x = 0; x < 7; ++x) {
            const std::size_t o = static_cast<std::size_t>((y * 7 + x) * 3);
            if (y >= 1 && y < 5) {
                CHECK(std::equal(&sq.rgb[o], &sq.rgb[o] + 3, &wide.rgb[static_cast<std::size_t>(((y - 1) * 7 + x) * 3)]));
            } else {
                CHECK(sq.rgb[o] == 122);
                CHECK(sq.rgb[o + 1] == 116);
                CHECK(sq.rgb[o + 2] == 104);
            }
        }
    const Image tall = random_image(2, 5, 4);
    const Image sq2 = expand_to_square(tall, {1, 2, 3});
    REQUIRE(sq2.width == 5);
    CHECK(sq2.rgb[0] == 1);                                  // column 0 is background
    CHECK(sq2.rgb[3] == tall.rgb[0]);                        // image starts at column (5 - 2) // 2 = 1
    CHECK(sq2.rgb[static_cast<std::size_t>(3 * 3)] == 1);    // column 3 is background
    const Image square = random_image(6, 6, 5);
    CHECK(expand_to_square(square, {0, 0, 0}).rgb == square.rgb);
}

// ---------------------------------------------------------------------------------------------------------
// Preprocessing
// ---------------------------------------------------------------------------------------------------------

TEST_CASE("presets, policies and their errors") {
    const auto clip = preset("clip-vit-l-336");
    CHECK(clip.size == 336);
    CHECK(clip.policy == ResizePolicy::ResizeCrop);
    CHECK(clip.mean[0] == 0.48145466f);
    CHECK(clip.std[2] == 0.27577711f);
    CHECK(preset("clip-vit-l-224").size == 224);
    const auto sig = preset("siglip-so400m-384");
    CHECK(sig.size == 384);
    CHECK(sig.policy == ResizePolicy::ResizeNaive);
    CHECK(pad_background(clip) == std::array<std::uint8_t, 3>{122, 116, 104});
    CHECK(pad_background(sig) == std::array<std::uint8_t, 3>{127, 127, 127});
    check_error([] { preset("clip-vit-h"); }, {"[preset]", "clip-vit-h", "clip-vit-l-336", "siglip-so400m-384"});
    CHECK(parse_resize_policy("pad") == ResizePolicy::Pad);
    CHECK(parse_resize_policy("resize_naive") == ResizePolicy::ResizeNaive);
    CHECK(parse_resize_policy("resize_crop") == ResizePolicy::ResizeCrop);
    for (auto p : {ResizePolicy::Pad, ResizePolicy::ResizeNaive, ResizePolicy::ResizeCrop})
        CHECK(parse_resize_policy(resize_policy_name(p)) == p);
    check_error([] { parse_resize_policy("crop"); }, {"crop", "pad", "resize_naive", "resize_crop"});
}

TEST_CASE("preprocess: geometry per policy, CHW layout and HF's float order") {
    PreprocessConfig cfg = preset("clip-vit-l-336");
    cfg.size = 48;
    const Image wide = random_image(97, 61, 8);
    // resize_crop: shortest edge 61 -> 48, long 97 -> int(48 * 97 / 61) = 76, then a 48x48 center crop.
    CHECK(preprocess_geometry(wide, cfg).rgb == center_crop(resize(wide, 76, 48), 48, 48).rgb);
    const Image tall = random_image(45, 120, 9);
    CHECK(preprocess_geometry(tall, cfg).rgb == center_crop(resize(tall, 48, 128), 48, 48).rgb);
    cfg.policy = ResizePolicy::ResizeNaive;
    CHECK(preprocess_geometry(wide, cfg).rgb == resize(wide, 48, 48).rgb);
    cfg.policy = ResizePolicy::Pad;
    CHECK(preprocess_geometry(wide, cfg).rgb == resize(expand_to_square(wide, {122, 116, 104}), 48, 48).rgb);

    // Values: float32(u8 * (1/255 in float64)), then (x - mean) / std in float32; channel planes.
    cfg.policy = ResizePolicy::ResizeCrop;
    const std::vector<float> px = preprocess(wide, cfg);
    REQUIRE(px.size() == static_cast<std::size_t>(3 * 48 * 48));
    const Image g = preprocess_geometry(wide, cfg);
    bool exact = true;
    for (int c = 0; c < 3; ++c)
        for (int i = 0; i < 48 * 48; ++i) {
            const float x = static_cast<float>(g.rgb[static_cast<std::size_t>(i * 3 + c)] * (1.0 / 255.0));
            const float want = (x - cfg.mean[static_cast<std::size_t>(c)]) / cfg.std[static_cast<std::size_t>(c)];
            exact = exact && px[static_cast<std::size_t>(c * 48 * 48 + i)] == want;
        }
    CHECK(exact);
    // Extremes: 0 and 255 map to -mean/std and (1 - mean)/std.
    Image black{5, 3, Bytes(45, 0)}, white{5, 3, Bytes(45, 255)};
    CHECK(preprocess(black, cfg)[0] == doctest::Approx(-0.48145466 / 0.26862954).epsilon(1e-6));
    CHECK(preprocess(white, cfg).back() == doctest::Approx((1 - 0.40821073) / 0.27577711).epsilon(1e-6));
    // A pad image's border is the background colour, normalised: int(255 * 0.5) = 127 -> (127/255 - 0.5) / 0.5.
    PreprocessConfig sig = preset("siglip-so400m-384");
    sig.size = 40;
    sig.policy = ResizePolicy::Pad;
    CHECK(preprocess(random_image(40, 10, 10), sig)[0] == doctest::Approx(127.0 / 255.0 * 2 - 1).epsilon(1e-6));
}

// Golden fixtures (tests/data/images/README.md): `<stem>.rgb` is Pillow's decode + convert("RGB"), (H, W, 3) uint8;
// `<stem>.<variant>` is the HF processor's pixel_values, (3, S, S) float32.
TEST_CASE("load_image and preprocess match Pillow and transformers' PIL processors (golden)") {
    const fs::path dir = fs::path(VLMAMBA_TEST_DATA_DIR) / "images";
    const fs::path expected = dir / "expected.safetensors";
    if (!fs::exists(expected)) {
        MESSAGE("skipped: ", expected.string(), " not found");
        return;
    }
    const auto tensors = read_safetensors(expected);
    REQUIRE(!tensors.empty());
    PreprocessConfig clip = preset("clip-vit-l-224"), sig = preset("siglip-so400m-384");
    clip.size = 48;
    sig.size = 40;
    auto with_policy = [](PreprocessConfig c, ResizePolicy p) { return c.policy = p, c; };
    const std::map<std::string, PreprocessConfig> variants = {
        {"clip48", clip},
        {"siglip40", sig},
        {"clip48_pad", with_policy(clip, ResizePolicy::Pad)},
        {"siglip40_pad", with_policy(sig, ResizePolicy::Pad)},
        {"clip336", preset("clip-vit-l-336")},
        {"siglip384", preset("siglip-so400m-384")},
    };
    auto image_file = [&](const std::string& stem) {
        for (const char* ext : {".png", ".jpg", ".jpeg", ".bmp", ".gif"})
            if (fs::exists(dir / (stem + ext))) return dir / (stem + ext);
        return fs::path{};
    };
    int compared = 0;
    for (const auto& entry : tensors) {
        const std::string& name = entry.first;  // not a structured binding: CAPTURE's lambda takes it
        const FixtureTensor& t = entry.second;
        CAPTURE(name);
        const auto dot = name.find('.');
        REQUIRE(dot != std::string::npos);
        const std::string stem = name.substr(0, dot), variant = name.substr(dot + 1);
        const fs::path file = image_file(stem);
        REQUIRE_MESSAGE(!file.empty(), "no image file for ", stem);
        const bool lossless = file.extension() == ".png";
        const Image decoded = load_image(file);

        if (variant == "rgb") {  // the decoder alone
            REQUIRE(t.shape == std::vector<std::int64_t>{decoded.height, decoded.width, 3});
            REQUIRE(t.u8.size() == decoded.rgb.size());
            int max_d = 0;
            double sum_d = 0;
            for (std::size_t i = 0; i < t.u8.size(); ++i) {
                const int d = std::abs(int(decoded.rgb[i]) - int(t.u8[i]));
                max_d = std::max(max_d, d);
                sum_d += d;
            }
            const double mean_d = sum_d / static_cast<double>(t.u8.size());
            if (lossless) {
                CHECK_MESSAGE(max_d == 0, "max level diff ", max_d);
            } else {  // stb's IDCT and chroma upsampling are not libjpeg-turbo's
                CHECK_MESSAGE(mean_d <= 1.0, "mean level diff ", mean_d);
                CHECK_MESSAGE(max_d <= 8, "max level diff ", max_d);
            }
            ++compared;
            continue;
        }

        REQUIRE_MESSAGE(variants.count(variant) == 1, "unknown variant ", variant);
        REQUIRE(t.dtype == "F32");
        const PreprocessConfig& cfg = variants.at(variant);
        REQUIRE(t.shape == std::vector<std::int64_t>{3, cfg.size, cfg.size});
        auto diffs = [&](const std::vector<float>& got) {
            REQUIRE(got.size() == t.f32.size());
            double max_abs = 0, sum_abs = 0;
            for (std::size_t i = 0; i < got.size(); ++i) {
                const double d = std::fabs(double(got[i]) - t.f32[i]);
                max_abs = std::max(max_abs, d);
                sum_abs += d;
            }
            return std::array<double, 2>{max_abs, sum_abs / static_cast<double>(got.size())};
        };
        // Resampling and normalisation alone, from Pillow's own decode: exact for every file.
        const auto rgb = tensors.find(stem + ".rgb");
        if (rgb != tensors.end()) {
            const Image pil{static_cast<int>(rgb->second.shape[1]), static_cast<int>(rgb->second.shape[0]),
                            rgb->second.u8};
            const auto d = diffs(preprocess(pil, cfg));
            const double max_abs = d[0], mean_abs = d[1];
            CHECK_MESSAGE(max_abs <= 1e-5, "from Pillow's decode: max abs ", max_abs, ", mean abs ", mean_abs);
        }
        // End to end from the file.
        const auto d = diffs(preprocess(decoded, cfg));
        const double max_abs = d[0], mean_abs = d[1];
        const double min_std = *std::min_element(cfg.std.begin(), cfg.std.end());
        if (lossless) {
            CHECK_MESSAGE(max_abs <= 1e-5, "max abs ", max_abs);  // bit-exact uint8 pixels
        } else {
            CHECK_MESSAGE(mean_abs <= 1.0 / 255.0 / min_std, "mean abs ", mean_abs);
            CHECK_MESSAGE(max_abs <= 8.0 / 255.0 / min_std, "max abs ", max_abs);
        }
        ++compared;
    }
    MESSAGE("compared ", compared, " golden tensors");
}

TEST_CASE("golden bad files are refused with the file name") {
    const fs::path dir = fs::path(VLMAMBA_TEST_DATA_DIR) / "images";
    if (!fs::exists(dir / "expected.safetensors")) {
        MESSAGE("skipped: golden images not found in ", dir.string());
        return;
    }
    for (const char* f : {"truncated.png", "corrupt.jpg", "huge.png", "zero.png", "fake.webp", "unknown.png"}) {
        CAPTURE(f);
        if (!fs::exists(dir / f)) continue;
        check_error([&] { load_image(dir / f); }, {"[load_image]", f});
    }
}
