# Installs rlhf from the build tree into a scratch prefix, then configures, builds and runs user projects that
# find it with find_package(rlhf): the headers alone, the eigen component, and a component whose dependency is
# missing. Checks that the installed CMake files name no folder of the build machine. Inputs: BUILD_DIR,
# SOURCE_DIR, WORK_DIR.
file(REMOVE_RECURSE ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}\n${out}\n${err}")
  endif()
  message("${out}")
  set(output "${out}${err}" PARENT_SCOPE)
endfunction()
function(expect what regex)
  if(NOT output MATCHES "${regex}")
    message(FATAL_ERROR "${what}: the output does not match '${regex}':\n${output}")
  endif()
endfunction()

set(prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

file(GLOB cmake_files ${prefix}/share/rlhf/cmake/*)
foreach(f ${cmake_files})
  file(STRINGS ${f} machine_paths REGEX "/usr/local/cuda|/usr/lib/x86_64|${BUILD_DIR}")
  if(machine_paths)
    message(FATAL_ERROR "${f} names a folder of the build machine:\n${machine_paths}")
  endif()
endforeach()

foreach(project headers_only eigen)
  set(args -DCMAKE_PREFIX_PATH=${prefix})
  if(project STREQUAL "headers_only")
    list(APPEND args -DCMAKE_DISABLE_FIND_PACKAGE_Eigen3=ON)
  endif()
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/${project} -B ${WORK_DIR}/${project} ${args})
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/${project})
  run(${WORK_DIR}/${project}/consumer)
endforeach()

# The tokenizers component, when this build has it (PCRE2 and utf8proc found).
if(EXISTS ${prefix}/share/rlhf/cmake/rlhf-tokenizers-targets.cmake)
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tokenizers -B ${WORK_DIR}/tokenizers -DCMAKE_PREFIX_PATH=${prefix})
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/tokenizers)
  execute_process(COMMAND ${WORK_DIR}/tokenizers/consumer WORKING_DIRECTORY ${WORK_DIR}/tokenizers RESULT_VARIABLE rc
                  OUTPUT_VARIABLE output ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "the tokenizers consumer failed (${rc}):\n${output}${err}")
  endif()
  message("${output}")
endif()

# A missing optional component: rlhf_FOUND=FALSE and a reason naming the component, without REQUIRED ...
set(missing -DCOMPONENT=cuda -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/missing_component -B ${WORK_DIR}/missing ${missing})
expect("optional" "rlhf_FOUND=(0|FALSE) rlhf_cuda_FOUND=FALSE")
expect("optional" "reason: a required component cannot be loaded:.*component 'cuda'")
# ... and with REQUIRED, CMake's one error with that reason (not an error from inside the package's files).
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/missing_component -B ${WORK_DIR}/missing_required
                        ${missing} -DREQUIRED_COMPONENT=ON
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(output "${out}${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "find_package(rlhf REQUIRED COMPONENTS cuda) succeeded with the CUDA toolkit hidden:\n${output}")
endif()
expect("required" "Reason given by package:.*component 'cuda'")
if(output MATCHES "rlhfConfig.cmake:[0-9]+|Call Stack")
  message(FATAL_ERROR "the failure comes from inside the package's files:\n${output}")
endif()
message("missing component refused as expected:\n${output}")
