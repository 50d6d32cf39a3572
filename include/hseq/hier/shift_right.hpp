// SPDX-License-Identifier: MIT
/// @file
/// @brief `ShiftRight`: the causality shift of a shortening level. Prepends `shift` zero vectors and
/// drops the last `shift` positions, so that after pooling by k (shift = k - 1) block j summarises
/// positions up to j k and may be used by every position >= j k.
#pragma once

#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/ops/resample.hpp"

namespace hseq::hier {

template <Backend B, class T>
class ShiftRight {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  struct Config {
    std::int64_t shift = 0;
  };
  struct Saved {};

  explicit ShiftRight(Config c) : cfg_(c) { HSEQ_CHECK(c.shift >= 0, "ShiftRight: negative shift " << c.shift); }
  Config const& config() const { return cfg_; }
  template <class F>
  void visit_params(F&&, std::string const& = "") {}
  std::size_t forward_workspace(std::int64_t, std::int64_t) const { return 0; }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const { return 0; }

  /// y[b, t] = x[b, t - shift] (zero for t < shift); x, y: [B, L, d].
  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>&) const {
    ops::shift_right<T>(ctx, x, y, cfg_.shift);
    return {};
  }
  void backward(Ctx& ctx, Saved const&, CView dy, MView dx, Arena<Space>&) const {
    ops::shift_right_backward<T>(ctx, dy, dx, cfg_.shift);
  }

 private:
  Config cfg_;
};

}  // namespace hseq::hier
