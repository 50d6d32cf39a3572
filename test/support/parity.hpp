// SPDX-License-Identifier: MIT
/// @file
/// @brief Test support for PyTorch parity fixtures: per-tensor comparisons of hseq against a
/// reference computed by tools/gen_*_fixture.py.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace hseq::test {

/// ||a - b|| / ||b|| over b.size() elements.
inline double rel_l2(float const* a, std::vector<float> const& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

inline double l2(std::vector<float> const& b) {
  double s = 0;
  for (float x : b) s += double(x) * x;
  return std::sqrt(s);
}

/// Gradient tensors compare by ||hseq - torch|| <= 1e-4 ||torch||, or <= 1e-7 G where G is the
/// norm of all reference gradients together. The floor matters only for tensors whose gradient is
/// nearly cancelled (e.g. a query projection whose queries mostly see one key: exact zero there),
/// where fp32 rounding of the large terms that cancel sets the error, not the tensor's own norm.
inline bool grad_close(float const* a, std::vector<float> const& b, double global) {
  double err = rel_l2(a, b) * l2(b);
  return err <= std::max(1e-4 * l2(b), 1e-7 * global);
}

}  // namespace hseq::test
