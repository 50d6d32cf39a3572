// SPDX-License-Identifier: MIT
/// @file
/// @brief `Linear`: y = x W^T + b (PyTorch `nn.Linear` layout: W is [out, in]).
#pragma once

#include <cstdint>
#include <string>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/module.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/gemm.hpp"

namespace hseq::nn {

template <Backend B, class T>
class Linear {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;

  struct Config {
    std::int64_t in = 0, out = 0;
    bool bias = true;
    double init_std = 0.02;  ///< weights ~ N(0, init_std^2); biases start at zero
  };
  struct Saved {
    CView x;  // [N, in], the caller's input
  };

  explicit Linear(Config c) : cfg_(c) {
    HSEQ_CHECK(c.in > 0 && c.out > 0, "Linear: sizes must be positive, got in " << c.in << ", out " << c.out);
    weight_ = Param<T, Space>(Shape{c.out, c.in}, InitSpec::normal(c.init_std));
    if (c.bias) bias_ = Param<T, Space>(Shape{c.out}, InitSpec::zeros(), false);
  }
  Config const& config() const { return cfg_; }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    f(prefix + "weight", weight_);
    if (cfg_.bias) f(prefix + "bias", bias_);
  }
  Param<T, Space> const& weight() const { return weight_; }
  Param<T, Space> const& bias() const { return bias_; }

  std::size_t forward_workspace(std::int64_t /*rows*/) const { return 0; }
  std::size_t backward_workspace(std::int64_t /*rows*/) const { return 0; }

  /// y[N, out] = x[N, in] W^T + b (leading dimensions folded into N).
  Saved forward(Ctx& ctx, CView x, MView y, Arena<Space>& /*ws*/) const {
    HSEQ_CHECK(x.cols() == cfg_.in && y.cols() == cfg_.out && x.rows() == y.rows(),
               "Linear(" << cfg_.in << " -> " << cfg_.out << "): x " << x.shape << ", y " << y.shape);
    ops::gemm<T>(ctx, ops::Trans::kNo, ops::as_mat(x), ops::Trans::kYes, ops::as_mat(CView(weight_.value)),
                 ops::as_mat(y));
    if (cfg_.bias) ops::add_bias<T>(ctx, y, bias_.value);
    return Saved{x};
  }

  /// dW += dy^T x, db += sum_rows(dy), dx = dy W (skipped when dx is empty). A frozen weight or
  /// bias gets no gradient (its work is skipped); dx is the same either way.
  void backward(Ctx& ctx, Saved const& s, CView dy, MView dx, Arena<Space>& /*ws*/) const {
    HSEQ_CHECK(dy.cols() == cfg_.out && dy.rows() == s.x.rows(),
               "Linear(" << cfg_.in << " -> " << cfg_.out << ")::backward: dy " << dy.shape << " for x " << s.x.shape);
    if (!weight_.frozen)
      ops::gemm<T>(ctx, ops::Trans::kYes, ops::as_mat(dy), ops::Trans::kNo, ops::as_mat(s.x),
                   ops::as_mat(weight_.grad), T(1), T(1));
    if (cfg_.bias && !bias_.frozen) ops::bias_grad<T>(ctx, dy, bias_.grad);
    if (!dx.empty()) {
      HSEQ_CHECK(dx.shape == s.x.shape, "Linear::backward: dx " << dx.shape << " differs from x " << s.x.shape);
      ops::gemm<T>(ctx, ops::Trans::kNo, ops::as_mat(dy), ops::Trans::kNo, ops::as_mat(CView(weight_.value)),
                   ops::as_mat(dx));
    }
  }

 private:
  Config cfg_;
  Param<T, Space> weight_, bias_;
};

}  // namespace hseq::nn
