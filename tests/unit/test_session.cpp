// The session API on the fixtures and the bundled model: multi-turn state reuse, saved states, batches, templates,
// stop strings and streaming, and shared models under threads.
#include <doctest/doctest.h>

#include <filesystem>
#include <thread>

#include "test_helpers.hpp"
#include "vlmamba/session/batch.hpp"
#include "vlmamba/session/load.hpp"
#include "vlmamba/session/session.hpp"

using namespace vlmamba;
namespace fs = std::filesystem;

namespace {
const fs::path kData = fs::path(VLMAMBA_TEST_DATA_DIR);
const fs::path kBundled = fs::path(VLMAMBA_ZOO_DIR) / "shapes-vlmamba";

// Greedy ids from one prefill of `ids` with the plain model API (no session).
std::vector<std::int32_t> greedy_plain(const MambaLm& lm, const Tensor& embeds, int n) {
    MambaState st = lm.new_state(1);
    const Tensor h = lm.forward_hidden(embeds, &st);
    Tensor last = lm.logits(h.slice(0, h.size(0) - 1, h.size(0)));
    std::vector<std::int32_t> out;
    for (int i = 0; i < n; ++i) {
        const float* l = last.data<float>();
        const auto id = std::int32_t(std::max_element(l, l + last.numel()) - l);
        out.push_back(id);
        last = lm.step(std::span<const std::int32_t>(&id, 1), st);
    }
    return out;
}
}  // namespace

// The bundled model, loaded once for the test binary (test_serve.cpp uses it too).
const Model& vlmamba::test::bundled_model() {
    static const Model m = Model::load(kBundled);
    return m;
}

TEST_CASE("session: a Mamba LM fixture generates the greedy ids of the plain model API") {
    const fs::path dir = kData / "mamba" / "tiny-tied" / "hf-f32";
    const Model m = Model::load(dir);
    CHECK(m.kind() == Model::Kind::MambaLm);
    CHECK(m.variant() == "mamba-lm");
    const std::vector<std::int32_t> prompt{5, 17, 9, 3};
    Request r;
    r.ids = prompt;
    r.max_tokens = 8;
    r.ignore_eos = true;
    Session s(m);
    const Result res = s.generate(r);
    CHECK(res.ids == greedy_plain(m.lm(), m.lm().embed(prompt), 8));
    CHECK(res.finish_reason == "length");
    CHECK(res.prompt_tokens == 4);
}

TEST_CASE("session: two turns equal one prefill of the whole history, and the second prefills only new tokens") {
    const Model m = Model::load(kBundled);
    REQUIRE(m.kind() == Model::Kind::VlMamba);
    const fs::path img = kData / "shapes" / "images";
    REQUIRE(fs::exists(img));
    fs::path first;
    for (const auto& e : fs::directory_iterator(img)) {
        if (first.empty() || e.path() < first) first = e.path();
    }
    Session s(m);
    Request t1;
    t1.prompt = "What color is the circle?";
    t1.images = {ImageInput(first)};
    t1.max_tokens = 6;
    const Result r1 = s.generate(t1);
    CHECK(r1.image_tokens > 0);
    CHECK(r1.prompt_tokens > r1.image_tokens);
    const std::vector<std::int32_t> after1 = s.tokens();

    Request t2;
    t2.prompt = "How many shapes are there?";
    t2.max_tokens = 6;
    const Result r2 = s.generate(t2);
    REQUIRE(!r2.ids.empty());
    MESSAGE("turn 1: \"" << r1.text << "\", turn 2: \"" << r2.text << "\" (prefill " << r2.prompt_tokens << ")");
    // The second turn prefilled only what it added: the history grew by its prompt, then by its reply.
    const std::vector<std::int32_t> all = s.tokens();
    const std::size_t before_reply2 = all.size() - r2.ids.size();
    CHECK(std::int64_t(before_reply2 - after1.size()) == r2.prompt_tokens);
    CHECK(r2.prompt_tokens < 40);

    // One prefill of the same history (image rows from the same prefix) gives the same reply.
    Timings t;
    const Tensor px = m.pixels(ImageInput(first));
    const Tensor prefix = m.image_prefixes(px, t)[0];  // (L_v, d)
    const std::int64_t Lv = prefix.size(0), D = m.lm().cfg.d_model;
    Tensor embeds = Tensor::empty({std::int64_t(before_reply2), D});
    Tensor dst = embeds.slice(0, 0, Lv);
    copy_into(dst, prefix);
    const std::vector<std::int32_t> text(all.begin() + Lv, all.begin() + std::ptrdiff_t(before_reply2));
    Tensor rest = embeds.slice(0, Lv, std::int64_t(before_reply2));
    copy_into(rest, m.lm().embed(text));
    auto expect = greedy_plain(m.lm(), embeds, int(r2.ids.size()));
    CHECK(r2.ids == expect);
}

TEST_CASE("session: a saved state continues identically; another model's state is refused") {
    const Model m = Model::load(kData / "mamba" / "tiny-tied" / "hf-f32");
    Session a(m);
    Request r;
    r.ids = std::vector<std::int32_t>{1, 2, 3, 4, 5};
    r.max_tokens = 4;
    r.ignore_eos = true;
    a.generate(r);
    const fs::path file = fs::temp_directory_path() / "vlmamba_session_state.safetensors";
    a.save(file);
    Request next;
    next.ids = std::vector<std::int32_t>{7, 8};
    next.max_tokens = 6;
    next.ignore_eos = true;
    Session b(m);
    b.load(file);
    CHECK(b.tokens() == a.tokens());
    CHECK(b.generate(next).ids == a.generate(next).ids);

    const Model other = Model::load(kData / "mamba" / "tiny-untied" / "hf-f32");
    Session c(other);
    CHECK_THROWS_WITH_AS(c.load(file), doctest::Contains("saved by another model"), Error);
    fs::remove(file);
}

TEST_CASE("session: snapshot and restore rewind the conversation") {
    const Model m = Model::load(kData / "mamba" / "tiny-untied" / "hf-f32");
    Session s(m);
    Request r;
    r.ids = std::vector<std::int32_t>{3, 1, 4, 1, 5};
    r.max_tokens = 3;
    r.ignore_eos = true;
    s.generate(r);
    const auto snap = s.snapshot();
    Request next;
    next.ids = std::vector<std::int32_t>{9, 2};
    next.max_tokens = 5;
    next.ignore_eos = true;
    const auto first = s.generate(next).ids;
    s.restore(snap);
    CHECK(s.generate(next).ids == first);
}

TEST_CASE("batch: 8 questions decode together and each row equals its single run") {
    const Model m = Model::load(kBundled);
    const fs::path img = kData / "shapes" / "images";
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(img)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    REQUIRE(files.size() >= 4);
    const char* questions[] = {"What color is the circle?", "How many shapes are there?", "Is there a red square?",
                               "What shape is blue?"};
    std::vector<Request> reqs;
    for (int i = 0; i < 8; ++i) {
        Request r;
        r.prompt = questions[i % 4];
        if (i != 5) r.images = {ImageInput(files[std::size_t(i) % files.size()])};  // row 5: text only
        r.max_tokens = 3 + i % 5;  // rows finish at different steps
        reqs.push_back(r);
    }
    const auto batch = generate_batch(m, reqs);
    REQUIRE(batch.size() == 8);
    for (int i = 0; i < 8; ++i) {
        CAPTURE(i);
        Session s(m);
        const Result one = s.generate(reqs[std::size_t(i)]);
        CHECK(batch[std::size_t(i)].ids == one.ids);
        CHECK(batch[std::size_t(i)].text == one.text);
        CHECK(batch[std::size_t(i)].finish_reason == one.finish_reason);
    }
}

TEST_CASE("vision: 8 images in one forward equal 8 single forwards") {
    for (const char* name : {"tiny-clip-mlp", "tiny-siglip-vssl2-bsm"}) {
        CAPTURE(name);
        const Model m = Model::load(kData / "vlmamba" / name);
        const auto& enc = m.vl()->vision_encoder();
        const std::int64_t S = enc.cfg.image_size;
        const Tensor px = test::randn({8, 3, S, S}, 11);
        const Tensor batch = enc.features_batch(px);  // (8, N', C)
        for (std::int64_t b = 0; b < 8; ++b)
            CHECK(test::rel_err(batch.select(0, b), enc.features(px.select(0, b).unsqueeze(0))) <= 1e-5);
    }
}

TEST_CASE("chat templates render turns as the contracts say") {
    const auto llava = ChatTemplate::named("llava_v1");
    CHECK(llava.first_turn("q1") == llava.default_system + " USER: q1 ASSISTANT:");
    CHECK(llava.assistant_suffix + llava.next_turn("q2") == "<|endoftext|>USER: q2 ASSISTANT:");
    const auto plain = ChatTemplate::named("plain");
    CHECK(plain.first_turn("q1") == "q1");
    CHECK(plain.assistant_suffix + plain.next_turn("q2") == "<|endoftext|>q2");
    const auto z = ChatTemplate::named("zephyr");
    CHECK(z.first_turn("hi") == "<|user|>\nhi<|endoftext|>\n<|assistant|>\n");
    CHECK(z.assistant_suffix + z.next_turn("q2") == "<|endoftext|>\n<|user|>\nq2<|endoftext|>\n<|assistant|>\n");
    const auto c = ChatTemplate::named("chatml");
    CHECK(c.first_turn("hi", "be brief") ==
          "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    CHECK(ChatTemplate::named("Q: {question} A:").first_turn("x") == "Q: x A:");
    CHECK_THROWS_WITH_AS(ChatTemplate::named("vicuna"), doctest::Contains("expected plain, llava_v1"), Error);
    const auto j = ChatTemplate::from_json(nlohmann::json{{"user_prefix", "U: "}, {"user_suffix", "\nA:"}}, "t.json");
    CHECK(j.first_turn("x") == "U: x\nA:");
    CHECK(j.next_turn("y") == "U: y\nA:");
    CHECK_THROWS_WITH_AS(ChatTemplate::from_json(nlohmann::json{{"usr", "x"}}, "t.json"),
                         doctest::Contains("unknown key \"usr\""), Error);
}

TEST_CASE("session: stop strings cut the reply and streaming never shows them") {
    const Model m = Model::load(kBundled);
    Request r;
    r.prompt = "What color is the circle?";
    r.max_tokens = 12;
    r.ignore_eos = true;
    Session s(m);
    const Result full = s.generate(r);
    REQUIRE(full.text.size() >= 3);
    const std::string stop = full.text.substr(full.text.size() / 2, 2);
    Request r2 = r;
    r2.stop = {stop};
    std::string streamed;
    Session s2(m);
    const Result cut = s2.generate(r2, [&](std::string_view p) { streamed += p; });
    CHECK(cut.finish_reason == "stop");
    CHECK(cut.text == full.text.substr(0, full.text.find(stop)));
    CHECK(streamed == cut.text);
}

TEST_CASE("session: one model shared by 4 threads x 25 generations gives the serial answers") {
    const Model m = Model::load(kData / "mamba" / "tiny-tied" / "hf-f32");
    auto request = [](int k) {
        Request r;
        r.ids = std::vector<std::int32_t>{std::int32_t(1 + k % 7), std::int32_t(2 + k % 5), 3};
        r.max_tokens = 5;
        r.ignore_eos = true;
        r.sampling.temperature = k % 2 ? 0.8f : 0.f;
        r.sampling.seed = std::uint64_t(k);
        return r;
    };
    std::vector<std::vector<std::int32_t>> serial;
    for (int k = 0; k < 25; ++k) serial.push_back(Session(m).generate(request(k)).ids);
    std::vector<std::vector<std::vector<std::int32_t>>> got(4);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int k = 0; k < 25; ++k) got[std::size_t(t)].push_back(Session(m).generate(request(k)).ids);
        });
    for (auto& th : threads) th.join();
    for (int t = 0; t < 4; ++t) CHECK(got[std::size_t(t)] == serial);
}

TEST_CASE("batch: on the fixtures, 8 rows of pixels and ids equal their single runs") {
    for (const char* name : {"tiny-clip-mlp", "tiny-siglip-vssl2-bsm"}) {
        CAPTURE(name);
        const Model m = Model::load(kData / "vlmamba" / name);
        const std::int64_t S = m.vl()->config().vision.image_size;
        std::vector<Request> reqs;
        for (int i = 0; i < 8; ++i) {
            Request r;
            if (i % 3 != 2) r.images = {ImageInput(test::randn({1, 3, S, S}, std::uint32_t(100 + i)))};
            r.ids = std::vector<std::int32_t>{std::int32_t(3 + i), 7, std::int32_t(11 + 2 * i)};
            r.max_tokens = 2 + i;
            r.ignore_eos = true;
            reqs.push_back(r);
        }
        const auto batch = generate_batch(m, reqs);
        for (int i = 0; i < 8; ++i) {
            CAPTURE(i);
            CHECK(batch[std::size_t(i)].ids == Session(m).generate(reqs[std::size_t(i)]).ids);
            CHECK(batch[std::size_t(i)].ids.size() == std::size_t(2 + i));
        }
    }
}
