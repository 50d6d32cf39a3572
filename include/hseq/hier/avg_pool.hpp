// SPDX-License-Identifier: MIT
/// @file
/// @brief Average-pooling shortening: y[i] = mean of x[i k .. i k + k - 1] (window = stride = k).
#pragma once

#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/resample_config.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/ops/resample.hpp"

namespace hseq::hier {

template <Backend B, class T>
class AvgPoolShorten {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = ResampleConfig;
  struct Saved {};

  explicit AvgPoolShorten(Config c) : cfg_(check_resample(c, "AvgPoolShorten")) {}
  Config const& config() const { return cfg_; }
  template <class F>
  void visit_params(F&&, std::string const& = "") {}
  std::size_t forward_workspace(std::int64_t, std::int64_t) const { return 0; }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const { return 0; }

  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>&) const {
    ops::avg_pool<T>(ctx, x, y, cfg_.factor);
    return {};
  }
  void backward(Ctx& ctx, Saved const&, CView dy, MView dx, Arena<Space>&) const {
    ops::avg_pool_backward<T>(ctx, dy, dx, cfg_.factor);
  }

  // Cached generation (see Hourglass::forward_step): no state; the window is the shifted block.
  struct StepState {};
  StepState make_step_state(std::int64_t, std::int64_t) const { return {}; }
  std::size_t step_workspace(std::int64_t, std::int64_t) const { return 0; }
  void step_input(Ctx&, StepState&, CView, std::int64_t, Arena<Space>&) const {}
  /// y [B, 1, d] from the completed window [B, k, d] (the k shifted inputs of one short position).
  void step_pool(Ctx& ctx, StepState&, CView window, std::int64_t, MView y, Arena<Space>&) const {
    ops::avg_pool<T>(ctx, window, y, cfg_.factor);
  }

 private:
  Config cfg_;
};

/// Policy tag: average pooling.
struct AvgPool {
  static constexpr char const* kName = "avg";
  template <Backend B, class T>
  using Module = AvgPoolShorten<B, T>;
};

}  // namespace hseq::hier
