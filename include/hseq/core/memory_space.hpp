// SPDX-License-Identifier: MIT
/// @file
/// @brief Memory-space tags. A view's space is part of its type, so host/device mixing fails to compile.
#pragma once

#include <type_traits>

namespace hseq {

/// Memory the CPU dereferences: `malloc`, `std::vector`, pinned host memory.
struct HostSpace {
  static constexpr char const* kName = "host";
};
/// Memory of a CUDA device; only kernels and cudaMemcpy touch it.
struct DeviceSpace {
  static constexpr char const* kName = "device";
};

template <class S>
inline constexpr bool is_memory_space_v = std::is_same_v<S, HostSpace> || std::is_same_v<S, DeviceSpace>;

}  // namespace hseq
