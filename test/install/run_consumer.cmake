# SPDX-License-Identifier: MIT
# ctest install.find_package: installs the hseq build tree into a fresh prefix, then configures,
# builds and runs examples/use_hseq against it with find_package(hseq). Any failure fails.
#
# Inputs (-D): HSEQ_BUILD_DIR, WORK_DIR, CONSUMER_SOURCE_DIR; optional HSEQ_CONFIG,
# CONSUMER_GENERATOR, CONSUMER_CXX_COMPILER, CONSUMER_EXTRA_ARGS ("|"-separated -D arguments).
cmake_minimum_required(VERSION 3.24)

foreach(_var IN ITEMS HSEQ_BUILD_DIR WORK_DIR CONSUMER_SOURCE_DIR)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: -D${_var}=... is required")
  endif()
endforeach()
if(NOT DEFINED HSEQ_CONFIG OR "${HSEQ_CONFIG}" STREQUAL "")
  set(HSEQ_CONFIG Release)
endif()

set(_prefix "${WORK_DIR}/prefix")
set(_build "${WORK_DIR}/consumer-build")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "install test: ${what} failed (${_rc}): ${ARGN}")
  endif()
  message(STATUS "install test: ${what}: ok")
endfunction()

run_step("cmake --install" "${CMAKE_COMMAND}" --install "${HSEQ_BUILD_DIR}" --prefix "${_prefix}"
         --config "${HSEQ_CONFIG}")

if(NOT EXISTS "${_prefix}/lib/cmake/hseq/hseqConfig.cmake")
  message(FATAL_ERROR "install test: ${_prefix}/lib/cmake/hseq/hseqConfig.cmake was not installed")
endif()

set(_configure_args -S "${CONSUMER_SOURCE_DIR}" -B "${_build}" "-DCMAKE_PREFIX_PATH=${_prefix}"
                    "-DCMAKE_BUILD_TYPE=${HSEQ_CONFIG}")
if(DEFINED CONSUMER_GENERATOR AND NOT "${CONSUMER_GENERATOR}" STREQUAL "")
  list(APPEND _configure_args -G "${CONSUMER_GENERATOR}")
endif()
if(DEFINED CONSUMER_CXX_COMPILER AND NOT "${CONSUMER_CXX_COMPILER}" STREQUAL "")
  list(APPEND _configure_args "-DCMAKE_CXX_COMPILER=${CONSUMER_CXX_COMPILER}")
endif()
if(DEFINED CONSUMER_EXTRA_ARGS AND NOT "${CONSUMER_EXTRA_ARGS}" STREQUAL "")
  string(REPLACE "|" ";" _extra "${CONSUMER_EXTRA_ARGS}")
  list(APPEND _configure_args ${_extra})
endif()

run_step("configure consumer" "${CMAKE_COMMAND}" ${_configure_args})
run_step("build consumer" "${CMAKE_COMMAND}" --build "${_build}" --config "${HSEQ_CONFIG}")

# Single-config generators put the executable in the build root, multi-config ones in <config>/.
set(_exe "${_build}/hseq_consumer")
if(NOT EXISTS "${_exe}" AND EXISTS "${_build}/${HSEQ_CONFIG}/hseq_consumer")
  set(_exe "${_build}/${HSEQ_CONFIG}/hseq_consumer")
endif()
run_step("run consumer" "${_exe}")
