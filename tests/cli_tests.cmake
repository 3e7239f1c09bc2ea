# CLI contract tests: exit codes, one-line errors on stderr, stdout content (SPEC §8.3).
add_test(NAME cli_help COMMAND vlmamba_cli --help)
add_test(NAME cli_contract COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/cli_contract.sh $<TARGET_FILE:vlmamba_cli>
         ${CMAKE_CURRENT_SOURCE_DIR}/data)
# eval/score: one process vs `mpirun -np 2` (same merged answers), chunks, resume, bad input, score per type.
find_program(VLMAMBA_MPIRUN mpirun)
if(VLMAMBA_MPIRUN)
  add_test(NAME cli_eval_mpi COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/eval_mpi.sh $<TARGET_FILE:vlmamba_cli>
           ${CMAKE_CURRENT_SOURCE_DIR}/data ${VLMAMBA_MPIRUN})
else()
  message(STATUS "mpirun not found: skipping the cli_eval_mpi test")
endif()
add_test(NAME cli_shapes_eval COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/shapes_eval.sh $<TARGET_FILE:vlmamba_cli>
         ${PROJECT_SOURCE_DIR})
# chat: a scripted two-turn conversation about bundled images (stdin not a terminal: replies only on stdout).
add_test(NAME cli_chat COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/chat_bundled.sh $<TARGET_FILE:vlmamba_cli>
         ${PROJECT_SOURCE_DIR})
# Cobra from its files as shipped (tests/data/cobra): run, logits, --tower, a missing tower.
add_test(NAME cli_cobra COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/cobra.sh $<TARGET_FILE:vlmamba_cli>
         ${CMAKE_CURRENT_SOURCE_DIR}/data)
# Outputs and files that go away: read-only output directory, ulimit -f, a model truncated while in use, bad values.
add_test(NAME cli_outputs COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/outputs.sh $<TARGET_FILE:vlmamba_cli> ${PROJECT_SOURCE_DIR})
# Every fuzz reproducer through the CLI: exit 1, one line naming the file, peak RSS under 400 MB.
add_test(NAME cli_bad_inputs COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/cli/bad_inputs.py $<TARGET_FILE:vlmamba_cli>
         ${CMAKE_CURRENT_SOURCE_DIR}/data)
