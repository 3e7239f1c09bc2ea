// Cobra from its files as shipped (tests/data/cobra, zoo/fixtures/make_cobra.py: timm's own towers and loaders on
// the GPU machine, CPU float32): the resampled DINOv2 position embedding, each tower's preprocessing and features,
// the fused features, the projector, the logits after the image and a Zephyr prompt, a 16-token greedy reply; and
// the bad inputs a user meets (a missing tower, a wrong tensor shape).
#include <doctest/doctest.h>

#include <filesystem>

#include "test_helpers.hpp"
#include "vlmamba/io/safetensors.hpp"
#include "vlmamba/session/load.hpp"
#include "vlmamba/session/session.hpp"

using namespace vlmamba;
namespace fs = std::filesystem;
using vlmamba::test::error_of;
using vlmamba::test::max_abs_diff;
using vlmamba::test::rel_err;

namespace {
const fs::path kCobra = fs::path(VLMAMBA_TEST_DATA_DIR) / "cobra";

struct Reference {
    SafetensorsFile tensors = SafetensorsFile::open(kCobra / "reference.safetensors");
    nlohmann::json meta = read_json_file(kCobra / "reference.json", "test");
    Tensor get(const char* name) const { return tensors.get(name).to(DType::F32); }
};

const Reference& golden() {
    static const Reference r;
    return r;
}
}  // namespace

TEST_CASE("cobra: DINOv2's pos_embed is resampled on load as timm's resample_abs_pos_embed does") {
    const Tensor saved = golden().get("dino_pos_embed_saved");          // (49, C): the 7 x 7 grid it was saved at
    const Tensor want = golden().get("dino_pos_embed_resampled");       // (25, C): timm's model at 20 px
    const Tensor got = resample_abs_pos_embed(saved, 5, 5, 0);
    MESSAGE("resampled pos_embed rel err ", rel_err(got, want));
    CHECK(rel_err(got, want) <= 1e-6);
    // The same through the tower loader (no_embed_class: no prefix rows in pos_embed).
    const TimmVit dino = load_timm_vit(load_timm_vit_config(kCobra / "dino", 20, "dino"));
    CHECK(dino.cfg.reg_tokens == 4);
    CHECK(dino.cfg.layer_scale);
    CHECK(rel_err(dino.pos_embed, want) <= 1e-6);
    // Prefix rows are kept as they are; an unchanged grid is returned as is.
    Tensor with_prefix = Tensor::empty({2 + 49, saved.size(1)});
    for (std::int64_t i = 0; i < with_prefix.numel(); ++i) with_prefix.data<float>()[i] = float(i % 13) - 6.f;
    const Tensor r = resample_abs_pos_embed(with_prefix, 5, 5, 2);
    CHECK(max_abs_diff(r.slice(0, 0, 2), with_prefix.slice(0, 0, 2)) == 0.0);
    CHECK(resample_abs_pos_embed(saved, 7, 7, 0).raw() == saved.raw());
}

TEST_CASE("cobra: each tower's preprocessing and features, fused on channels, and the projector") {
    const Model m = Model::load(kCobra / "cobra+tiny");
    REQUIRE(m.vl());
    CHECK(m.variant() == "cobra dino+siglip/fused_mlp");
    CHECK(m.chat_template().name == "zephyr");
    const Tensor px = m.pixels(fs::path(kCobra / "image.png"));  // (1, 6, 20, 20)
    REQUIRE(px.shape() == Shape{1, 6, 20, 20});
    CHECK(max_abs_diff(px.select(0, 0).slice(0, 0, 3), golden().get("dino_pixels")) <= 1e-6);
    CHECK(max_abs_diff(px.select(0, 0).slice(0, 3, 6), golden().get("siglip_pixels")) <= 1e-6);
    const Tensor f = m.vl()->features(px);  // (25, 40)
    const double e_dino = rel_err(f.slice(1, 0, 24), golden().get("dino_features"));
    const double e_sig = rel_err(f.slice(1, 24, 40), golden().get("siglip_features"));
    const double e_fused = rel_err(f, golden().get("fused_features"));
    MESSAGE("features rel err: dino ", e_dino, ", siglip ", e_sig, ", fused ", e_fused);
    CHECK(e_fused <= 2e-5);
    const double e_proj = rel_err(m.vl()->connect(f), golden().get("cobra_projector"));
    MESSAGE("projector rel err ", e_proj);
    CHECK(e_proj <= 2e-5);
    // A batch of two images in one forward equals the single forwards.
    Tensor two = Tensor::empty({2, 6, 20, 20});
    for (std::int64_t b = 0; b < 2; ++b) {
        Tensor dst = two.select(0, b);
        copy_into(dst, px.select(0, 0));
    }
    CHECK(rel_err(m.vl()->features_batch(two).select(0, 1), f) <= 1e-6);
}

TEST_CASE("cobra: logits after the image and a Zephyr prompt, and the greedy reply, from the files as shipped") {
    for (const std::string name : {"cobra+tiny", "cobra-siglip+tiny"}) {
        CAPTURE(name);
        const std::string key = name == "cobra+tiny" ? "cobra" : "cobra_siglip";
        const nlohmann::json& meta = golden().meta[key];
        const Model m = Model::load(kCobra / name);
        REQUIRE(m.tokenizer());
        // The Zephyr template renders Cobra's first turn; the tokenizer gives the fixture's ids.
        const std::string prompt = m.chat_template().first_turn(meta["message"].get<std::string>());
        CHECK(prompt == meta["prompt"].get<std::string>());
        const std::vector<std::int32_t> ids = m.tokenizer()->encode(prompt);
        CHECK(ids == meta["ids"].get<std::vector<std::int32_t>>());
        const Tensor prefix = m.vl()->image_prefix(m.pixels(fs::path(kCobra / "image.png")));  // (25, d)
        const Tensor logits = m.vl()->text_logits({prefix}, ids);                                // (L_text, V)
        const double e = rel_err(logits, golden().get((key + "_logits").c_str()));
        MESSAGE(name, " logits rel err ", e);
        CHECK(e <= 2e-5);
        // The session's greedy reply: 16 tokens, identical.
        Session s(m);
        Request r;
        r.messages.push_back({"user", meta["message"].get<std::string>(), {ImageInput(fs::path(kCobra / "image.png"))}});
        r.max_tokens = 16;
        const Result out = s.generate(r);
        CHECK(out.ids == meta["greedy"].get<std::vector<std::int32_t>>());
    }
}

TEST_CASE("cobra: towers and tokenizer from the caller instead of vlmamba.json; bad inputs are one-line errors") {
    const fs::path tmp = fs::temp_directory_path() / "vlmamba_test_cobra";
    fs::remove_all(tmp);
    fs::create_directories(tmp / "checkpoints");
    fs::copy_file(kCobra / "cobra+tiny" / "config.json", tmp / "config.json");
    fs::create_symlink(fs::absolute(kCobra / "cobra+tiny" / "checkpoints" / "latest-checkpoint.pt"),
                       tmp / "checkpoints" / "latest-checkpoint.pt");
    // No vlmamba.json: the towers must be named.
    const std::string missing = error_of([&] { Model::load(tmp); });
    CHECK(missing.find("needs the 'dino' tower: pass --tower dino=DIR") != std::string::npos);
    CHECK(missing.find('\n') == std::string::npos);
    ModelOptions o;
    o.towers = {{"dino", kCobra / "dino"}, {"siglip", kCobra / "siglip"}};
    o.tokenizer = fs::path(VLMAMBA_TEST_DATA_DIR) / "tokenizer" / "tokenizer.json";
    const Model m = Model::load(tmp, o);
    CHECK(m.tokenizer());
    // A tower directory that does not exist, and DINOv2's config over SigLIP's weights (a wrong tensor shape).
    o.towers["dino"] = tmp / "nowhere";
    CHECK(error_of([&] { Model::load(tmp, o); }).find("nowhere: expected the 'dino' tower's directory") !=
          std::string::npos);
    fs::create_directories(tmp / "bad");
    fs::copy_file(kCobra / "dino" / "config.json", tmp / "bad" / "config.json");
    fs::create_symlink(fs::absolute(kCobra / "siglip" / "open_clip_pytorch_model.bin"),
                       tmp / "bad" / "open_clip_pytorch_model.bin");
    o.towers["dino"] = tmp / "bad";
    const std::string shape = error_of([&] { Model::load(tmp, o); });
    MESSAGE(shape);
    CHECK(shape.find("open_clip_pytorch_model.bin: tensor 'visual.trunk.pos_embed' has shape (1, 25, 16)") !=
          std::string::npos);
    CHECK(shape.find('\n') == std::string::npos);
    // --tower on a directory that is not Cobra's.
    ModelOptions vl;
    vl.towers = {{"dino", kCobra / "dino"}};
    CHECK(error_of([&] { Model::load(fs::path(VLMAMBA_TEST_DATA_DIR) / "vlmamba" / "tiny-clip-mlp", vl); })
              .find("not a Cobra directory") != std::string::npos);
    fs::remove_all(tmp);
}
