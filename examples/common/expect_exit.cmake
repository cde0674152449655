# cmake -DCMD="program|arg|..." -DEXIT=<code> -DREGEX=<regex> [-DONE_LINE=ON] -P expect_exit.cmake
# Runs the command; fails unless it exits with EXIT and its output (stdout and stderr) matches REGEX. With
# ONE_LINE, stderr must also be exactly one line (a refused command line says why in one line).
string(REPLACE "|" ";" command "${CMD}")
execute_process(COMMAND ${command} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc STREQUAL "${EXIT}")
  message(FATAL_ERROR "exit code ${rc}, want ${EXIT}: ${command}\nstdout:\n${out}\nstderr:\n${err}")
endif()
if(NOT "${out}${err}" MATCHES "${REGEX}")
  message(FATAL_ERROR "the output does not match '${REGEX}': ${command}\nstdout:\n${out}\nstderr:\n${err}")
endif()
if(ONE_LINE)
  string(REGEX MATCHALL "\n" newlines "${err}")
  list(LENGTH newlines lines)
  if(NOT lines EQUAL 1)
    message(FATAL_ERROR "stderr has ${lines} lines, want one: ${command}\n${err}")
  endif()
endif()
message("${command}: exit ${rc} as expected\n${out}${err}")
