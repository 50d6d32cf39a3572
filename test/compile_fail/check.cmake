# SPDX-License-Identifier: MIT
# Runs one compile-fail case (ctest entries compile_fail.<name>, see test/CMakeLists.txt):
#   cmake -DCXX=<compiler> -DSOURCE=<file.cpp> [-DFLAGS=a|b] [-DINCLUDES=dir|dir] [-DDEFINITIONS=X=1|Y]
#         [-DIMPLICIT_INCLUDES=dir|dir] -P check.cmake
# INCLUDES found in IMPLICIT_INCLUDES (the compiler's own, e.g. /usr/include) are left out, as CMake
# does: given with -I they would come before the C++ library's headers and break its #include_next.
# The case passes only if
#   1. the file compiles with HSEQ_COMPILE_FAIL_CONTROL defined (the control: the same code with the
#      one mistake fixed), so the failure below cannot come from anything else in the file; and
#   2. it does not compile without it, and the compiler output matches every regular expression
#      given in the file on a line `// expect-error: <regex>` (the concept's name and the missing
#      member's expression), so the error a user gets says what is wrong.
# Lists are passed with '|' separators: ';' would split the ctest command line.
cmake_minimum_required(VERSION 3.24)

foreach(_var IN ITEMS CXX SOURCE)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "check.cmake: -D${_var}=... is required")
  endif()
endforeach()

set(_args "")
string(REPLACE "|" ";" _flags "${FLAGS}")
string(REPLACE "|" ";" _includes "${INCLUDES}")
string(REPLACE "|" ";" _definitions "${DEFINITIONS}")
string(REPLACE "|" ";" _implicit "${IMPLICIT_INCLUDES}")
list(APPEND _args ${_flags})
foreach(_dir IN LISTS _includes)
  if(NOT _dir STREQUAL "" AND NOT _dir IN_LIST _implicit)
    list(APPEND _args "-I${_dir}")
  endif()
endforeach()
foreach(_def IN LISTS _definitions)
  if(NOT _def STREQUAL "")
    list(APPEND _args "-D${_def}")
  endif()
endforeach()

file(STRINGS "${SOURCE}" _expect_lines REGEX "^// expect-error: ")
if(NOT _expect_lines)
  message(FATAL_ERROR "${SOURCE}: no '// expect-error: <regex>' line: a compile-fail case must say what the error names")
endif()

# -fsyntax-only (GCC, Clang): full semantic analysis, template instantiation included, no output.
# 1. The control compiles.
execute_process(COMMAND "${CXX}" ${_args} -DHSEQ_COMPILE_FAIL_CONTROL=1 -fsyntax-only "${SOURCE}"
                RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE}: the control (HSEQ_COMPILE_FAIL_CONTROL defined) does not compile, so the case "
                      "would fail for a reason other than the one it tests:\n${_out}")
endif()

# 2. The case does not compile, and says why.
execute_process(COMMAND "${CXX}" ${_args} -fsyntax-only "${SOURCE}"
                RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
if(_rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE}: compiled, but it must not")
endif()
set(_missing "")
foreach(_line IN LISTS _expect_lines)
  string(REGEX REPLACE "^// expect-error: " "" _regex "${_line}")
  if(NOT _out MATCHES "${_regex}")
    string(APPEND _missing "\n  ${_regex}")
  endif()
endforeach()
if(_missing)
  message(FATAL_ERROR "${SOURCE}: failed to compile as it should, but the compiler output does not match${_missing}\n"
                      "Output:\n${_out}")
endif()
message(STATUS "${SOURCE}: fails to compile, naming what is wrong")
