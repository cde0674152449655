# The layer check's own test (ctest layers_includes_catch_leaks): a copy of include/ with one leak of each kind
# added must fail check_layers.cmake, with a message naming the file, the line and the forbidden edge.
#
#   cmake -DWORK_DIR=<scratch folder> -P tests/layers/check_layers_catches.cmake
cmake_minimum_required(VERSION 3.20)
get_filename_component(source_include "${CMAKE_CURRENT_LIST_DIR}/../../include" ABSOLUTE)
if(NOT DEFINED WORK_DIR)
  message(FATAL_ERROR "pass -DWORK_DIR=<scratch folder>")
endif()
set(copy "${WORK_DIR}/include")
file(REMOVE_RECURSE "${WORK_DIR}")
file(COPY "${source_include}" DESTINATION "${WORK_DIR}")

# First the clean copy passes.
execute_process(COMMAND "${CMAKE_COMMAND}" -DRLHF_INCLUDE_DIR=${copy} -P "${CMAKE_CURRENT_LIST_DIR}/check_layers.cmake"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the unchanged include/ does not pass the check:\n${out}${err}")
endif()

# Then one leak of each kind, each in a new header so the line numbers are known.
file(WRITE "${copy}/rlhf/io/leak.hpp" "#pragma once\n// io reaching up into algorithms\n#include \"rlhf/algorithms/dpo.hpp\"\n")
file(WRITE "${copy}/rlhf/core/leak.hpp" "#pragma once\n#include <vector>\n#include <Eigen/Core>\n")
file(WRITE "${copy}/rlhf/algorithms/leak.hpp" "#include <rlhf/models/toy/bandit.hpp>\n#include <fmt/core.h>\n")
file(WRITE "${copy}/rlhf/losses/leak.hpp" "#include \"dpo.hpp\"\n#  include \"rlhf/losses/missing.hpp\"\n")
file(WRITE "${copy}/rlhf/train/leak.hpp" "#pragma once\n")
file(APPEND "${copy}/rlhf.hpp" "#include \"rlhf/io/safetensors.hpp\"\n")

execute_process(COMMAND "${CMAKE_COMMAND}" -DRLHF_INCLUDE_DIR=${copy} -P "${CMAKE_CURRENT_LIST_DIR}/check_layers.cmake"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(all "${out}${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "the check passed a copy of include/ with leaks:\n${all}")
endif()
set(expected
    "include/rlhf/io/leak.hpp:3: layer io may not include layer algorithms"
    "include/rlhf/core/leak.hpp:3: layer core may not include library eigen"
    "include/rlhf/algorithms/leak.hpp:1: layer algorithms may not include layer models/toy"
    "include/rlhf/algorithms/leak.hpp:2: includes <fmt/core.h>, which no library"
    "include/rlhf/losses/leak.hpp:1: includes \"dpo.hpp\"; spell a library header from include/"
    "include/rlhf/losses/leak.hpp:2: includes \"rlhf/losses/missing.hpp\", which is no header"
    "include/rlhf/train/leak.hpp: its folder 'train' is not a layer"
    "include/rlhf.hpp:[0-9]+: layer umbrella may not include layer io"
    "layers: 8 forbidden include")
set(missing "")
foreach(line IN LISTS expected)
  if(NOT all MATCHES "${line}")
    string(APPEND missing "  ${line}\n")
  endif()
endforeach()
if(missing)
  message(FATAL_ERROR "the check failed, but without these messages:\n${missing}its output:\n${all}")
endif()
if(all MATCHES "core/leak.hpp:2")
  message(FATAL_ERROR "the check refused <vector> in core/:\n${all}")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
message(STATUS "layers: every leak put into a copy of include/ was reported")
