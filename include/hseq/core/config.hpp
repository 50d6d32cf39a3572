// SPDX-License-Identifier: MIT
/// @file
/// @brief Compiler portability macros shared by host and device code.
#pragma once

#if defined(__CUDACC__)
/// Marks a function usable from host and device code (nvcc), plain `inline` otherwise.
#define HSEQ_HOST_DEVICE __host__ __device__ inline
#else
#define HSEQ_HOST_DEVICE inline
#endif

#define HSEQ_VERSION_MAJOR 0
#define HSEQ_VERSION_MINOR 1
#define HSEQ_VERSION_PATCH 0
