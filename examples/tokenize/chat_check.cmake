# cmake -DPROGRAM=<rlhf-tokenize> -DCONFIG=<Qwen3's tokenizer_config.json> -DDATA=<tests/data/chat_templates>
#       -DWORK=<scratch folder> -P chat_check.cmake
# `rlhf-tokenize chat` end to end: cli_qwen3.jsonl through Qwen3's template, from a folder holding only
# tokenizer_config.json (so no "ids"), must print cli_qwen3.expected.jsonl byte for byte (Jinja2's renders, written
# by tests/peers/chat_templates_jinja2.py). Prints "skipped:" (ctest: Skipped) when the npm file is missing.
if(NOT EXISTS "${CONFIG}")
  message("skipped: ${CONFIG} is missing (scripts/fetch_npm_data.sh)")
  return()
endif()
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
file(COPY "${CONFIG}" DESTINATION "${WORK}")
execute_process(COMMAND "${PROGRAM}" chat --tokenizer "${WORK}" INPUT_FILE "${DATA}/cli_qwen3.jsonl"
                OUTPUT_FILE "${WORK}/out.jsonl" ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "rlhf-tokenize chat exited ${rc}: ${err}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files "${WORK}/out.jsonl" "${DATA}/cli_qwen3.expected.jsonl"
                RESULT_VARIABLE differ)
if(NOT differ EQUAL 0)
  file(READ "${WORK}/out.jsonl" got)
  message(FATAL_ERROR "rlhf-tokenize chat wrote other lines than ${DATA}/cli_qwen3.expected.jsonl:\n${got}")
endif()
message("rlhf-tokenize chat: identical to ${DATA}/cli_qwen3.expected.jsonl")
