// Answer a question about an image through the session API.
// Usage: ask_image MODEL_DIR IMAGE "QUESTION"
#include <cstdio>
#include <vlmamba/vlmamba.hpp>

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s MODEL_DIR IMAGE \"QUESTION\"\n", argv[0]);
        return 1;
    }
    try {
        const vlmamba::Model model = vlmamba::Model::load(argv[1]);  // a VL-Mamba directory (or a Mamba LM)
        vlmamba::Session session(model);

        vlmamba::Request request;
        request.prompt = argv[3];                          // wrapped in the model's chat template
        request.images = {std::filesystem::path(argv[2])};  // enters the sequence before the prompt
        request.max_tokens = 32;                            // greedy by default

        const vlmamba::Result answer = session.generate(request, [](std::string_view piece) {
            std::fwrite(piece.data(), 1, piece.size(), stdout);  // streamed as it is generated
        });
        std::printf("\n");
        std::fprintf(stderr, "%s: %zu tokens, %.3f s prefill, %.3f s decode (%s)\n", model.variant().c_str(),
                     answer.ids.size(), answer.timings.prefill, answer.timings.decode, answer.finish_reason.c_str());
    } catch (const vlmamba::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
