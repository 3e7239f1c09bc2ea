// vlmamba tokenize / detokenize: a tokenizer.json, both ways.
#include "commands.hpp"
#include "common.hpp"
#include "vlmamba/io/tokenizer.hpp"

namespace cli {

void add_tokenize(CLI::App& app) {
    {
        auto* cmd = app.add_subcommand("tokenize", "Encode text with a tokenizer.json; prints {\"ids\": [...]}");
        cmd->footer("Example: vlmamba tokenize --tokenizer DIR/tokenizer.json --text \"Hello world\"");
        struct Opts { std::string tok, text; };
        auto o = std::make_shared<Opts>();
        cmd->add_option("--tokenizer", o->tok, "tokenizer.json")->required()->check(CLI::ExistingFile);
        cmd->add_option("--text", o->text, "text to encode (UTF-8)")->required();
        cmd->callback([o] {
            const auto t = vlmamba::Tokenizer::from_file(o->tok);
            std::printf("{\"ids\": %s}\n", ids_json(t.encode(o->text)).c_str());
        });
    }
    {
        auto* cmd = app.add_subcommand("detokenize", "Decode ids with a tokenizer.json; prints the text");
        cmd->footer("Example: vlmamba detokenize --tokenizer DIR/tokenizer.json --ids 12,99");
        struct Opts { std::string tok, ids; bool skip = false; };
        auto o = std::make_shared<Opts>();
        cmd->add_option("--tokenizer", o->tok, "tokenizer.json")->required()->check(CLI::ExistingFile);
        cmd->add_option("--ids", o->ids, "token ids, e.g. 1,2,3")->required();
        cmd->add_flag("--skip-special", o->skip, "drop <|endoftext|> and <|padding|>");
        cmd->callback([o] {
            const auto t = vlmamba::Tokenizer::from_file(o->tok);
            std::printf("%s\n", t.decode(parse_ids(o->ids), o->skip).c_str());
        });
    }
}

}  // namespace cli
