// The serving engine of `vlmamba serve` without HTTP: request parsing and its errors, SHA-256 and base64, the
// prefix-state cache, and continuous batching on the bundled model (answers equal to single sessions; a follow-up
// turn prefilling only its new tokens).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "test_helpers.hpp"
#include "vlmamba/serve/engine.hpp"
#include "vlmamba/session/session.hpp"

using namespace vlmamba;
namespace fs = std::filesystem;
using vlmamba::test::read_bytes;

namespace {

std::string base64(const std::vector<std::uint8_t>& b) {
    static constexpr char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string s;
    for (std::size_t i = 0; i < b.size(); i += 3) {
        const std::uint32_t v = std::uint32_t(b[i]) << 16 | (i + 1 < b.size() ? b[i + 1] << 8 : 0) |
                                (i + 2 < b.size() ? b[i + 2] : 0);
        s.push_back(a[v >> 18]);
        s.push_back(a[(v >> 12) & 63]);
        s.push_back(i + 1 < b.size() ? a[(v >> 6) & 63] : '=');
        s.push_back(i + 2 < b.size() ? a[v & 63] : '=');
    }
    return s;
}

std::vector<std::uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }

serve::ApiError api_error(std::string_view body, const serve::Limits& limits = {}) {
    try {
        serve::parse_chat_request(body, limits);
    } catch (const serve::ApiError& e) {
        return e;
    }
    FAIL("expected an ApiError for ", body);
    return serve::ApiError(0, "", "");
}

struct Question {
    std::string image, text;
};

nlohmann::json user_with_image(const fs::path& image, const std::string& text) {
    return {{"role", "user"},
            {"content",
             {{{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64," + base64(read_bytes(image))}}}},
              {{"type", "text"}, {"text", text}}}}};
}

std::shared_ptr<serve::Job> job_for(const Model& m, const nlohmann::json& messages) {
    const serve::ChatRequest cr = serve::parse_chat_request(
        nlohmann::json{{"messages", messages}, {"temperature", 0}, {"max_tokens", 24}}.dump(), {});
    Request r;
    r.sampling = cr.sampling;
    r.max_tokens = cr.max_tokens;
    return std::make_shared<serve::Job>(serve::render_prompt(m, cr, {}), r);
}

}  // namespace

TEST_CASE("sha256: FIPS 180-4 test vectors (one block, two blocks, a million bytes)") {
    CHECK(hex(sha256(bytes(""))) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(hex(sha256(bytes("abc"))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(hex(sha256(bytes("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))) ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(hex(sha256(std::vector<std::uint8_t>(1000000, 'a'))) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("base64: RFC 4648 vectors, padded or not; bad input named") {
    CHECK(base64_decode("Zm9vYmFy", "x") == bytes("foobar"));
    CHECK(base64_decode("Zm9vYg==", "x") == bytes("foob"));
    CHECK(base64_decode("Zm9vYg", "x") == bytes("foob"));
    CHECK(base64_decode("Zg==", "x") == bytes("f"));
    CHECK(base64_decode("", "x").empty());
    CHECK_THROWS_WITH_AS(base64_decode("Zm9v@mFy", "img"), doctest::Contains("at offset 4"), Error);
    CHECK_THROWS_WITH_AS(base64_decode("Zm9vY", "img"), doctest::Contains("dangling"), Error);
    CHECK_THROWS_AS(base64_decode("Zg=a", "img"), Error);
}

TEST_CASE("serve: a chat request is parsed; each bad one is a 400 naming the field") {
    const std::string png = "data:image/png;base64," + base64(bytes("\x89PNG"));
    const auto r = serve::parse_chat_request(
        R"({"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[
            {"type":"image_url","image_url":{"url":")" + png + R"("}},{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
            "max_tokens":9000,"temperature":0,"stop":"x","stream":true,"stream_options":{"include_usage":true},"seed":3})",
        {});
    CHECK(r.model == "m");
    REQUIRE(r.messages.size() == 2);
    CHECK(r.messages[1].text == "a\nb");
    REQUIRE(r.messages[1].images.size() == 1);
    CHECK(r.messages[1].images[0].bytes == bytes("\x89PNG"));
    CHECK(r.max_tokens == 4096);  // capped
    CHECK(r.sampling.temperature == 0.f);
    CHECK(r.sampling.seed == 3);
    CHECK((r.stream && r.include_usage && r.stop == std::vector<std::string>{"x"}));
    CHECK(serve::parse_chat_request(R"({"messages":[{"role":"user","content":"hi"}]})", {}).max_tokens == 512);

    CHECK(api_error("{").param.empty());
    CHECK(api_error("{").status == 400);
    CHECK(api_error("[1]").status == 400);
    CHECK(api_error(R"({"messages":[]})").param == "messages");
    CHECK(api_error(R"({"messages":[{"role":"robot","content":"x"}]})").param == "messages[0].role");
    CHECK(api_error(R"({"messages":[{"role":"user","content":[{"type":"audio"}]}]})").param ==
          "messages[0].content[0].type");
    CHECK(api_error(R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,@"}}]}]})")
              .code == "invalid_base64");
    CHECK(api_error(R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://a/b.png"}}]}]})")
              .code == "url_not_allowed");
    CHECK(api_error(R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"file:///etc/passwd"}}]}]})")
              .code == "url_not_allowed");
    CHECK(api_error(R"({"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]})").param ==
          "messages");
    CHECK(api_error(R"({"messages":[{"role":"user","content":"x"}],"temperature":"hot"})").param == "temperature");
    CHECK(api_error(R"({"messages":[{"role":"user","content":"x"}],"max_tokens":0})").param == "max_tokens");
    CHECK(api_error(R"({"messages":[{"role":"user","content":"x"}],"n":2})").param == "n");
    serve::Limits small;
    small.max_body = 10;
    CHECK(api_error(R"({"messages":[{"role":"user","content":"x"}]})", small).status == 413);
    small = {};
    small.max_images = 1;
    const std::string two = R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":")" + png +
                            R"("}},{"type":"image_url","image_url":{"url":")" + png + R"("}}]}]})";
    CHECK(api_error(two, small).code == "too_many_images");
    CHECK(api_error(std::string(200, '[') + std::string(200, ']')).code == "invalid_json");
}

TEST_CASE("prefix cache: the longest cached prefix wins; the least recently used leave first") {
    const MambaLm& lm = test::bundled_model().lm();
    auto entry = [&](std::vector<std::uint64_t> key) {
        return serve::PrefixCache::Entry{std::move(key), lm.new_state(1), std::vector<float>(8, 0.f)};
    };
    const std::size_t one = entry({1, 2}).bytes();
    serve::PrefixCache cache(3 * one + 32);  // keys of 2, 4 and 1 words fit; a fourth entry does not
    cache.put(entry({1, 2}));
    cache.put(entry({1, 2, 3, 4}));
    cache.put(entry({7}));
    const std::vector<std::uint64_t> q{1, 2, 3, 4, 5};
    REQUIRE(cache.longest_prefix(q) != nullptr);
    CHECK(cache.longest_prefix(q)->key.size() == 4);
    CHECK(cache.longest_prefix(std::vector<std::uint64_t>{1, 2, 3})->key.size() == 2);
    CHECK(cache.longest_prefix(std::vector<std::uint64_t>{2, 1}) == nullptr);
    cache.put(entry({9, 9}));  // over budget: {7}, the least recently used, leaves
    CHECK(cache.size() == 3);
    CHECK(cache.longest_prefix(std::vector<std::uint64_t>{7}) == nullptr);
    CHECK(cache.longest_prefix(std::vector<std::uint64_t>{1, 2}) != nullptr);
}

TEST_CASE("serve engine: 6 concurrent requests on 3 slots answer as single sessions; a follow-up prefills only "
          "its new tokens") {
    const Model& m = test::bundled_model();
    const fs::path shapes = fs::path(VLMAMBA_TEST_DATA_DIR) / "shapes";
    std::vector<Question> qs;
    std::ifstream in(shapes / "questions.jsonl");
    for (std::string line; qs.size() < 6 && std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line);
        qs.push_back({(shapes / "images" / j["image"].get<std::string>()).string(), j["text"].get<std::string>()});
    }
    std::vector<std::string> expected;
    for (const auto& q : qs) {
        Session s(m);
        Request r;
        r.prompt = q.text;
        r.images = {ImageInput(fs::path(q.image))};
        r.max_tokens = 24;
        expected.push_back(s.generate(r).text);
    }
    serve::Engine engine(m, {.parallel = 3, .queue = 8, .cache_bytes = std::size_t{16} << 20});
    std::vector<std::shared_ptr<serve::Job>> jobs;
    for (const auto& q : qs) {
        jobs.push_back(job_for(m, nlohmann::json::array({user_with_image(q.image, q.text)})));
        REQUIRE(engine.submit(jobs.back()));
    }
    for (std::size_t i = 0; i < qs.size(); ++i) {
        std::string streamed, piece;
        while (jobs[i]->next_piece(piece)) streamed += piece;
        const Result& r = jobs[i]->wait();
        CHECK_MESSAGE(r.text == expected[i], qs[i].text);
        CHECK(streamed == r.text);
        CHECK(r.finish_reason == "stop");
    }
    CHECK(engine.metrics.cache_misses == 6);

    // The follow-up resends the conversation; the state after the first reply is in the cache.
    const auto first = nlohmann::json::array({user_with_image(qs[0].image, qs[0].text)});
    auto follow = first;
    follow.push_back({{"role", "assistant"}, {"content", expected[0]}});
    follow.push_back({{"role", "user"}, {"content", "How many shapes are there?"}});
    const std::uint64_t prefilled = engine.metrics.prefill_tokens, images = engine.metrics.images;
    auto job = job_for(m, follow);
    REQUIRE(engine.submit(job));
    const Result& r = job->wait();
    CHECK(engine.metrics.cache_hits == 1);
    CHECK(engine.metrics.images == images);  // the image's prefix came from the cache
    const std::int64_t fresh = std::int64_t(engine.metrics.prefill_tokens - prefilled);
    CHECK(fresh == r.prompt_tokens - job->cached_positions);
    const std::int64_t new_tokens = std::int64_t(m.tokenizer()->encode("<|endoftext|>How many shapes are there?").size());
    CHECK(fresh == new_tokens);

    // The same answer as a fresh session given the whole conversation.
    Session s(m);
    Request two;
    two.messages = {{"user", qs[0].text, {ImageInput(fs::path(qs[0].image))}},
                    {"assistant", expected[0], {}},
                    {"user", "How many shapes are there?", {}}};
    two.max_tokens = 24;
    CHECK(r.text == s.generate(two).text);
}
