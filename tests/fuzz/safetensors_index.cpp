// A sharded checkpoint: the input is model.safetensors.index.json, next to two fixed, valid shards
// (tests/data/safetensors/good_sharded); WeightStore::open, then every tensor it lists.
#include <vlmamba/io/weights.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    for (const char* shard : {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"})
        vlmamba::fuzz::copy_test_data(std::string("safetensors/good_sharded/") + shard, std::string("ckpt/") + shard);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    vlmamba::fuzz::write_input("ckpt/model.safetensors.index.json", data, size);
    vlmamba::fuzz::refused_or_ok([&] {
        const auto store = vlmamba::WeightStore::open(vlmamba::fuzz::scratch_dir() / "ckpt");
        for (const auto& name : store.names()) (void)store.get(name).numel();
    });
    return 0;
}
