// BPE encoding of arbitrary bytes with the fixed tokenizer of tests/data/tokenizer: invalid UTF-8 is refused;
// valid text must decode back to its NFC form (the tokenizer's normalizer), byte for byte.
#include <vlmamba/io/tokenizer.hpp>
#include <vlmamba/io/utf8.hpp>

#include "fuzz_common.hpp"

namespace {
const vlmamba::Tokenizer& tokenizer() {
    static const vlmamba::Tokenizer t =
        vlmamba::Tokenizer::from_file(std::string(VLMAMBA_TEST_DATA_DIR) + "/tokenizer/tokenizer.json");
    return t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const vlmamba::Tokenizer& t = tokenizer();
    if (vlmamba::utf8::first_invalid(text) != vlmamba::utf8::npos) {
        vlmamba::fuzz::refused_or_ok([&] { (void)t.encode(text); });
        return 0;
    }
    const auto ids = t.encode(text);
    const std::string back = t.decode(ids);
    if (back != vlmamba::nfc(text)) {
        std::fprintf(stderr, "bpe: decode(encode(s)) != nfc(s): %zu bytes in, %zu bytes back\n", size, back.size());
        std::abort();
    }
    vlmamba::StreamDecoder stream(t);
    std::string streamed;
    for (const std::int32_t id : ids) streamed += stream.push(id);
    streamed += stream.flush();
    if (streamed != back) {
        std::fprintf(stderr, "bpe: the streamed decoding differs from decode()\n");
        std::abort();
    }
    return 0;
}
