// The examples/custom_scan variant: a scan policy written outside the library, composed into a VL-Mamba with one
// alias and run on the tiny fixture's BSM weights.
#include <doctest/doctest.h>

#include <filesystem>

#include "../../examples/custom_scan/snake_scan.hpp"
#include "test_helpers.hpp"

using namespace vlmamba;

TEST_CASE("a user-defined snake scan policy composes into a VL-Mamba and runs on fixture weights") {
    const std::filesystem::path dir = std::filesystem::path(VLMAMBA_TEST_DATA_DIR) / "vlmamba/tiny-siglip-vssl2-bsm";
    if (!std::filesystem::exists(dir)) return;
    VlMambaConfig cfg = load_vlmamba_config(dir);
    const auto bsm = VlMamba<SiglipVisionEncoder, VssL2Connector<BidirectionalScan>>::load(cfg);
    cfg.connector.scan = SnakeScan::name;
    const SnakeVlMamba snake = SnakeVlMamba::load(cfg);
    const std::int64_t S = cfg.vision.image_size;
    const Tensor px = test::randn({1, 3, S, S}, 3);
    const Tensor a = snake.image_prefix(px), b = bsm.image_prefix(px);  // (L_v, d)
    REQUIRE(a.shape() == b.shape());
    // Same weights, another order: the outputs differ, but not wildly (the D skip and the gate are order-free).
    const double diff = test::rel_err(a, b);
    CHECK(diff > 1e-4);
    CHECK(diff < 1.0);
    const std::vector<std::int32_t> ids{5, 6, 7};
    const Tensor logits = snake.text_logits({a}, ids);
    CHECK(logits.shape() == Shape{3, cfg.text.vocab_size});
    // Loading with a config that names another scan is refused: the policy type and the config must agree.
    cfg.connector.scan = "csm";
    CHECK_THROWS_AS(SnakeVlMamba::load(cfg), Error);
}
