// tokenizer.json parsing (Tokenizer::from_string); a tokenizer that loads then encodes and decodes a fixed text.
#include <vlmamba/io/tokenizer.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    vlmamba::fuzz::refused_or_ok([&] {
        const vlmamba::Tokenizer t = vlmamba::Tokenizer::from_string(text, "tokenizer.json");
        const auto ids = t.encode("Hello world! <|endoftext|> caf\xC3\xA9  12345 ''s\n\t x");
        (void)t.decode(ids);
        for (std::int32_t id = 0; id < std::min<std::int32_t>(t.vocab_size(), 1024); ++id)
            if (t.token_to_id(std::string(t.id_to_token(id)))) (void)t.decode(std::span(&id, 1), true);
    });
    return 0;
}
