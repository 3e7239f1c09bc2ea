// The connectors and whole VL-Mamba on the GPU, the same classes as on the CPU moved with to(Device::Cuda): the
// PyTorch connector fixtures of tests/data/connectors (MLP, VSS-MLP and VSS-L2 with BSM and CSM on 3x5, 1x1, 4x4
// grids, every direction's scan output), and both tiny VL-Mamba fixtures from pixels to greedy ids: f32 <= 1e-4 of
// the CPU and the reference, bf16 LM weights <= 2e-2, greedy ids identical in f32. Skipped without a GPU.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "../unit/test_helpers.hpp"
#include "cuda_test_helpers.hpp"
#include "vlmamba/io/weights.hpp"
#include "vlmamba/models/zoo.hpp"

using namespace vlmamba;
namespace fs = std::filesystem;
using vlmamba::test::rel_err;

namespace {
Tensor host(const Tensor& t) { return t.to(Device::Cpu); }

std::vector<std::int32_t> ids_of(const Tensor& t) {
    std::vector<std::int32_t> v;
    for (std::int64_t i = 0; i < t.numel(); ++i) v.push_back(std::int32_t(t.to(DType::I64).data<std::int64_t>()[i]));
    return v;
}

// Greedy continuation: prefill [prefix; ids] into a fresh state, then recurrent (fused) steps.
std::vector<std::int32_t> greedy(const zoo::AnyVlMamba& m, const Tensor& prefix, const std::vector<std::int32_t>& ids,
                                 std::size_t n) {
    const MambaLm& lm = m.language_model();
    MambaState st = lm.new_state(1);
    const Tensor h = lm.forward_hidden(m.input_embeddings({prefix}, ids), &st);  // (L, D)
    Tensor last = host(lm.logits(h.slice(0, h.size(0) - 1, h.size(0))));
    std::vector<std::int32_t> out;
    for (std::size_t i = 0; i < n; ++i) {
        const float* l = last.data<float>();
        const auto id = std::int32_t(std::max_element(l, l + last.numel()) - l);
        out.push_back(id);
        last = lm.step(std::span<const std::int32_t>(&id, 1), st);
    }
    return out;
}
}  // namespace

TEST_CASE("cuda connectors: MLP, VSS-MLP and VSS-L2 (BSM, CSM) on the GPU match the PyTorch fixtures") {
    SKIP_WITHOUT_GPU();
    const fs::path dir = fs::path(VLMAMBA_TEST_DATA_DIR) / "connectors";
    int seen = 0;
    for (const char* type : {"mlp", "vss_mlp_bsm", "vss_mlp_csm", "vss_l2_bsm", "vss_l2_csm"})
        for (const char* grid : {"3x5", "1x1", "4x4"}) {
            const fs::path file = dir / (std::string(type) + "_" + grid + ".safetensors");
            if (!fs::exists(file)) continue;
            ++seen;
            CAPTURE(file.string());
            const SafetensorsFile sf = SafetensorsFile::open(file);
            const std::string meta = sf.metadata().at("connector_config");
            const ConnectorConfig cfg = parse_connector_config(meta);
            const auto j = nlohmann::json::parse(meta);
            const int H = j.at("grid").at(0).get<int>(), W = j.at("grid").at(1).get<int>();
            const WeightStore store = WeightStore::open(file);
            WeightLoader loader(store);
            const ParamSource src = param_source(loader);
            visit_connector_type(cfg, [&]<class C>(std::type_identity<C>) {
                const C gpu = C::load(cfg, "mm_projector.", src).to(Device::Cuda);
                ConnectorTrace trace;
                const Tensor out = host(gpu.forward(store.get("input").to(Device::Cuda), H, W, &trace));
                CHECK(rel_err(out, store.get("output")) <= 1e-4);
                if constexpr (!std::is_same_v<C, MlpConnector>) {
                    CHECK(rel_err(host(trace.vss.merged), store.get("vss.merged")) <= 1e-4);
                    for (int k = 0; k < decltype(gpu.vss)::K; ++k) {
                        CAPTURE(k);
                        CHECK(rel_err(host(trace.vss.scan_out.select(0, k)),
                                      store.get("vss.scan_out." + std::to_string(k))) <= 1e-4);
                    }
                }
                return 0;
            });
            loader.finish();
        }
    if (seen == 0) MESSAGE("skipping: no connector fixtures in " << dir.string());
}

TEST_CASE("cuda vlmamba: both tiny VL-Mamba fixtures on the GPU, connector there, match the CPU and the reference") {
    SKIP_WITHOUT_GPU();
    for (const char* name : {"tiny-siglip-vssl2-bsm", "tiny-clip-mlp"}) {
        CAPTURE(name);
        const fs::path dir = fs::path(VLMAMBA_TEST_DATA_DIR) / "vlmamba" / name;
        if (!fs::exists(dir / "golden.safetensors")) continue;
        const WeightStore golden = WeightStore::open(dir / "golden.safetensors");
        const zoo::AnyVlMamba cpu = zoo::load(dir);
        const auto gpu = cpu.to(Device::Cuda, DType::F32);
        REQUIRE(gpu->language_model().device() == Device::Cuda);
        const Tensor pixels = golden.get("pixel_values");
        const auto ids = ids_of(golden.get("input_ids"));
        const Tensor features = gpu->features(pixels);  // on the GPU
        CHECK(features.is_cuda());
        CHECK(rel_err(host(features), golden.get("features")) <= 1e-4);
        const Tensor prefix = gpu->connect(features);
        CHECK(prefix.is_cuda());
        CHECK(rel_err(host(prefix), golden.get("prefix")) <= 1e-4);
        CHECK(rel_err(host(prefix), cpu.connect(cpu.features(pixels))) <= 1e-4);
        const Tensor logits = gpu->text_logits({prefix}, ids);
        CHECK(rel_err(logits, golden.get("logits")) <= 1e-4);
        CHECK(rel_err(logits, cpu.text_logits({cpu.connect(cpu.features(pixels))}, ids)) <= 1e-4);
        const auto expect = ids_of(golden.get("greedy_ids"));
        CHECK(greedy(*gpu, prefix, ids, expect.size()) == expect);
        MESSAGE(name << ": prefix vs reference " << rel_err(host(prefix), golden.get("prefix")) << ", logits "
                     << rel_err(logits, golden.get("logits")));

        const auto bf16 = cpu.to(Device::Cuda, DType::BF16);  // the LM's matrices in bf16
        CHECK(rel_err(bf16->text_logits({bf16->connect(bf16->features(pixels))}, ids), golden.get("logits")) <= 2e-2);
    }
}
