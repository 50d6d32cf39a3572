// SPDX-License-Identifier: MIT
/// @file
/// @brief The CUDA umbrella header: the CPU umbrella plus the CUDA backend policy.
/// Compiled by nvcc with HSEQ_ENABLE_CUDA (the `hseq::cuda` target), every ops header also brings its
/// CUDA overloads (`ops/cuda/*.cuh`), so every module and model runs with `Backend = hseq::cuda`.
#pragma once

#include "hseq/backend/cuda.hpp"
#include "hseq/hseq.hpp"
