// A Mamba LM config.json, either dialect (mamba_ssm's d_model/n_layer or HF's hidden_size/num_hidden_layers).
#include <vlmamba/models/mamba_config.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = vlmamba::fuzz::write_input("config.json", data, size);
    vlmamba::fuzz::refused_or_ok([&] { (void)vlmamba::load_mamba_config(path); });
    return 0;
}
