// Tokenizer tests: UTF-8 helpers, NFC, the GPT-2 pre-tokenizer, BPE on a small hand-made
// tokenizer.json, decoding and streaming; plus HF-generated fixtures when they are present.
#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_helpers.hpp"
#include "vlmamba/io/tokenizer.hpp"
#include "vlmamba/io/utf8.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using vlmamba::Tokenizer;
using vlmamba::test::error_of;
using Ids = std::vector<std::int32_t>;

// GPT-2 bytes->unicode, derived here independently of the library.
std::string byte_sym(unsigned b) {
    unsigned next = 256;
    for (unsigned x = 0; x < 256; ++x) {
        const bool printable = (x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE);
        const unsigned cp = printable ? x : next++;
        if (x == b) {
            std::string s;
            vlmamba::utf8::append(s, cp);
            return s;
        }
    }
    return {};
}

fs::path fresh_temp_dir() {
    static std::atomic<int> counter{0};
    const fs::path dir = fs::temp_directory_path() /
                         ("vlmamba_tok_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir);
    return dir;
}

fs::path write_file(const std::string& text, const std::string& name = "tokenizer.json") {
    const fs::path p = fresh_temp_dir() / name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
}

// A small NeoX-style tokenizer.json: <|endoftext|> = 0, <|padding|> = 1, the 256 byte symbols,
// then one token per merge, then added tokens.
json make_tokenizer_json(bool merges_as_pairs) {
    json vocab = json::object();
    int next = 0;
    vocab["<|endoftext|>"] = next++;
    vocab["<|padding|>"] = next++;
    for (unsigned b = 0; b < 256; ++b) vocab[byte_sym(b)] = next++;
    const std::string G = byte_sym(' ');
    const std::vector<std::pair<std::string, std::string>> merges = {
        {G, "t"},      // 0
        {"h", "e"},    // 1
        {G + "t", "he"},  // 2
        {"l", "l"},    // 3
        {"e", "ll"},   // 4
        {"h", "ell"},  // 5
        {"hell", "o"}, // 6
        {G, "w"},      // 7
        {"o", "r"},    // 8
        {G + "w", "or"},  // 9
        {"l", "d"},    // 10
        {G + "wor", "ld"},  // 11
        {"a", "a"},    // 12
        {"aa", "aa"},  // 13
        {"Ã", "©"},    // 14: the bytes of é
        {"t", "'"},    // 15
        {"'", "s"},    // 16
        {"'", "S"},    // 17
    };
    json jm = json::array();
    for (const auto& [a, b] : merges) {
        if (!vocab.contains(a + b)) vocab[a + b] = next++;
        jm.push_back(merges_as_pairs ? json::array({a, b}) : json(a + " " + b));
    }
    auto added = [&](const std::string& content, bool special, bool normalized) {
        json t = {{"id", special ? (content == "<|endoftext|>" ? 0 : 1) : next++},
                  {"content", content},
                  {"single_word", false},
                  {"lstrip", false},
                  {"rstrip", false},
                  {"normalized", normalized},
                  {"special", special}};
        return t;
    };
    json added_tokens = json::array();
    added_tokens.push_back(added("<|endoftext|>", true, false));
    added_tokens.push_back(added("<|padding|>", true, false));
    added_tokens.push_back(added("   ", false, true));
    added_tokens.push_back(added("  ", false, true));
    added_tokens.push_back(added("A\u030A", false, true));   // normalized: matches NFC "Å"
    added_tokens.push_back(added("o\u0308", false, false));  // raw: matches only the decomposed form
    added_tokens.push_back(added("\u00F1", false, true));    // decodes to byte F1 (HF ByteLevel quirk)
    return json{{"version", "1.0"},
                {"truncation", nullptr},
                {"padding", nullptr},
                {"added_tokens", added_tokens},
                {"normalizer", {{"type", "NFC"}}},
                {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
                {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
                {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
                {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                           {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
                           {"fuse_unk", false}, {"byte_fallback", false}, {"vocab", vocab}, {"merges", jm}}}};
}

const Tokenizer& small_tokenizer() {
    static const Tokenizer tok = Tokenizer::from_file(write_file(make_tokenizer_json(false).dump()));
    return tok;
}

std::int32_t id_of(const Tokenizer& tok, const std::string& token) {
    const auto id = tok.token_to_id(token);
    REQUIRE_MESSAGE(id.has_value(), "token not in vocab: ", token);
    return *id;
}

std::vector<std::string> pieces(std::string_view s) {
    std::vector<std::string> out;
    vlmamba::detail::tok::pre_tokenize(s, [&](std::size_t b, std::size_t e) { out.emplace_back(s.substr(b, e - b)); });
    return out;
}

}  // namespace

TEST_CASE("utf8: decode, validity and maximal-subpart replacement") {
    namespace u = vlmamba::utf8;
    const std::string fffd = "\xEF\xBF\xBD";
    CHECK(u::next("\xE2\x82\xAC", 0).cp == 0x20AC);
    CHECK(u::next("\xF0\x9F\x98\x80", 0).cp == 0x1F600);
    CHECK(u::next("\xF0\x9F\x98\x80", 0).len == 4);
    CHECK(u::is_valid("h\xC3\xA9llo \xE2\x82\xAC \xF4\x8F\xBF\xBF"));
    CHECK_FALSE(u::is_valid("\xED\xA0\x80"));  // surrogate
    CHECK_FALSE(u::is_valid("\xC0\xAF"));      // overlong
    CHECK_FALSE(u::is_valid("\xF4\x90\x80\x80"));  // > U+10FFFF
    CHECK(u::first_invalid("ab\xC3(") == 2);
    CHECK(u::first_invalid("abc") == u::npos);
    // Expected values follow Rust's String::from_utf8_lossy.
    CHECK(u::to_valid("\xE1\x80" "A") == fffd + "A");
    CHECK(u::to_valid("\xF0\x90\x80") == fffd);
    CHECK(u::to_valid("\xF0\x90\x80" "b") == fffd + "b");
    CHECK(u::to_valid("\xED\xA0\x80") == fffd + fffd + fffd);
    CHECK(u::to_valid("\xC0\xAF") == fffd + fffd);
    CHECK(u::to_valid("\xF4\x90\x80\x80") == fffd + fffd + fffd + fffd);
    CHECK(u::to_valid("a\xFF" "b\x80") == "a" + fffd + "b" + fffd);
    CHECK(u::to_valid("\xE2\x82") == fffd);
    std::string s;
    for (char32_t cp : {char32_t{0x41}, char32_t{0xE9}, char32_t{0x20AC}, char32_t{0x1F600}}) u::append(s, cp);
    CHECK(s == "A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
}

TEST_CASE("utf8: the incremental decoder equals whole-buffer lossy decoding for every split") {
    namespace u = vlmamba::utf8;
    std::mt19937 rng(7);
    const std::vector<std::string> atoms = {"a", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xFF", "\x80",
                                            "\xE1\x80", "\xED\xA0", "\xF0\x90", "\xC3", " "};
    for (int trial = 0; trial < 300; ++trial) {
        std::string bytes;
        const int n = 1 + static_cast<int>(rng() % 12);
        for (int k = 0; k < n; ++k) bytes += atoms[rng() % atoms.size()];
        u::Incremental inc;
        std::string streamed;
        std::size_t i = 0;
        while (i < bytes.size()) {
            const std::size_t step = 1 + rng() % 3;
            const std::string chunk = bytes.substr(i, step);
            const std::string out = inc.push(chunk);
            CHECK(u::is_valid(out));
            streamed += out;
            i += step;
        }
        streamed += inc.flush();
        CHECK(streamed == u::to_valid(bytes));
    }
}

TEST_CASE("nfc composes via utf8proc") {
    CHECK(vlmamba::nfc("plain ascii") == "plain ascii");
    CHECK(vlmamba::nfc("e\u0301") == "\u00E9");
    CHECK(vlmamba::nfc("\u212B") == "\u00C5");            // Angstrom sign -> A with ring
    CHECK(vlmamba::nfc("\u1100\u1161") == "\uAC00");       // Hangul jamo -> syllable
    CHECK(vlmamba::nfc("\u00E9") == "\u00E9");
    CHECK(vlmamba::nfc(std::string("a\0b\u00E9", 5)) == std::string("a\0b\u00E9", 5));  // NUL kept
    CHECK_THROWS_AS(vlmamba::nfc("\xC3(\xC3\xA9"), vlmamba::Error);
}

TEST_CASE("pre-tokenizer follows the GPT-2 pattern") {
    using V = std::vector<std::string>;
    CHECK(pieces("Hello world") == V{"Hello", " world"});
    CHECK(pieces("a   b") == V{"a", "  ", " b"});
    CHECK(pieces("a\n\nb") == V{"a", "\n", "\n", "b"});
    CHECK(pieces("a \n b") == V{"a", " \n", " b"});
    CHECK(pieces("hi  ") == V{"hi", "  "});
    CHECK(pieces("  hi") == V{" ", " hi"});
    CHECK(pieces(" ") == V{" "});
    CHECK(pieces("\tword") == V{"\t", "word"});
    CHECK(pieces("it's") == V{"it", "'s"});
    CHECK(pieces("IT'S") == V{"IT", "'", "S"});  // contractions are case-sensitive
    CHECK(pieces("we'll've'd'm're't") == V{"we", "'ll", "'ve", "'d", "'m", "'re", "'t"});
    CHECK(pieces(" 's") == V{" '", "s"});
    CHECK(pieces("?'s") == V{"?'", "s"});
    CHECK(pieces("hello!!! 123abc") == V{"hello", "!!!", " 123", "abc"});
    CHECK(pieces("x\u00BD") == V{"x", "\u00BD"});               // No is \p{N}
    CHECK(pieces("2024\u5E74") == V{"2024", "\u5E74"});         // digits stay together; Lo is \p{L}
    CHECK(pieces("e\u0301") == V{"e", "\u0301"});               // Mn is neither L nor N
    CHECK(pieces("\u00A0x") == V{"\u00A0", "x"});               // NBSP is \s but not the ' ?' space
    CHECK(pieces("a\u3000\u3000b") == V{"a", "\u3000", "\u3000", "b"});
    CHECK(pieces("x\u0085y") == V{"x", "\u0085", "y"});
    CHECK(pieces("x\u2028y") == V{"x", "\u2028", "y"});
    CHECK(pieces("a \u00A0b") == V{"a", " ", "\u00A0", "b"});
    CHECK(pieces("a\x1F" "b") == V{"a", "\x1F", "b"});         // U+001F is not \s
    CHECK(pieces(" \x1F") == V{" \x1F"});
    CHECK(pieces("a\v\fb") == V{"a", "\v", "\f", "b"});
    CHECK(pieces("") == V{});
}

TEST_CASE("tokenizer: BPE encodings derived by hand") {
    const Tokenizer& tok = small_tokenizer();
    auto id = [&](const std::string& s) { return id_of(tok, s); };
    const std::string G = byte_sym(' ');

    // "hello": (h,e) rank 1 fires before (l,l) rank 3, so "hello" is never reached.
    CHECK(tok.encode("hello world") == Ids{id("he"), id("ll"), id("o"), id(G + "world")});
    CHECK(tok.encode(" the") == Ids{id(G + "the")});
    CHECK(tok.encode("the") == Ids{id("t"), id("he")});
    CHECK(tok.encode("aaaaa") == Ids{id("aaaa"), id("a")});
    CHECK(tok.encode("aaaaaa") == Ids{id("aaaa"), id("aa")});
    // Contractions split before BPE: (t,') never meets in "it's"; 'S is not a contraction.
    CHECK(tok.encode("it's") == Ids{id("i"), id("t"), id("'s")});
    CHECK(tok.encode("IT'S") == Ids{id("I"), id("T"), id("'"), id("S")});
    CHECK(tok.encode("\u00E9") == Ids{id("\u00C3\u00A9")});
    CHECK(tok.encode("e\u0301") == Ids{id("\u00C3\u00A9")});  // NFC first
    CHECK(tok.encode("\n") == Ids{id(byte_sym('\n'))});
    CHECK(tok.encode("") == Ids{});
    CHECK(tok.vocab_size() == 2 + 256 + 18 + 5);
}

TEST_CASE("tokenizer: added tokens, raw and normalized, leftmost-longest") {
    const Tokenizer& tok = small_tokenizer();
    auto id = [&](const std::string& s) { return id_of(tok, s); };
    const std::string G = byte_sym(' ');
    const std::int32_t sp2 = id("  "), sp3 = id("   ");
    CHECK(tok.encode("a  b") == Ids{id("a"), sp2, id("b")});
    CHECK(tok.encode("a    b") == Ids{id("a"), sp3, id(G), id("b")});
    CHECK(tok.encode("a     b") == Ids{id("a"), sp3, sp2, id("b")});
    CHECK(tok.encode("x  ") == Ids{id("x"), sp2});
    CHECK(tok.encode("a<|endoftext|>b") == Ids{id("a"), 0, id("b")});
    CHECK(tok.encode("<|endoftext|><|padding|>") == Ids{0, 1});
    CHECK(tok.encode(" <|endoftext|> the") == Ids{id(G), 0, id(G + "the")});
    // Normalized added token: its content is NFC'd and matched on NFC text.
    const std::int32_t ring = id("A\u030A");
    CHECK(tok.encode("A\u030A") == Ids{ring});
    CHECK(tok.encode("\u00C5") == Ids{ring});
    CHECK(tok.encode("\u212B") == Ids{ring});
    // Non-normalized added token: matched on the raw text only.
    const std::int32_t uml = id("o\u0308");
    CHECK(tok.encode("o\u0308") == Ids{uml});
    CHECK(tok.encode("\u00F6") == Ids{id("\u00C3"), id(byte_sym(0xB6))});
    CHECK(tok.token_to_id("<|endoftext|>") == 0);
    CHECK_FALSE(tok.token_to_id("not a token").has_value());
    CHECK(tok.id_to_token(id(G + "the")) == G + "the");
    CHECK(tok.is_special(0));
    CHECK(tok.is_special(1));
    CHECK_FALSE(tok.is_special(sp2));
}

TEST_CASE("tokenizer: merges as [a, b] pairs equal merges as \"a b\" strings") {
    const Tokenizer a = Tokenizer::from_string(make_tokenizer_json(false).dump());
    const Tokenizer b = Tokenizer::from_string(make_tokenizer_json(true).dump());
    for (const char* s : {"hello world", " the it's aaaaa", "IT'S \u00E9  x"}) CHECK(a.encode(s) == b.encode(s));
}

TEST_CASE("tokenizer: decoding") {
    const Tokenizer& tok = small_tokenizer();
    auto id = [&](const std::string& s) { return id_of(tok, s); };
    const std::string fffd = "\xEF\xBF\xBD";
    for (const char* s : {"hello world", "a  b", " \n\t x", "it's IT'S", "caf\u00E9 \u20AC \U0001F600", "<|endoftext|>x"})
        CHECK(tok.decode(tok.encode(s)) == s);
    CHECK(tok.decode(Ids{id("\u00C3")}) == fffd);  // half of é
    CHECK(tok.decode(Ids{id("\u00C3"), id("\u00A9")}) == "\u00E9");
    CHECK(tok.decode(Ids{0, id("a"), 1}) == "<|endoftext|>a<|padding|>");
    CHECK(tok.decode(Ids{0, id("a"), 1}, /*skip_special=*/true) == "a");
    CHECK(tok.decode(Ids{id("  ")}) == "  ");                 // chars outside the byte table: verbatim
    CHECK(tok.decode(Ids{id("o\u0308")}) == "o\u0308");
    CHECK(tok.decode(Ids{id("\u00F1")}) == fffd);             // U+00F1 maps back to the lone byte F1
    const std::string err = error_of([&] { (void)tok.decode(Ids{id("a"), 99999}); });
    CHECK(err.find("99999") != std::string::npos);
    CHECK(err.find(std::to_string(tok.vocab_size())) != std::string::npos);
    CHECK_THROWS_AS((void)tok.decode(Ids{-1}), vlmamba::Error);
}

TEST_CASE("tokenizer: invalid UTF-8 input is refused with its byte offset") {
    const Tokenizer& tok = small_tokenizer();
    const std::string err = error_of([&] { (void)tok.encode("ab\xC3("); });
    CHECK(err == "[tokenizer] invalid UTF-8 at byte 2");
    CHECK_THROWS_AS((void)tok.encode("\xED\xA0\x80"), vlmamba::Error);
    CHECK_THROWS_AS((void)tok.encode("ok\xE2\x82"), vlmamba::Error);
}

TEST_CASE("stream decoder emits complete characters only") {
    const Tokenizer& tok = small_tokenizer();
    auto byte_id = [&](unsigned b) { return id_of(tok, byte_sym(b)); };
    const std::string fffd = "\xEF\xBF\xBD";
    {
        vlmamba::StreamDecoder dec(tok);
        CHECK(dec.push(byte_id('a')) == "a");
        CHECK(dec.push(byte_id(0xE2)) == "");
        CHECK(dec.push(byte_id(0x82)) == "");
        CHECK(dec.push(byte_id(0xAC)) == "\u20AC");
        CHECK(dec.push(id_of(tok, "\u00C3")) == "");
        CHECK(dec.push(id_of(tok, "\u00A9")) == "\u00E9");
        CHECK(dec.push(byte_id(0xFF)) == fffd);
        CHECK(dec.push(byte_id(0xF0)) == "");
        CHECK(dec.flush() == fffd);
        CHECK(dec.flush() == "");
    }
    {
        vlmamba::StreamDecoder dec(tok, /*skip_special=*/true);
        CHECK(dec.push(0) == "");
        CHECK(dec.push(byte_id('z')) == "z");
    }
    // Property: the streamed text equals decode() for random id sequences.
    std::mt19937 rng(3);
    for (int trial = 0; trial < 200; ++trial) {
        Ids ids;
        const int n = 1 + static_cast<int>(rng() % 16);
        for (int k = 0; k < n; ++k) ids.push_back(static_cast<std::int32_t>(rng() % tok.vocab_size()));
        vlmamba::StreamDecoder dec(tok);
        std::string streamed;
        for (std::int32_t i : ids) streamed += dec.push(i);
        streamed += dec.flush();
        CHECK(streamed == tok.decode(ids));
    }
}

TEST_CASE("tokenizer: long inputs stay fast and round-trip") {
    const Tokenizer& tok = small_tokenizer();
    const std::string long_word(200001, 'a');
    const Ids ids = tok.encode(long_word);
    REQUIRE(ids.size() == 50001);
    CHECK(ids.front() == id_of(tok, "aaaa"));
    CHECK(ids.back() == id_of(tok, "a"));
    std::mt19937 rng(11);
    const std::vector<std::string> atoms = {"the", " ", "  ", "hello", "\n", "\u00E9", "e\u0301", "it's", "42", "!",
                                            "\u20AC", "<|endoftext|>", "\u00A0", "\U0001F600", "world", "\t"};
    std::string text;
    for (int k = 0; k < 20000; ++k) text += atoms[rng() % atoms.size()];
    CHECK(tok.decode(tok.encode(text)) == vlmamba::nfc(text));
}

TEST_CASE("tokenizer: a default-constructed tokenizer is empty") {
    const Tokenizer empty;
    CHECK(empty.vocab_size() == 0);
    CHECK(empty.encode("abc") == Ids{});
    CHECK_THROWS_AS((void)empty.decode(Ids{0}), vlmamba::Error);
}

TEST_CASE("tokenizer: loading errors name the file") {
    const fs::path missing = fresh_temp_dir() / "nope.json";
    std::string err = error_of([&] { (void)Tokenizer::from_file(missing); });
    CHECK(err.find(missing.string()) != std::string::npos);

    const fs::path bad = write_file("{ not json");
    err = error_of([&] { (void)Tokenizer::from_file(bad); });
    CHECK(err.find(bad.string()) != std::string::npos);
    CHECK(err.find("JSON") != std::string::npos);

    json j = make_tokenizer_json(false);
    j["model"].erase("merges");
    const fs::path no_merges = write_file(j.dump());
    err = error_of([&] { (void)Tokenizer::from_file(no_merges); });
    CHECK(err == "[tokenizer] " + no_merges.string() + ": expected model.merges, got none");

    j = make_tokenizer_json(false);
    j["model"]["type"] = "WordPiece";
    const fs::path wordpiece = write_file(j.dump());
    err = error_of([&] { (void)Tokenizer::from_file(wordpiece); });
    CHECK(err == "[tokenizer] " + wordpiece.string() + ": expected model.type BPE, got WordPiece");

    j = make_tokenizer_json(false);
    j["model"]["merges"].push_back("q zz");
    err = error_of([&] { (void)Tokenizer::from_string(j.dump(), "mem.json"); });
    CHECK(err.find("mem.json") != std::string::npos);
    CHECK(err.find("\"zz\"") != std::string::npos);
}

TEST_CASE("tokenizer: HF fixtures (tests/data/tokenizer)") {
#ifndef VLMAMBA_TEST_DATA_DIR
    MESSAGE("VLMAMBA_TEST_DATA_DIR is not defined: HF tokenizer fixtures skipped");
#else
    const fs::path dir = fs::path(VLMAMBA_TEST_DATA_DIR) / "tokenizer";
    if (!fs::exists(dir / "tokenizer.json") || !fs::exists(dir / "cases.json")) {
        MESSAGE("no HF tokenizer fixtures in ", dir.string(), ": skipped");
        return;
    }
    const Tokenizer tok = Tokenizer::from_file(dir / "tokenizer.json");
    auto read_json = [](const fs::path& p) {
        std::ifstream in(p, std::ios::binary);
        return json::parse(in);
    };
    // "decoded" may come from tokenizers' decode (skips special tokens by default) or from
    // transformers' (keeps them); an optional "skip_special_tokens" field settles it.
    auto skip_for = [&](const Ids& ids, const json& c) {
        const std::string want = c.at("decoded").get<std::string>();
        if (c.contains("skip_special_tokens")) return c["skip_special_tokens"].get<bool>();
        return tok.decode(ids, false) != want && tok.decode(ids, true) == want;
    };
    const json cases = read_json(dir / "cases.json");
    REQUIRE(cases.is_array());
    for (const json& c : cases) {
        const std::string text = c.at("text").get<std::string>();
        const Ids want = c.at("ids").get<Ids>();
        CAPTURE(c.dump());
        CHECK(tok.encode(text) == want);
        CHECK(tok.decode(want, skip_for(want, c)) == c.at("decoded").get<std::string>());
        CHECK(tok.decode(tok.encode(text)) == vlmamba::nfc(text));
    }
    if (fs::exists(dir / "decode_cases.json")) {
        for (const json& c : read_json(dir / "decode_cases.json")) {
            CAPTURE(c.dump());
            const Ids ids = c.at("ids").get<Ids>();
            const bool skip = skip_for(ids, c);
            CHECK(tok.decode(ids, skip) == c.at("decoded").get<std::string>());
            vlmamba::StreamDecoder dec(tok, skip);
            std::string streamed;
            for (std::int32_t i : ids) streamed += dec.push(i);
            CHECK(streamed + dec.flush() == c.at("decoded").get<std::string>());
        }
    }
#endif
}
