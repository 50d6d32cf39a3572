// SPDX-License-Identifier: MIT
/// @file
/// @brief Test support for models fed a stream of segments (Transformer-XL, the Compressive
/// Transformer): random byte ids and a batch's columns as the next segment.
#pragma once

#include <cstdint>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/core/tensor.hpp"

namespace hseq::test {

/// ids [shape] uniform in [0, vocab) from stream `seed`.
inline Tensor<std::int32_t, cpu> random_ids(Shape s, std::int64_t vocab, std::uint64_t seed) {
  Tensor<std::int32_t, cpu> t(s);
  Rng rng(seed);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = std::int32_t(rng.below(std::uint64_t(vocab)));
  return t;
}

/// Columns [from, from + n) of ids [B, T], as [B, n]: the next segment of every row.
inline Tensor<std::int32_t, cpu> columns(Tensor<std::int32_t, cpu> const& ids, std::int64_t from, std::int64_t n) {
  std::int64_t const b = ids.shape()[0], t = ids.shape()[1];
  Tensor<std::int32_t, cpu> out(Shape{b, n});
  for (std::int64_t r = 0; r < b; ++r)
    for (std::int64_t i = 0; i < n; ++i) out.data()[r * n + i] = ids.data()[r * t + from + i];
  return out;
}

}  // namespace hseq::test
