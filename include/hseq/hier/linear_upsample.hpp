// SPDX-License-Identifier: MIT
/// @file
/// @brief Linear upsampling: Linear(d -> k d) on each short vector, the k d outputs read as k
/// consecutive full-rate vectors ([B, L / k, k d] viewed as [B, L, d]).
#pragma once

#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/ops/mat.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/resample_config.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/module.hpp"

namespace hseq::hier {

template <Backend B, class T>
class LinearUpsample {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = ResampleConfig;
  using Saved = typename nn::Linear<B, T>::Saved;

  explicit LinearUpsample(Config c)
      : cfg_(check_resample(c, "LinearUpsample")), proj_({c.dim, c.factor * c.dim, true, c.init_std}) {}
  Config const& config() const { return cfg_; }
  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    proj_.visit_params(f, prefix + "proj.");
  }
  std::size_t forward_workspace(std::int64_t, std::int64_t) const { return 0; }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const { return 0; }

  Saved forward(Ctx& ctx, CView y, CView /*res*/, MView u, Arena<Space>& ws) const {
    return proj_.forward(ctx, y, grouped(u, y), ws);
  }
  void backward(Ctx& ctx, Saved const& s, CView du, MView dy, MView /*dres*/, Arena<Space>& ws) const {
    proj_.backward(ctx, s, grouped(du, CView(dy)), dy, ws);
  }

  // Cached generation: the state is the newest short vector's k d projection.
  struct StepState {
    Tensor<T, B> last;  // [B, 1, k d]
  };
  StepState make_step_state(std::int64_t batch, std::int64_t) const {
    return {Tensor<T, B>(Shape{batch, 1, cfg_.factor * cfg_.dim})};
  }
  std::size_t step_workspace(std::int64_t, std::int64_t) const { return 0; }
  void step_short(Ctx& ctx, StepState& st, CView y, std::int64_t, Arena<Space>& ws) const {
    proj_.forward(ctx, y, st.last.view(), ws);
  }
  /// u [B, 1, d] = slice p mod k of the newest projection.
  void step_up(Ctx& ctx, StepState& st, CView, std::int64_t p, MView u, Arena<Space>&) const {
    std::int64_t bsz = u.size(0), d = cfg_.dim, k = cfg_.factor;
    ops::copy_mat<T>(ctx, {st.last.data() + (p % k) * d, bsz, d, k * d}, ops::as_mat(u.reshape(Shape{bsz, d})));
  }

 private:
  template <class U>
  View<U, Space> grouped(View<U, Space> u, CView y) const {
    HSEQ_CHECK(u.rank() == 3 && y.rank() == 3 && u.shape == (Shape{y.size(0), y.size(1) * cfg_.factor, cfg_.dim}),
               "LinearUpsample(k " << cfg_.factor << "): y " << y.shape << ", u " << u.shape);
    return u.reshape(Shape{y.size(0), y.size(1), cfg_.factor * cfg_.dim});
  }
  Config cfg_;
  nn::Linear<B, T> proj_;
};

/// Policy tag: linear upsampling.
struct LinearUp {
  static constexpr char const* kName = "linear";
  static constexpr bool kUsesResidual = false;
  template <Backend B, class T>
  using Module = LinearUpsample<B, T>;
};

}  // namespace hseq::hier
