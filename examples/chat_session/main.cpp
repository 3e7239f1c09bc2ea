// A two-turn conversation: the second turn prefills only its own message, because the session keeps the recurrent
// state. Usage: chat_session MODEL_DIR IMAGE
#include <cstdio>
#include <vlmamba/vlmamba.hpp>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s MODEL_DIR IMAGE\n", argv[0]);
        return 1;
    }
    try {
        const vlmamba::Model model = vlmamba::Model::load(argv[1]);
        vlmamba::Session chat(model);
        auto ask = [&](vlmamba::Request r) {
            r.max_tokens = 32;
            const vlmamba::Result a = chat.generate(r);
            std::printf("Q: %s\nA:%s\n", r.prompt.c_str(), a.text.c_str());
            std::fprintf(stderr, "   (%lld positions prefilled, %zu generated)\n", (long long)a.prompt_tokens,
                         a.ids.size());
        };
        vlmamba::Request first;
        first.prompt = "What shapes are there, from left to right?";
        first.images = {std::filesystem::path(argv[2])};
        ask(first);
        vlmamba::Request second;  // the image and the first turn are in the state already
        second.prompt = "How many shapes are there?";
        ask(second);

        chat.save("conversation.safetensors");  // the state, the history and the model's fingerprint
        std::fprintf(stderr, "saved the conversation (%zu positions) to conversation.safetensors\n",
                     chat.tokens().size());
    } catch (const vlmamba::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
