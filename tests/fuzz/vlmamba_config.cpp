// A VL-Mamba directory's config.json (load_vlmamba_config): inline vision/text configs, the connector config,
// preprocessing and prompt template, or component paths. The input lives at <scratch>/vlm/model/config.json, so
// the seeds' "../../vision/clip/hub" and "../../mamba/tiny-untied/hf-f32" reach fixed copies of those configs.
#include <vlmamba/models/vl_mamba.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    for (const char* dir : {"vision/clip/hub", "vision/siglip/hub", "mamba/tiny-untied/hf-f32"})
        vlmamba::fuzz::copy_test_data(std::string(dir) + "/config.json", std::string("vlm/") + dir + "/config.json");
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    vlmamba::fuzz::write_input("vlm/vlm/model/config.json", data, size);
    vlmamba::fuzz::refused_or_ok([&] {
        (void)vlmamba::load_vlmamba_config(vlmamba::fuzz::scratch_dir() / "vlm/vlm/model");
    });
    return 0;
}
