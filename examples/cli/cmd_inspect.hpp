// vlmamba inspect FILE|DIR: the tensor table, validated.
#pragma once
#include <CLI/CLI.hpp>
#include <iostream>

#include "vlmamba/io/inspect.hpp"

namespace cli {

inline void add_inspect(CLI::App& app) {
    auto* cmd = app.add_subcommand("inspect", "List the tensors of a safetensors file or model directory and validate it");
    cmd->footer("Exits 0 when the file is valid; otherwise prints a one-line reason to stderr and exits 1.\n"
                "Example: vlmamba inspect zoo/<model>/model.safetensors");
    auto path = std::make_shared<std::string>();
    cmd->add_option("path", *path, "a .safetensors file, or a directory with model.safetensors[.index.json]")
        ->required();
    cmd->callback([path] { vlmamba::inspect(*path, std::cout); });
}

}  // namespace cli
