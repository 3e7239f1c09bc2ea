#include <nlohmann/json.hpp>

#include "common.hpp"
#include "options.hpp"

namespace cli {

vlmamba::Result generate_and_print(vlmamba::Session& s, const vlmamba::Request& r, const GenerationFlags& f) {
    const bool stream = !f.print_ids && !f.json;
    const vlmamba::Model& m = s.model();
    vlmamba::TokenCallback out;
    if (stream && m.tokenizer())
        out = [](std::string_view piece) {
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            std::fflush(stdout);
        };
    const vlmamba::Result res = s.generate(r, out);
    if (stream && m.tokenizer()) std::fputc('\n', stdout);
    if (f.print_ids || (stream && !m.tokenizer())) std::printf("%s\n", ids_json(res.ids).c_str());
    if (f.json) {
        const auto& t = res.timings;
        const nlohmann::json j{
            {"text", res.text},
            {"ids", res.ids},
            {"finish_reason", res.finish_reason},
            {"variant", m.variant()},
            {"prompt_tokens", res.prompt_tokens},
            {"image_tokens", res.image_tokens},
            {"timings_s",
             {{"preprocess", t.preprocess}, {"vision", t.vision}, {"connector", t.connector}, {"prefill", t.prefill},
              {"decode", t.decode}}},
            {"decode_tokens_per_s", t.decode > 0 ? double(res.ids.size()) / t.decode : 0.0},
            {"peak_rss_mib", peak_rss_mib()}};
        std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    }
    print_timings(res);
    return res;
}

}  // namespace cli
