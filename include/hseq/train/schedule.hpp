// SPDX-License-Identifier: MIT
/// @file
/// @brief Learning-rate schedule: linear warm-up, then cosine decay to a floor.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "hseq/core/error.hpp"

namespace hseq::train {

/// lr(step) for step = 0, 1, ...: rises linearly from peak / warmup to peak over `warmup` steps,
/// then follows half a cosine from peak down to peak * min_ratio at `total` steps (and stays there).
struct WarmupCosine {
  double peak = 1e-3;
  std::int64_t warmup = 0, total = 1;
  double min_ratio = 0.1;

  WarmupCosine() = default;
  WarmupCosine(double peak_lr, std::int64_t warmup_steps, std::int64_t total_steps, double min_lr_ratio)
      : peak(peak_lr), warmup(warmup_steps), total(total_steps), min_ratio(min_lr_ratio) {
    HSEQ_CHECK(peak >= 0 && warmup >= 0 && total >= 1 && min_ratio >= 0 && min_ratio <= 1,
               "WarmupCosine: peak " << peak << ", warmup " << warmup << ", total " << total << ", min_ratio "
                                     << min_ratio << " (need peak >= 0, warmup >= 0, total >= 1, 0 <= min_ratio <= 1)");
  }

  double operator()(std::int64_t step) const {
    if (step < warmup) return peak * double(step + 1) / double(warmup);
    if (total <= warmup) return peak;
    double progress = std::min(1.0, double(step - warmup) / double(total - warmup));
    return decayed(progress);
  }

  /// For runs bounded by time instead of steps: warm-up by step, then the cosine at `fraction`
  /// (0..1) of the budget.
  double at_fraction(std::int64_t step, double fraction) const {
    if (step < warmup) return peak * double(step + 1) / double(warmup);
    return decayed(std::clamp(fraction, 0.0, 1.0));
  }

 private:
  double decayed(double progress) const {
    double floor = peak * min_ratio;
    return floor + 0.5 * (peak - floor) * (1.0 + std::cos(3.141592653589793 * progress));
  }
};

}  // namespace hseq::train
