// vlmamba chat: a conversation in the terminal. The recurrent state is kept between turns, so each turn prefills
// only its new message. Reads a scripted conversation from stdin when stdin is not a terminal (replies only on
// stdout, one per turn).
#include <unistd.h>

#include <iostream>

#include "commands.hpp"
#include "common.hpp"
#include "options.hpp"

#ifdef VLMAMBA_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

namespace cli {

namespace {

constexpr const char* kChatHelp =
    "commands: /image PATH (attach to the next message), /system TEXT (new conversation with this system message),\n"
    "          /clear, /save FILE, /load FILE, /help, /quit; anything else is your message";

// One line from stdin (with line editing and history on a terminal when built with libedit); false at EOF.
bool read_line(bool tty, std::string& line) {
#ifdef VLMAMBA_HAVE_LIBEDIT
    if (tty) {
        char* l = readline("> ");
        if (!l) return false;
        line = l;
        if (!line.empty()) add_history(l);
        std::free(l);
        return true;
    }
#endif
    if (tty) std::fputs("> ", stderr);
    return bool(std::getline(std::cin, line));
}

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

}  // namespace

void add_chat(CLI::App& app) {
    auto* cmd = app.add_subcommand("chat", "Chat with a model in the terminal (multi-turn; state kept between turns)");
    cmd->footer(std::string("Examples:\n"
                            "  vlmamba chat -m zoo/shapes-vlmamba --image cat.png\n"
                            "  printf 'What color is it?\\nHow many?\\n' | vlmamba chat -m DIR --image a.png -n 16\n") +
                kChatHelp +
                "\nWith stdin not a terminal, each line is a user message and stdout gets one reply per turn.");
    struct Opts {
        ModelFlags model;
        GenerationFlags gen;
        std::string system;
        std::vector<std::string> images;
    };
    auto o = std::make_shared<Opts>();
    add_model_flags(cmd, o->model, "model directory (a VL-Mamba or a Mamba LM)");
    cmd->add_option("--image", o->images, "image(s) for the first message")->check(CLI::ExistingFile);
    cmd->add_option("--system", o->system, "system message");
    add_generation_flags(cmd, o->gen, 256, /*outputs=*/false);
    cmd->callback([o] {
        std::vector<vlmamba::ImageInput> images;
        for (const auto& f : o->images) images.emplace_back(vlmamba::load_image(f));  // checked before the load
        const vlmamba::Model m = load_model(o->model);
        const bool tty = isatty(STDIN_FILENO);
        if (tty) std::fprintf(stderr, "%s\n", kChatHelp);
        vlmamba::Session s(m);
        std::string system = o->system, line;
        const GenerationFlags& gen = o->gen;
        while (read_line(tty, line)) {
            line = trim(line);
            if (line.empty()) continue;
            try {
                if (line[0] == '/') {
                    const auto sp = line.find(' ');
                    const std::string c = line.substr(0, sp), arg = sp == std::string::npos ? "" : trim(line.substr(sp));
                    if (c == "/quit" || c == "/exit") break;
                    if (c == "/help") {
                        std::fprintf(stderr, "%s\n", kChatHelp);
                    } else if (c == "/image" && !arg.empty()) {
                        images.emplace_back(vlmamba::load_image(arg));
                        std::fprintf(stderr, "image %s attached to the next message\n", arg.c_str());
                    } else if (c == "/clear") {
                        s.clear();
                        std::fprintf(stderr, "conversation cleared\n");
                    } else if (c == "/system") {
                        s.clear();
                        system = arg;
                        std::fprintf(stderr, "new conversation with system message: %s\n", arg.c_str());
                    } else if (c == "/save" && !arg.empty()) {
                        s.save(arg);
                        std::fprintf(stderr, "saved %zu positions to %s\n", s.tokens().size(), arg.c_str());
                    } else if (c == "/load" && !arg.empty()) {
                        s.load(arg);
                        std::fprintf(stderr, "loaded %zu positions from %s\n", s.tokens().size(), arg.c_str());
                    } else {
                        std::fprintf(stderr, "unknown or incomplete command '%s'\n%s\n", line.c_str(), kChatHelp);
                    }
                    continue;
                }
                vlmamba::Request r;
                if (!system.empty() && s.tokens().empty()) r.messages.push_back({"system", system, {}});
                r.messages.push_back({"user", line, std::move(images)});
                images.clear();
                gen.apply(r);
                const vlmamba::Result res = s.generate(r, [](std::string_view p) {
                    std::fwrite(p.data(), 1, p.size(), stdout);
                    std::fflush(stdout);
                });
                std::fputc('\n', stdout);
                std::fflush(stdout);
                std::fprintf(stderr, "[%lld new positions prefilled in %.3f s, %zu tokens at %.1f tokens/s]\n",
                             (long long)res.prompt_tokens, res.timings.prefill, res.ids.size(),
                             res.timings.decode > 0 ? double(res.ids.size()) / res.timings.decode : 0.0);
            } catch (const vlmamba::Error& e) {
                if (!tty) throw;  // a script stops at its first error
                std::fprintf(stderr, "error: %s\n", e.what());
            }
        }
    });
}

}  // namespace cli
