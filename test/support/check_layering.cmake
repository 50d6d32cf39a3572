# SPDX-License-Identifier: MIT
# ctest entry headers.layering: no public header includes a header of a higher layer. The layers,
# lowest first (a header may include its own layer and any lower one):
#   core (0) -> backend (1) -> ops, comm (2, ops/cuda included) -> nn (3) -> hier (4) -> models (5)
#   -> train, io (6)
# comm (the communicators of data-parallel training) needs only the backends' contexts.
# io and train share the top layer, but io includes nothing from train: checkpoints and data know
# no optimizer or trainer (issue 9). The top-level umbrellas (hseq/hseq.hpp, hseq/cuda.hpp) are
# exempt; a header in a directory that has no layer here fails, so a new directory must be placed.
# Every violation is listed (file and include) before the test fails.
#   cmake -DINCLUDE_DIR=<repo>/include -P check_layering.cmake
cmake_minimum_required(VERSION 3.24)

if(NOT DEFINED INCLUDE_DIR OR NOT IS_DIRECTORY "${INCLUDE_DIR}/hseq")
  message(FATAL_ERROR "check_layering.cmake: -DINCLUDE_DIR=<directory holding hseq/> is required")
endif()
get_filename_component(INCLUDE_DIR "${INCLUDE_DIR}" ABSOLUTE)

set(_layer_core 0)
set(_layer_backend 1)
set(_layer_ops 2)
set(_layer_comm 2)
set(_layer_nn 3)
set(_layer_hier 4)
set(_layer_models 5)
set(_layer_train 6)
set(_layer_io 6)

# The layer directory of a path "hseq/<dir>/..." in _dir, or "" for a top-level header.
function(_hseq_layer_dir path out)
  if(path MATCHES "^hseq/([^/]+)/")
    set(${out} "${CMAKE_MATCH_1}" PARENT_SCOPE)
  else()
    set(${out} "" PARENT_SCOPE)
  endif()
endfunction()

file(GLOB_RECURSE _headers RELATIVE "${INCLUDE_DIR}" "${INCLUDE_DIR}/hseq/*.hpp" "${INCLUDE_DIR}/hseq/*.cuh")
list(SORT _headers)

set(_include_regex "^[ \t]*#[ \t]*include[ \t]*[\"<](hseq/[^\">]+)[\">]")
set(_violations "")
set(_checked 0)
foreach(_hdr IN LISTS _headers)
  _hseq_layer_dir("${_hdr}" _from)
  if(_from STREQUAL "")
    continue()  # hseq/hseq.hpp, hseq/cuda.hpp: umbrellas, exempt
  endif()
  if(NOT DEFINED _layer_${_from})
    list(APPEND _violations "${_hdr}: directory '${_from}' has no layer in test/support/check_layering.cmake")
    continue()
  endif()
  math(EXPR _checked "${_checked} + 1")
  file(STRINGS "${INCLUDE_DIR}/${_hdr}" _lines REGEX "${_include_regex}")
  foreach(_line IN LISTS _lines)
    string(REGEX MATCH "${_include_regex}" _m "${_line}")
    set(_inc "${CMAKE_MATCH_1}")
    _hseq_layer_dir("${_inc}" _to)
    if(_to STREQUAL "")
      list(APPEND _violations "${_hdr} includes ${_inc}: an umbrella header (include the headers it needs)")
    elseif(NOT DEFINED _layer_${_to})
      list(APPEND _violations "${_hdr} includes ${_inc}: directory '${_to}' has no layer")
    elseif(_layer_${_to} GREATER _layer_${_from})
      list(APPEND _violations
           "${_hdr} (layer ${_from}) includes ${_inc} (layer ${_to}, higher)")
    elseif(_from STREQUAL "io" AND _to STREQUAL "train")
      list(APPEND _violations "${_hdr} includes ${_inc}: io/ must not include train/")
    endif()
  endforeach()
endforeach()

if(_violations)
  list(LENGTH _violations _n)
  list(JOIN _violations "\n  " _text)
  message(FATAL_ERROR "headers.layering: ${_n} include(s) break the layering "
                      "core -> backend -> ops -> nn -> hier -> models -> train, io:\n  ${_text}")
endif()
message(STATUS "headers.layering: ${_checked} headers, every include within its layer or below")
