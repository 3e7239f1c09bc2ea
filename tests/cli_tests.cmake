# CLI contract tests: exit codes and one-line errors on stderr (SPEC §8.3).
set(VLMAMBA_DATA ${CMAKE_CURRENT_SOURCE_DIR}/data)
add_test(NAME cli_help COMMAND vlmamba_cli --help)
