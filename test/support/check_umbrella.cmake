# SPDX-License-Identifier: MIT
# ctest entry headers.umbrella: include/hseq/hseq.hpp, the CPU umbrella, includes every public
# header that needs no CUDA compiler and no MPI, and nothing else (no CUDA or MPI header, no header
# that does not exist). The CUDA split is headers.self_contained's: a path component starting with "cuda", or a
# .cuh file (those come with hseq/cuda.hpp).
#   cmake -DINCLUDE_DIR=<repo>/include -P check_umbrella.cmake
cmake_minimum_required(VERSION 3.24)

if(NOT DEFINED INCLUDE_DIR OR NOT IS_DIRECTORY "${INCLUDE_DIR}/hseq")
  message(FATAL_ERROR "check_umbrella.cmake: -DINCLUDE_DIR=<directory holding hseq/> is required")
endif()
set(_umbrella "hseq/hseq.hpp")

file(GLOB_RECURSE _headers RELATIVE "${INCLUDE_DIR}" "${INCLUDE_DIR}/hseq/*.hpp" "${INCLUDE_DIR}/hseq/*.cuh")
list(SORT _headers)

# The umbrella's #include lines of hseq headers, "..." or <...>.
set(_include_regex "^[ \t]*#[ \t]*include[ \t]*[\"<](hseq/[^\">]+)[\">]")
file(STRINGS "${INCLUDE_DIR}/${_umbrella}" _lines REGEX "${_include_regex}")
set(_included "")
foreach(_line IN LISTS _lines)
  string(REGEX MATCH "${_include_regex}" _m "${_line}")
  list(APPEND _included "${CMAKE_MATCH_1}")
endforeach()

set(_missing "")
set(_cuda "")
foreach(_hdr IN LISTS _headers)
  if(_hdr STREQUAL _umbrella)
    continue()
  endif()
  if(_hdr MATCHES "(^|/)cuda[^/]*" OR _hdr MATCHES "\\.cuh$")
    if(_hdr IN_LIST _included)
      string(APPEND _cuda "\n  ${_hdr}")
    endif()
  elseif(_hdr MATCHES "(^|/)mpi[^/]*$")
    # MPI headers need <mpi.h> and an MPI library: never in the umbrella.
    if(_hdr IN_LIST _included)
      string(APPEND _cuda "\n  ${_hdr}")
    endif()
  elseif(NOT _hdr IN_LIST _included)
    string(APPEND _missing "\n  #include \"${_hdr}\"")
  endif()
endforeach()
set(_stale "")
foreach(_hdr IN LISTS _included)
  if(NOT EXISTS "${INCLUDE_DIR}/${_hdr}")
    string(APPEND _stale "\n  ${_hdr}")
  endif()
endforeach()

set(_errors "")
if(_missing)
  string(APPEND _errors "\n${_umbrella} misses public headers that need no CUDA compiler; add:${_missing}")
endif()
if(_cuda)
  string(APPEND _errors "\n${_umbrella} includes CUDA headers (they belong to hseq/cuda.hpp) or MPI headers (included where MPI is linked):${_cuda}")
endif()
if(_stale)
  string(APPEND _errors "\n${_umbrella} includes headers that do not exist:${_stale}")
endif()
if(_errors)
  message(FATAL_ERROR "${_errors}")
endif()
list(LENGTH _included _count)
message(STATUS "${_umbrella} includes all ${_count} public headers that need no CUDA compiler")
