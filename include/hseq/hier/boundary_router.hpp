// SPDX-License-Identifier: MIT
/// @file
/// @brief `BoundaryRouter`: the learned router of a rule level, chosen by its `hier::ByteRule` kind
/// at run time (the hierarchy is a runtime string): "router:N", H-Net's cosine router
/// (hier/cosine_router.hpp), or "mlp:N", Dynamic Token Pooling's MLP boundary predictor
/// (hier/mlp_router.hpp). Both turn a level's input x [B, L, d] into boundary probabilities p_t on
/// the host (p_0 = 1) and take dL/dp_t back; the model (models/hourglass.hpp) thresholds p at 1/2
/// and trains them the same way (straight-through confidence, ratio loss, optional EMA de-chunking).
/// Parameters under the router's prefix: "qk.weight" (cosine), "fc1.*", "fc2.*" (mlp).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/byte_rule.hpp"
#include "hseq/hier/cosine_router.hpp"
#include "hseq/hier/mlp_router.hpp"

namespace hseq::hier {

template <Backend B, class T>
class BoundaryRouter {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Cosine = CosineRouter<B, T>;
  using Mlp = MlpRouter<B, T>;

  struct Config {
    ByteRule::Kind kind = ByteRule::Kind::kRouter;  ///< kRouter (cosine) or kMlp
    std::int64_t dim = 0;
    double init_std = 0.02;  ///< the MLP's weights
  };
  /// The forward's trace of whichever router this is (the other member stays empty).
  struct Saved {
    typename Cosine::Saved cosine;
    typename Mlp::Saved mlp;
    bool is_mlp = false;
    /// p_t [B * L] (host).
    std::vector<double> const& p() const { return is_mlp ? mlp.p : cosine.p; }
    /// Real positions per row [B].
    std::vector<std::int32_t> const& row_len() const { return is_mlp ? mlp.row_len : cosine.row_len; }
  };
  struct StepState {
    std::variant<typename Cosine::StepState, typename Mlp::StepState> state;
  };

  explicit BoundaryRouter(Config c) : impl_(make(c)) {}

  /// Whether this is the MLP boundary predictor.
  bool is_mlp() const { return std::holds_alternative<Mlp>(impl_); }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    std::visit([&](auto& r) { r.visit_params(f, prefix); }, impl_);
  }
  std::size_t forward_workspace(std::int64_t batch, std::int64_t len) const {
    return std::visit([&](auto const& r) { return r.forward_workspace(batch, len); }, impl_);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t len) const {
    return std::visit([&](auto const& r) { return r.backward_workspace(batch, len); }, impl_);
  }
  void forward(Ctx& ctx, CView x, std::span<std::int32_t const> row_len, Saved& s, Arena<Space>& ws) const {
    s.is_mlp = is_mlp();
    if (auto const* m = std::get_if<Mlp>(&impl_)) m->forward(ctx, x, row_len, s.mlp, ws);
    else std::get<Cosine>(impl_).forward(ctx, x, row_len, s.cosine, ws);
  }
  void backward(Ctx& ctx, Saved& s, std::span<double const> dp, MView dx, Arena<Space>& ws) const {
    HSEQ_CHECK(s.is_mlp == is_mlp(), "BoundaryRouter::backward: a trace of the other router kind");
    if (auto const* m = std::get_if<Mlp>(&impl_)) m->backward(ctx, s.mlp, dp, dx, ws);
    else std::get<Cosine>(impl_).backward(ctx, s.cosine, dp, dx, ws);
  }

  StepState make_step_state(std::int64_t batch) const {
    return std::visit([&](auto const& r) { return StepState{r.make_step_state(batch)}; }, impl_);
  }
  void reset(StepState& st) const {
    if (auto const* m = std::get_if<Mlp>(&impl_)) m->reset(std::get<typename Mlp::StepState>(st.state));
    else std::get<Cosine>(impl_).reset(std::get<typename Cosine::StepState>(st.state));
  }
  std::size_t step_workspace() const {
    return std::visit([&](auto const& r) { return r.step_workspace(); }, impl_);
  }
  double step(Ctx& ctx, StepState& st, std::int64_t row, CView x, Arena<Space>& ws) const {
    if (auto const* m = std::get_if<Mlp>(&impl_))
      return m->step(ctx, std::get<typename Mlp::StepState>(st.state), row, x, ws);
    return std::get<Cosine>(impl_).step(ctx, std::get<typename Cosine::StepState>(st.state), row, x, ws);
  }

 private:
  static std::variant<Cosine, Mlp> make(Config const& c) {
    HSEQ_CHECK(c.kind == ByteRule::Kind::kRouter || c.kind == ByteRule::Kind::kMlp,
               "BoundaryRouter: the rule kind is not a learned router (router:N or mlp:N)");
    if (c.kind == ByteRule::Kind::kMlp)
      return std::variant<Cosine, Mlp>(std::in_place_type<Mlp>, typename Mlp::Config{c.dim, 0, c.init_std});
    return std::variant<Cosine, Mlp>(std::in_place_type<Cosine>, typename Cosine::Config{c.dim});
  }

  std::variant<Cosine, Mlp> impl_;
};

}  // namespace hseq::hier
