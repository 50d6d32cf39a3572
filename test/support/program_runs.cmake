# SPDX-License-Identifier: MIT
# Helpers of the ctest scripts that drive the programs (cmake -P): run a command keeping its output,
# error text and exit code; fail the test naming a command that did not succeed.

# run(NAME COMMAND...): NAME (stdout), NAME_rc (exit code), NAME_err (stderr) in the caller's scope.
function(run out_var)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(${out_var} "${out}" PARENT_SCOPE)
  set(${out_var}_rc "${rc}" PARENT_SCOPE)
  set(${out_var}_err "${err}" PARENT_SCOPE)
endfunction()
# expect_ok(NAME): the run NAME exited with 0, else a fatal error with its output.
function(expect_ok name)
  if(NOT "${${name}_rc}" STREQUAL "0")
    message(FATAL_ERROR "${name} failed (${${name}_rc}):\n${${name}}\n${${name}_err}")
  endif()
endfunction()
