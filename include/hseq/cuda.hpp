// SPDX-License-Identifier: MIT
/// @file
/// @brief The CUDA umbrella header: the CPU umbrella plus the CUDA backend policy.
/// The CUDA ops (cuBLAS GEMMs, CUB kernels) are added to `ops/cuda/` by the CUDA backend work.
#pragma once

#include "hseq/backend/cuda.hpp"
#include "hseq/hseq.hpp"
