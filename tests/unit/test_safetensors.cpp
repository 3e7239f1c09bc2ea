// safetensors reader/writer, sharded WeightStore, WeightLoader and inspect, over the corpus in
// tests/data/safetensors (written by zoo/make_safetensors_corpus.py).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>


#include "test_helpers.hpp"
#include "vlmamba/io/inspect.hpp"
#include "vlmamba/io/mmap_file.hpp"
#include "vlmamba/io/safetensors.hpp"
#include "vlmamba/io/weights.hpp"

#ifndef VLMAMBA_TEST_DATA_DIR
#error "define VLMAMBA_TEST_DATA_DIR as the absolute path of tests/data"
#endif

namespace fs = std::filesystem;
using namespace vlmamba;
using vlmamba::test::error_of;
using vlmamba::test::read_bytes;
using vlmamba::test::same_bytes;
using vlmamba::test::TempDir;
using vlmamba::test::write_bytes;

namespace {

fs::path corpus() { return fs::path(VLMAMBA_TEST_DATA_DIR) / "safetensors"; }

// A tensor of `dtype` filled with seeded values exactly representable in every float dtype.
Tensor random_tensor(Shape shape, DType dtype, std::uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int> d(-1000, 1000);
    Tensor t = Tensor::empty(std::move(shape), dtype);
    for (std::int64_t i = 0; i < t.numel(); ++i) {
        const int v = d(gen);
        std::byte* p = t.raw() + i * std::int64_t(dtype_size(dtype));
        if (dtype == DType::I32) { std::int32_t x = v * 100000; std::memcpy(p, &x, 4); }
        else if (dtype == DType::I64) { std::int64_t x = std::int64_t(v) << 40; std::memcpy(p, &x, 8); }
        else detail::store_from_f32(p, dtype, float(v) / 8.f);
    }
    return t;
}

}  // namespace

TEST_CASE("safetensors corpus: every bad file throws one line naming the file and the cause") {
    // Part of each file's expected message (corpus and reader must stay in sync: every bad file is listed).
    const std::map<std::string, std::string> expect = {
        {"bad_empty_file", "file is 0 bytes"},
        {"bad_too_small", "file is 5 bytes"},
        {"bad_header_too_long", "header length 1000 exceeds the file"},
        {"bad_header_over_100mb", "exceeds the limit of 100000000 bytes"},
        {"bad_truncated", "tensor 'a' has data_offsets [0, 64) outside the data section of 20 bytes"},
        {"bad_invalid_json", "header is not valid JSON"},
        {"bad_json_array", "header is an array, expected a JSON object"},
        {"bad_json_string", "header is a string, expected a JSON object"},
        {"bad_byte_order_mark", "byte-order mark"},
        {"bad_invalid_utf8", "header is not valid JSON"},
        {"bad_duplicate_name", "duplicate tensor name 'a'"},
        {"bad_duplicate_field", "duplicate key 'dtype' inside entry 'a'"},
        {"bad_entry_not_object", "tensor 'a' is [0,8], expected an object"},
        {"bad_unknown_dtype", "tensor 'a' has unknown dtype 'F33'"},
        {"bad_unsupported_dtype", "tensor 'a' has unknown dtype 'F64'"},
        {"bad_dtype_not_string", "tensor 'a' has dtype 32, expected a string"},
        {"bad_missing_dtype", "tensor 'a' has no 'dtype' field"},
        {"bad_missing_shape", "tensor 'a' has no 'shape' field"},
        {"bad_missing_offsets", "tensor 'a' has no 'data_offsets' field"},
        {"bad_shape_string", "tensor 'a' has shape \"2\", expected an array"},
        {"bad_shape_float", "expected non-negative integers, got 2.0"},
        {"bad_negative_dim", "tensor 'a' has a negative dim -2"},
        {"bad_dim_too_large", "expected non-negative integers"},
        {"bad_overflow_dims", "overflows 64 bits"},
        {"bad_offsets_length", "tensor 'a' has data_offsets [0,8,16], expected [begin, end]"},
        {"bad_offsets_string", "tensor 'a' has data_offsets \"0:8\", expected [begin, end]"},
        {"bad_negative_offset", "tensor 'a' has data_offsets [-8,0], expected [begin, end]"},
        {"bad_size_mismatch", "tensor 'a.weight' has data_offsets [0, 12) = 12 bytes, expected 16 bytes for F32 (2, 2)"},
        {"bad_offset_outside", "tensor 'b' has data_offsets [100, 108) outside the data section of 8 bytes"},
        {"bad_reversed_offsets", "tensor 'a' has reversed data_offsets [8, 0)"},
        {"bad_overlapping", "tensor 'b' has data_offsets [4, 12) overlapping tensor 'a' at [0, 8)"},
        {"bad_gap", "gap at [8, 12) before tensor 'b'"},
        {"bad_leading_gap", "gap at [0, 4) before tensor 'a'"},
        {"bad_trailing_bytes", "gap at [8, 12) after the last tensor"},
        {"bad_metadata_not_object", "__metadata__ is [\"format\",\"pt\"], expected an object of strings"},
        {"bad_metadata_value", "__metadata__ key 'step' has value 3, expected a string"},
        {"bad_sharded_missing_shard", "model-2.safetensors"},
        {"bad_sharded_missing_tensor", "tensor 'b' is listed in 'model-1.safetensors'"},
        {"bad_sharded_escape", "expected a file name inside the checkpoint directory"},
        {"bad_sharded_no_weight_map", "index has no 'weight_map' field"},
        {"bad_sharded_duplicate_key", "duplicate key 'a' inside entry 'weight_map'"},
        {"bad_sharded_bad_shard", "model-1.safetensors: tensor 'a' has data_offsets [0, 12) = 12 bytes"},
    };
    int n_bad = 0;
    for (const auto& de : fs::directory_iterator(corpus())) {
        const std::string file = de.path().filename().string();
        if (file.rfind("bad_", 0) != 0) continue;
        ++n_bad;
        const std::string stem = de.is_directory() ? file : de.path().stem().string();
        CAPTURE(file);
        if (!de.is_directory()) {
            const std::string msg = error_of([&] { SafetensorsFile::open(de.path()); });
            CAPTURE(msg);
            CHECK(msg.rfind("[safetensors] ", 0) == 0);
            CHECK(msg.find(file) != std::string::npos);
        }
        std::ostringstream out;
        const std::string msg = error_of([&] { inspect(de.path(), out); });
        CAPTURE(msg);
        REQUIRE(!msg.empty());
        CHECK(msg.find(file) != std::string::npos);
        CHECK(msg.find('\n') == std::string::npos);
        REQUIRE_MESSAGE(expect.count(stem), "add the corpus file to this test's table");
        CHECK(msg.find(expect.at(stem)) != std::string::npos);
        CHECK(error_of([&] { WeightStore::open(de.path()); }) == msg);
    }
    CHECK(n_bad == int(expect.size()));
}

TEST_CASE("safetensors corpus: every good file loads and inspects") {
    int n_good = 0;
    for (const auto& de : fs::directory_iterator(corpus())) {
        const std::string file = de.path().filename().string();
        if (file.rfind("good_", 0) != 0) continue;
        ++n_good;
        CAPTURE(file);
        const WeightStore store = WeightStore::open(de.path());
        for (const auto& name : store.names()) {
            const Tensor t = store.get(name);
            CHECK(t.nbytes() == store.file_of(name).entry(name).nbytes());
            CHECK(reinterpret_cast<std::uintptr_t>(t.raw()) % dtype_size(t.dtype()) == 0);
        }
        std::ostringstream out;
        CHECK_NOTHROW(inspect(de.path(), out));
        CHECK(out.str().find(std::to_string(store.names().size()) +
                             (store.names().size() == 1 ? " tensor," : " tensors,")) != std::string::npos);
    }
    CHECK(n_good == 9);
}

TEST_CASE("safetensors: values of every dtype") {
    const auto f = SafetensorsFile::open(corpus() / "good_all_dtypes.safetensors");
    CHECK(f.names() == std::vector<std::string>{"bf16", "f16", "f32", "i32", "i64"});
    CHECK(f.data_bytes() == 70);

    const Tensor a = f.get("f32");
    CHECK(a.dtype() == DType::F32);
    CHECK(a.shape() == Shape{2, 3});
    const float fv[] = {1.5f, -2.0f, 3.25f, 0.0f, -0.125f, 100.0f};
    for (int i = 0; i < 6; ++i) CHECK(a.at({i / 3, i % 3}) == fv[i]);

    const Tensor h = f.get("f16");
    CHECK(h.dtype() == DType::F16);
    CHECK(h.at({0}) == 0.5f);
    CHECK(h.at({1}) == -1.0f);
    CHECK(h.at({2}) == 65504.0f);

    const Tensor b = f.get("bf16");
    CHECK(b.dtype() == DType::BF16);
    CHECK(b.shape() == Shape{2, 2});
    const Tensor b32 = b.to(DType::F32);
    CHECK(b32.data<float>()[0] == 1.0f);
    CHECK(b32.data<float>()[1] == -2.5f);
    CHECK(b32.data<float>()[2] == 0.15625f);
    CHECK(b32.data<float>()[3] == 384.0f);

    const Tensor i32 = f.get("i32");
    CHECK(i32.dtype() == DType::I32);
    CHECK(i32.data<std::int32_t>()[0] == 7);
    CHECK(i32.data<std::int32_t>()[1] == -8);
    CHECK(i32.data<std::int32_t>()[3] == 2147483647);

    const Tensor i64 = f.get("i64");
    CHECK(i64.dtype() == DType::I64);
    CHECK(i64.data<std::int64_t>()[0] == -5);
    CHECK(i64.data<std::int64_t>()[1] == (std::int64_t(1) << 40));

    const std::string msg = error_of([&] { f.get("nope"); });
    CHECK(msg.find("good_all_dtypes.safetensors") != std::string::npos);
    CHECK(msg.find("no tensor 'nope'") != std::string::npos);
    CHECK_FALSE(f.contains("nope"));
    CHECK(f.contains("i64"));
}

TEST_CASE("safetensors: views outlive the file object") {
    Tensor t;
    {
        const auto f = SafetensorsFile::open(corpus() / "good_all_dtypes.safetensors");
        t = f.get("f32");
    }
    CHECK(t.at({1, 2}) == 100.0f);  // the mmap is kept alive by the view (ASan checks this)
}

TEST_CASE("safetensors: edge cases (metadata, rank 0, zero-sized, empty, unaligned, unsorted, extra field)") {
    const auto m = SafetensorsFile::open(corpus() / "good_metadata.safetensors");
    CHECK(m.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"note", "vlmamba corpus"}});
    CHECK(m.names() == std::vector<std::string>{"w"});

    const auto r = SafetensorsFile::open(corpus() / "good_rank0.safetensors");
    const Tensor s = r.get("scalar");
    CHECK(s.ndim() == 0);
    CHECK(s.numel() == 1);
    CHECK(s.at({}) == 3.5f);
    CHECK(r.get("count").data<std::int64_t>()[0] == 42);

    const auto z = SafetensorsFile::open(corpus() / "good_zero_sized.safetensors");
    CHECK(z.get("empty").shape() == Shape{0, 4});
    CHECK(z.get("empty").numel() == 0);
    CHECK(z.get("tail_empty").shape() == Shape{3, 0});
    CHECK(z.get("tail_empty").dtype() == DType::BF16);
    CHECK(z.get("after").at({1}) == 1.0f);

    const auto e = SafetensorsFile::open(corpus() / "good_empty_header.safetensors");
    CHECK(e.names().empty());
    CHECK(e.metadata().empty());

    // The file's data starts at an odd byte: get() returns an aligned owned copy.
    const auto u = SafetensorsFile::open(corpus() / "good_unaligned.safetensors");
    const Tensor x = u.get("x");
    CHECK(reinterpret_cast<std::uintptr_t>(x.raw()) % 4 == 0);
    CHECK(x.at({0}) == 0.25f);
    CHECK(x.at({1}) == -0.5f);
    CHECK(x.at({2}) == 8.0f);

    const auto o = SafetensorsFile::open(corpus() / "good_unsorted.safetensors");
    CHECK(o.entries().front().name == "z");  // sorted by offset
    CHECK(o.get("z").at({1}) == 2.0f);
    CHECK(o.get("a").at({0}) == 3.0f);
    CHECK(o.metadata().at("k") == "v");

    const auto ex = SafetensorsFile::open(corpus() / "good_extra_field.safetensors");
    CHECK(ex.get("a").data<std::int32_t>()[0] == 5);
}

TEST_CASE("WeightStore: sharded checkpoint through model.safetensors.index.json") {
    const WeightStore s = WeightStore::open(corpus() / "good_sharded");
    CHECK(s.sharded());
    CHECK(s.files().size() == 2);
    CHECK(s.names() == std::vector<std::string>{"head.weight", "layer.0.bias", "layer.0.weight", "layer.1.weight"});
    CHECK(s.file_of("layer.1.weight").path().filename() == "model-00002-of-00002.safetensors");
    CHECK(s.get("layer.0.weight").at({1, 0}) == 3.0f);
    CHECK(s.get("layer.0.bias").at({1}) == -0.5f);
    CHECK(s.get("head.weight").at({0, 0}) == -1.0f);
    CHECK(s.get("layer.1.weight").to(DType::F32).at({1, 1}) == 4.0f);
    CHECK_FALSE(s.contains("layer.2.weight"));
    CHECK(error_of([&] { s.get("layer.2.weight"); }).find("no tensor 'layer.2.weight'") != std::string::npos);

    std::ostringstream out;
    inspect(corpus() / "good_sharded", out);
    CHECK(out.str().find("sharded, 2 files") != std::string::npos);
    CHECK(out.str().find("model-00002-of-00002.safetensors") != std::string::npos);
    CHECK(out.str().find("4 tensors, 12 elements, 40 bytes") != std::string::npos);
}

TEST_CASE("WeightStore: weights are copied into memory by default, views of the map under MappedWeights") {
    TempDir d;
    Tensor big = Tensor::empty({600, 1000});  // 2.4 MB: past the huge-page advice threshold
    for (std::int64_t i = 0; i < big.numel(); ++i) big.data<float>()[i] = float(i % 977) * 0.5f;
    save_safetensors(d.path / "model.safetensors", {{"big", big}, {"small", Tensor::full({3}, 2.f)}});
    const WeightStore s = WeightStore::open(d.path);
    const Tensor view = s.view("big");
    for (const char* name : {"big", "small"}) {
        CAPTURE(name);
        const Tensor a = s.get(name), b = s.get(name);
        CHECK(a.raw() != b.raw());  // two copies in ordinary memory
        CHECK(same_bytes(a, s.view(name)));
        WeightLoader l(s);
        const Tensor t = l.take(name, s.info(name).shape);
        CHECK(t.raw() != s.view(name).raw());
        CHECK(same_bytes(t, s.view(name)));
    }
    CHECK(same_bytes(s.get("big"), big));
    {
        const MappedWeights mapped;
        CHECK(MappedWeights::active());
        CHECK(s.get("big").raw() == view.raw());  // the mapped file itself
        WeightLoader l(s);
        CHECK(l.take("big", {600, 1000}).raw() == view.raw());
        CHECK(l.take("big", {600, 1000}, DType::BF16).dtype() == DType::BF16);  // a conversion still copies
    }
    CHECK_FALSE(MappedWeights::active());
}

TEST_CASE("WeightStore: a directory with model.safetensors; missing paths") {
    TempDir d;
    save_safetensors(d.path / "model.safetensors", {{"w", Tensor::full({3}, 2.f)}});
    const WeightStore s = WeightStore::open(d.path);
    CHECK_FALSE(s.sharded());
    CHECK(s.get("w").at({2}) == 2.f);

    fs::create_directories(d.path / "empty");
    std::string msg = error_of([&] { WeightStore::open(d.path / "empty"); });
    CHECK(msg.find("found none") != std::string::npos);
    msg = error_of([&] { WeightStore::open(d.path / "absent.safetensors"); });
    CHECK(msg.find("absent.safetensors: no such file or directory") != std::string::npos);
}

TEST_CASE("WeightLoader: reports every missing tensor and every shape mismatch at once") {
    const WeightStore s = WeightStore::open(corpus() / "good_sharded");
    WeightLoader root(s);
    WeightLoader layer0 = root.scope("layer.");
    WeightLoader l0 = layer0.scope("0.");
    CHECK(l0.prefix() == "layer.0.");

    const Tensor w = l0.take("weight", {2, 2});
    CHECK(w.defined());
    CHECK(w.at({0, 1}) == 2.0f);
    CHECK_FALSE(l0.take("bias", {3}).defined());                 // mismatch
    CHECK_FALSE(layer0.take("2.weight", {2, 2}).defined());      // missing
    CHECK_FALSE(root.take("lm_head.weight", {5, 2}).defined());  // missing
    CHECK_FALSE(root.take_optional("head.bias", {1}).defined()); // optional: not an error
    const Tensor b = layer0.take("1.weight", {2, 2}, DType::F32);
    CHECK(b.dtype() == DType::F32);
    CHECK(b.at({1, 0}) == 3.0f);
    CHECK(root.unused() == std::vector<std::string>{"head.weight"});
    CHECK(l0.missing() == std::vector<std::string>{"layer.2.weight", "lm_head.weight"});

    const std::string msg = error_of([&] { root.finish(); });
    CAPTURE(msg);
    CHECK(msg.rfind("[weights] ", 0) == 0);
    CHECK(msg.find("good_sharded") != std::string::npos);
    CHECK(msg.find("2 missing tensors: 'layer.2.weight', 'lm_head.weight'") != std::string::npos);
    CHECK(msg.find("1 shape mismatch: 'layer.0.bias' has shape (2,), expected (3,) in model-00001-of-00002.safetensors") !=
          std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);

    WeightLoader ok(s);
    ok.take("head.weight", {1, 2});
    CHECK_NOTHROW(ok.finish());
}

TEST_CASE("save_safetensors: round trip over random shapes and every dtype") {
    TempDir d;
    std::mt19937 gen(7);
    std::uniform_int_distribution<int> dim(1, 9), rank(0, 4);
    const DType dtypes[] = {DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64};
    std::vector<std::pair<std::string, Tensor>> ts;
    for (int i = 0; i < 20; ++i) {
        Shape sh;
        for (int r = rank(gen); r > 0; --r) sh.push_back(dim(gen));
        ts.emplace_back("t" + std::to_string(i) + ".w", random_tensor(sh, dtypes[i % 5], 100 + i));
    }
    ts.emplace_back("zero", Tensor::empty({0, 3}, DType::BF16));
    ts.emplace_back("transposed", random_tensor({5, 3}, DType::I64, 9).transpose(0, 1));  // strided: (3, 5)
    ts.emplace_back("sliced", random_tensor({7, 6}, DType::F16, 10).slice(1, 1, 4));      // strided: (7, 3)
    const std::map<std::string, std::string> meta{{"format", "pt"}, {"a b", "c\"d"}};
    const fs::path p = d.path / "rt.safetensors";
    save_safetensors(p, ts, meta);
    CHECK_FALSE(fs::exists(d.path / "rt.safetensors.tmp"));

    const auto f = SafetensorsFile::open(p);
    CHECK(f.metadata() == meta);
    CHECK(f.names().size() == ts.size());
    for (const auto& [name, t] : ts) {
        CAPTURE(name);
        const Tensor g = f.get(name);
        CHECK(same_bytes(g, t));
        CHECK(reinterpret_cast<std::uintptr_t>(g.raw()) % dtype_size(g.dtype()) == 0);  // aligned: a view
    }

    // Header: length a multiple of 8, space padding, tensors sorted by name after __metadata__.
    const auto bytes = read_bytes(p);
    std::uint64_t n;
    std::memcpy(&n, bytes.data(), 8);
    CHECK(n % 8 == 0);
    const std::string header(bytes.begin() + 8, bytes.begin() + 8 + std::ptrdiff_t(n));
    const auto j = nlohmann::ordered_json::parse(header);
    std::vector<std::string> keys;
    for (const auto& [k, v] : j.items()) keys.push_back(k);
    CHECK(keys.front() == "__metadata__");
    CHECK(std::is_sorted(keys.begin() + 1, keys.end()));

    // Writing again is byte-identical (deterministic).
    save_safetensors(d.path / "rt2.safetensors", ts, meta);
    CHECK(read_bytes(d.path / "rt2.safetensors") == bytes);
}

TEST_CASE("save_safetensors: byte layout matches the reference writer") {
    // huggingface/safetensors tensor.rs test_serialization_forced_alignement: "attn0", F32 (1, 1, 2, 3), 0..5.
    TempDir d;
    Tensor t = Tensor::empty({1, 1, 2, 3});
    for (int i = 0; i < 6; ++i) t.data<float>()[i] = float(i);
    save_safetensors(d.path / "ref.safetensors", {{"attn0", t}});
    std::string expect("\x48\0\0\0\0\0\0\0", 8);
    expect += R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})";
    expect += std::string(7, ' ');
    for (int i = 0; i < 6; ++i) {
        const float v = float(i);
        expect.append(reinterpret_cast<const char*>(&v), 4);
    }
    const auto got = read_bytes(d.path / "ref.safetensors");
    CHECK(std::string(got.begin(), got.end()) == expect);

    // The reference's empty file: {} padded to 8 bytes.
    save_safetensors(d.path / "empty.safetensors", {});
    const auto e = read_bytes(d.path / "empty.safetensors");
    CHECK(std::string(e.begin(), e.end()) == std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
}

TEST_CASE("save_safetensors: rejects bad input") {
    TempDir d;
    const fs::path p = d.path / "x.safetensors";
    const Tensor a = Tensor::full({2}, 1.f);
    CHECK(error_of([&] { save_safetensors(p, {{"a", a}, {"a", a}}); }).find("duplicate tensor name 'a'") !=
          std::string::npos);
    CHECK(error_of([&] { save_safetensors(p, {{"__metadata__", a}}); }).find("__metadata__") != std::string::npos);
    CHECK(error_of([&] { save_safetensors(p, {{"u", Tensor()}}); }).find("tensor 'u' is undefined") !=
          std::string::npos);
    CHECK(error_of([&] { save_safetensors(p, {{std::string("bad\xff", 4), a}}); }).find("valid UTF-8") !=
          std::string::npos);
    CHECK_FALSE(fs::exists(p));
    CHECK(error_of([&] { save_safetensors(d.path / "no_dir" / "x.safetensors", {{"a", a}}); })
              .find("cannot open") != std::string::npos);
}

TEST_CASE("parse_safetensors: a header of exactly the 100 MB limit is read, one byte more is not") {
    // A 100,000,000-byte header of spaces around {} is valid (reference: n > MAX_HEADER_SIZE is the error).
    std::vector<std::byte> buf(8 + kSafetensorsMaxHeader, std::byte(' '));
    std::memcpy(buf.data(), &kSafetensorsMaxHeader, 8);
    buf[8] = std::byte('{');
    buf[9] = std::byte('}');
    CHECK(parse_safetensors(buf.data(), buf.size(), "big").entries.empty());
    const std::uint64_t over = kSafetensorsMaxHeader + 1;
    std::memcpy(buf.data(), &over, 8);
    CHECK(error_of([&] { parse_safetensors(buf.data(), buf.size(), "big"); }).find("exceeds the limit") !=
          std::string::npos);
}

TEST_CASE("parse_safetensors: random corruption never crashes and always names the file") {
    TempDir d;
    save_safetensors(d.path / "ok.safetensors",
                     {{"a", random_tensor({3, 5}, DType::F32, 1)}, {"b", random_tensor({4}, DType::BF16, 2)}},
                     {{"k", "v"}});
    const auto good = read_bytes(d.path / "ok.safetensors");
    std::mt19937 gen(3);
    int rejected = 0;
    for (int trial = 0; trial < 2000; ++trial) {
        std::vector<unsigned char> b = good;
        const int kind = trial % 3;
        if (kind == 0) {  // flip a byte in the length or header
            std::uniform_int_distribution<std::size_t> pos(0, 8 + 100);
            b[pos(gen)] ^= std::uint8_t(1u << (gen() % 8));
        } else if (kind == 1) {  // truncate
            b.resize(gen() % b.size());
        } else {  // append
            b.insert(b.end(), 1 + gen() % 9, 0);
        }
        try {
            parse_safetensors(reinterpret_cast<const std::byte*>(b.data()), b.size(), "fuzz.safetensors");
        } catch (const Error& e) {
            ++rejected;
            CHECK(std::string(e.what()).find("fuzz.safetensors") != std::string::npos);
        }
    }
    CHECK(rejected > 1000);  // every truncation and append is an error
}

TEST_CASE("MmapFile: empty files, directories and missing files") {
    TempDir d;
    write_bytes(d.path / "empty", "");
    const MmapFile e = MmapFile::open(d.path / "empty");
    CHECK(e.size() == 0);
    CHECK(e.data() == nullptr);
    write_bytes(d.path / "abc", "abc");
    MmapFile f = MmapFile::open(d.path / "abc");
    CHECK(f.size() == 3);
    CHECK(std::memcmp(f.data(), "abc", 3) == 0);
    MmapFile g = std::move(f);
    CHECK(g.size() == 3);
    CHECK(f.data() == nullptr);
    CHECK(error_of([&] { MmapFile::open(d.path); }).find("expected a regular file") != std::string::npos);
    CHECK(error_of([&] { MmapFile::open(d.path / "none"); }).find("cannot open") != std::string::npos);
}
