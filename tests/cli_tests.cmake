# CLI contract tests: exit codes, one-line errors on stderr, stdout content (SPEC §8.3).
add_test(NAME cli_help COMMAND vlmamba_cli --help)
add_test(NAME cli_contract COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/cli_contract.sh $<TARGET_FILE:vlmamba_cli>
         ${CMAKE_CURRENT_SOURCE_DIR}/data)
