// SPDX-License-Identifier: MIT
/// @file
/// @brief Kept so that existing `#include "hseq/backend/backend.hpp"` lines still work: the `Backend`
/// concept moved to core/backend.hpp, below the tensors that are written against it.
#pragma once

#include "hseq/core/backend.hpp"
