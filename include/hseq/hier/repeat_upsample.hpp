// SPDX-License-Identifier: MIT
/// @file
/// @brief Repeat upsampling: each short vector is repeated k times (u[p] = y[p / k]).
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
class RepeatUpsample {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = ResampleConfig;
  struct Saved {};

  explicit RepeatUpsample(Config c) : cfg_(check_resample(c, "RepeatUpsample")) {}
  Config const& config() const { return cfg_; }
  template <class F>
  void visit_params(F&&, std::string const& = "") {}
  std::size_t forward_workspace(std::int64_t, std::int64_t) const { return 0; }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const { return 0; }

  Saved forward(Ctx& ctx, CView y, CView /*res*/, MView u, Arena<Space>&) const {
    ops::repeat_rows<T>(ctx, y, u, cfg_.factor);
    return {};
  }
  void backward(Ctx& ctx, Saved const&, CView du, MView dy, MView /*dres*/, Arena<Space>&) const {
    ops::repeat_rows_backward<T>(ctx, du, dy, cfg_.factor);
  }

 private:
  Config cfg_;
};

/// Policy tag: repeat upsampling.
struct Repeat {
  static constexpr char const* kName = "repeat";
  static constexpr bool kUsesResidual = false;
  template <Backend B, class T>
  using Module = RepeatUpsample<B, T>;
};

}  // namespace hseq::hier
