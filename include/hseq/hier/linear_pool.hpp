// SPDX-License-Identifier: MIT
/// @file
/// @brief Linear-pooling shortening: view [B, L, d] as [B, L / k, k d], then Linear(k d -> d).
#pragma once

#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/resample_config.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/module.hpp"

namespace hseq::hier {

template <Backend B, class T>
class LinearPoolShorten {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = ResampleConfig;
  using Saved = typename nn::Linear<B, T>::Saved;

  explicit LinearPoolShorten(Config c)
      : cfg_(check_resample(c, "LinearPoolShorten")), proj_({c.factor * c.dim, c.dim, true, c.init_std}) {}
  Config const& config() const { return cfg_; }
  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    proj_.visit_params(f, prefix + "proj.");
  }
  std::size_t forward_workspace(std::int64_t, std::int64_t) const { return 0; }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const { return 0; }

  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>& ws) const {
    return proj_.forward(ctx, grouped(x), y, ws);
  }
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dx, Arena<Space>& ws) const {
    proj_.backward(ctx, s, dy, grouped(dx), ws);
  }

  // Cached generation: no state.
  struct StepState {};
  StepState make_step_state(std::int64_t, std::int64_t) const { return {}; }
  std::size_t step_workspace(std::int64_t, std::int64_t) const { return 0; }
  void step_input(Ctx&, StepState&, CView, std::int64_t, Arena<Space>&) const {}
  void step_pool(Ctx& ctx, StepState&, CView window, std::int64_t, MView y, Arena<Space>& ws) const {
    proj_.forward(ctx, grouped(window), y, ws);
  }

 private:
  /// [B, L, d] as [B, L / k, k d] (same memory).
  template <class U>
  View<U, Space> grouped(View<U, Space> v) const {
    HSEQ_CHECK(v.rank() == 3 && v.size(2) == cfg_.dim && v.size(1) % cfg_.factor == 0,
               "LinearPoolShorten: x " << v.shape << " is not [B, L, " << cfg_.dim << "] with L a multiple of "
                                       << cfg_.factor);
    return v.reshape(Shape{v.size(0), v.size(1) / cfg_.factor, cfg_.factor * cfg_.dim});
  }
  Config cfg_;
  nn::Linear<B, T> proj_;
};

/// Policy tag: linear pooling.
struct LinearPool {
  static constexpr char const* kName = "linear";
  template <Backend B, class T>
  using Module = LinearPoolShorten<B, T>;
};

}  // namespace hseq::hier
