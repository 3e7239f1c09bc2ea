// Chat templates as data: the strings around the system message, the user turns and the assistant turns. A turn is
// rendered on its own, so a conversation's next turn is only its new text (the recurrent state holds the rest):
//   first turn:  [system_prefix + system + system_suffix] + user_prefix + q1 + user_suffix
//   reply:       a1 (generated) + assistant_suffix
//   later turns: user_prefix_next + q2 + user_suffix
// Named templates: plain, llava_v1, zephyr (Cobra's ZephyrChatPromptBuilder), chatml. A JSON file with the same
// keys defines a new one (`--chat-template FILE`).
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vlmamba/core/error.hpp"
#include "vlmamba/io/json_config.hpp"

namespace vlmamba {

struct ChatTemplate {
    std::string name;
    std::string system_prefix, system_suffix;
    std::string default_system;    // used when the conversation gives none
    std::string user_prefix;       // the first user turn
    std::string user_prefix_next;  // later user turns
    std::string user_suffix;       // ends the user turn and opens the assistant's
    std::string assistant_suffix;  // closes a reply
    std::vector<std::string> stop; // stop strings a reply ends at, besides EOS

    // The text of the conversation's first user turn (system included; an empty system uses default_system).
    std::string first_turn(const std::string& user, const std::string& system = {}) const {
        const std::string& sys = system.empty() ? default_system : system;
        std::string s = sys.empty() ? std::string() : system_prefix + sys + system_suffix;
        return s + user_prefix + user + user_suffix;
    }
    std::string next_turn(const std::string& user) const { return user_prefix_next + user + user_suffix; }

    // "plain", "llava_v1", "zephyr", "chatml", or a text containing "{question}" (config.json's prompt_template).
    static ChatTemplate named(const std::string& name_or_text);
    // A JSON object with the keys above (all optional strings; "stop" a list); `name` defaults to the file name.
    static ChatTemplate from_json(const nlohmann::json& j, const std::string& where);
    static ChatTemplate from_file(const std::filesystem::path& file);
};

// ---------------------------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------------------------

inline ChatTemplate ChatTemplate::named(const std::string& n) {
    const std::string eos = "<|endoftext|>";
    ChatTemplate t;
    t.name = n;
    if (n == "plain") {  // SPEC §8.1: the question alone; later turns follow the reply's EOS
        t.assistant_suffix = eos;
    } else if (n == "llava_v1") {  // LLaVA's conv_vicuna_v1 with the GPT-NeoX EOS as the separator
        t.default_system = "A chat between a curious user and an artificial intelligence assistant. The assistant "
                           "gives helpful, detailed, and polite answers to the user's questions.";
        t.system_suffix = " ";
        t.user_prefix = t.user_prefix_next = "USER: ";
        t.user_suffix = " ASSISTANT:";
        t.assistant_suffix = eos;
    } else if (n == "zephyr") {  // cobra/.../prompting/zephyr_prompter.py: no system prompt by default
        t.system_prefix = "<|system|>\n";
        t.system_suffix = eos + "\n";
        t.user_prefix = "<|user|>\n";
        t.user_prefix_next = "\n<|user|>\n";
        t.user_suffix = eos + "\n<|assistant|>\n";
        t.assistant_suffix = eos;
    } else if (n == "chatml") {
        t.system_prefix = "<|im_start|>system\n";
        t.system_suffix = "<|im_end|>\n";
        t.user_prefix = t.user_prefix_next = "<|im_start|>user\n";
        t.user_suffix = "<|im_end|>\n<|im_start|>assistant\n";
        t.assistant_suffix = "<|im_end|>\n";
        t.stop = {"<|im_end|>"};
    } else if (const auto at = n.find("{question}"); at != std::string::npos) {
        t.name = "custom";
        t.user_prefix = t.user_prefix_next = n.substr(0, at);
        t.user_suffix = n.substr(at + 10);
        t.assistant_suffix = eos;
    } else {
        fail("chat_template", "expected plain, llava_v1, zephyr, chatml or a text containing {question}, got \"", n,
             "\"");
    }
    return t;
}

inline ChatTemplate ChatTemplate::from_json(const nlohmann::json& j, const std::string& where) {
    constexpr const char* op = "chat_template";
    VLM_CHECK(j.is_object(), op, where, ": expected a JSON object, got ", j.type_name());
    static const char* keys[] = {"name", "system_prefix", "system_suffix", "default_system", "user_prefix",
                                 "user_prefix_next", "user_suffix", "assistant_suffix", "stop"};
    for (const auto& [k, v] : j.items()) {
        bool known = false;
        for (const char* key : keys) known |= k == key;
        VLM_CHECK(known, op, where, ": unknown key \"", k, "\"; expected one of name, system_prefix, system_suffix, ",
                  "default_system, user_prefix, user_prefix_next, user_suffix, assistant_suffix, stop");
        (void)v;
    }
    ChatTemplate t;
    t.name = json_get<std::string>(j, "name", std::filesystem::path(where).stem().string(), where, op);
    t.system_prefix = json_get<std::string>(j, "system_prefix", "", where, op);
    t.system_suffix = json_get<std::string>(j, "system_suffix", "", where, op);
    t.default_system = json_get<std::string>(j, "default_system", "", where, op);
    t.user_prefix = json_get<std::string>(j, "user_prefix", "", where, op);
    t.user_prefix_next = json_get<std::string>(j, "user_prefix_next", t.user_prefix, where, op);
    t.user_suffix = json_get<std::string>(j, "user_suffix", "", where, op);
    t.assistant_suffix = json_get<std::string>(j, "assistant_suffix", "<|endoftext|>", where, op);
    t.stop = json_get<std::vector<std::string>>(j, "stop", {}, where, op);
    return t;
}

inline ChatTemplate ChatTemplate::from_file(const std::filesystem::path& file) {
    return from_json(read_json_file(file, "chat_template"), file.string());
}

}  // namespace vlmamba
