// vlmamba convert: a PyTorch checkpoint (or safetensors) to one safetensors file with the same tensor names.
#include "commands.hpp"
#include "common.hpp"
#include "vlmamba/io/convert.hpp"

namespace cli {

void add_convert(CLI::App& app) {
    auto* cmd = app.add_subcommand("convert", "Convert pytorch_model.bin / .pt checkpoints to safetensors (same names)");
    cmd->footer("Examples:\n"
                "  vlmamba convert mamba-2.8b-slimpj/pytorch_model.bin mamba-2.8b-slimpj/model.safetensors\n"
                "  vlmamba convert DIR out.safetensors     (DIR with pytorch_model.bin or its sharded index)\n"
                "The reader never runs code from the file: only tensors, dicts, lists and plain values are accepted.\n"
                "Other values (a training step, a learning rate) are listed by `inspect` and not written.");
    struct Opts { std::string in, out; };
    auto o = std::make_shared<Opts>();
    cmd->add_option("input", o->in, "a .bin/.pt/.pth file or a directory")->required();
    cmd->add_option("output", o->out, "the .safetensors file to write")->required();
    cmd->callback([o] {
        Timer t;
        const vlmamba::ConvertSummary s = vlmamba::convert_to_safetensors(o->in, o->out);
        std::fprintf(stderr, "wrote %zu tensors (%.1f MiB) to %s in %.2f s", s.tensors, double(s.bytes) / (1 << 20),
                     o->out.c_str(), t.seconds());
        if (s.skipped_leaves) std::fprintf(stderr, "; %zu non-tensor values not written", s.skipped_leaves);
        std::fprintf(stderr, "\n");
    });
}

}  // namespace cli
