// SPDX-License-Identifier: MIT
/// @file
/// @brief `AdamW` over a `ParamStore`: decoupled weight decay (applied to parameters whose
/// `decay` flag is set), bias-corrected moments, state kept in two flat buffers shaped like the store.
///
/// AdamW is a `StatefulPart`: `visit_state` names its moments `m.<param>`, `v.<param>` and its step
/// count `step`, so a checkpoint group called "optim" holds `optim.m.<param>`, `optim.v.<param>` and
/// `optim.step`, the names checkpoints have always used.
///
/// Parameter groups (nn/parameter.hpp): a frozen parameter is skipped entirely (no update, no
/// decay, moments untouched); every other parameter uses lr * `Param::lr_scale`. The bias
/// correction uses the optimizer's one step count, so a parameter unfrozen after k steps starts
/// from zero moments corrected with 1 - beta^(k+1): its first updates are smaller than a fresh
/// Adam's (PyTorch counts steps per parameter; one count keeps the checkpoint format).
#pragma once

#include <cstdint>
#include <string>

#include "hseq/core/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/state.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/adamw.hpp"

namespace hseq::train {

template <Backend B, class T>
class AdamW {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;

  struct Config {
    double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
  };

  /// Moments start at zero (written through `ctx`, the caller's stream on a GPU).
  AdamW(Ctx& ctx, nn::ParamStore<B, T>& store, Config c) : store_(&store), cfg_(c) {
    HSEQ_CHECK(c.lr >= 0 && c.eps > 0 && c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1 &&
                   c.weight_decay >= 0,
               "AdamW: invalid hyper-parameters lr " << c.lr << ", betas (" << c.beta1 << ", " << c.beta2 << "), eps "
                                                     << c.eps << ", weight_decay " << c.weight_decay);
    m_ = Tensor<T, B>(store.values().shape);
    v_ = Tensor<T, B>(store.values().shape);
    reset(ctx);
  }

  /// Zeroes the moments and the step count.
  void reset(Ctx& ctx) {
    B::zero_bytes(ctx, m_.data(), sizeof(T) * std::size_t(m_.numel()));
    B::zero_bytes(ctx, v_.data(), sizeof(T) * std::size_t(v_.numel()));
    step_ = 0;
  }

  /// One update with learning rate `lr` (a schedule's value; the config's lr when negative), scaled
  /// per parameter by its `lr_scale`; frozen parameters are skipped.
  void step(Ctx& ctx, double lr = -1) {
    ++step_;
    double const base_lr = lr < 0 ? cfg_.lr : lr;
    ops::AdamWStep s{base_lr, cfg_.beta1, cfg_.beta2, cfg_.eps, 0.0, step_};
    auto values = store_->values();
    auto grads = store_->grads();
    for (auto const& e : store_->entries()) {
      if (e.param->frozen) continue;
      std::int64_t n = e.param->shape.numel();
      s.lr = base_lr * e.param->lr_scale;  // exact for the default scale 1
      s.weight_decay = e.param->decay ? cfg_.weight_decay : 0.0;
      Shape flat{n};
      ops::adamw_update<T>(ctx, View<T, Space>(values.data + e.offset, flat),
                           View<T const, Space>(grads.data + e.offset, flat), View<T, Space>(m_.data() + e.offset, flat),
                           View<T, Space>(v_.data() + e.offset, flat), s);
    }
  }

  Config const& config() const { return cfg_; }
  void set_config(Config c) { cfg_ = c; }
  std::int64_t steps() const { return step_; }
  void set_steps(std::int64_t s) { step_ = s; }
  /// First and second moments, flat and aligned like `ParamStore::values()` (for checkpoints).
  View<T, Space> first_moment() { return m_.view(); }
  View<T, Space> second_moment() { return v_.view(); }

  /// The named state (see the file comment): per parameter of the store, in its order, the first
  /// and second moment viewed with the parameter's shape; then the step count.
  template <class F>
  void visit_state(F&& f) {
    for (auto const& e : store_->entries()) {
      Shape const& s = e.param->shape;
      f(std::string("m.") + e.name, View<T, Space>(m_.data() + e.offset, s));
      f(std::string("v.") + e.name, View<T, Space>(v_.data() + e.offset, s));
    }
    f(std::string("step"), step_);
  }

 private:
  nn::ParamStore<B, T>* store_;
  Config cfg_;
  Tensor<T, B> m_, v_;
  std::int64_t step_ = 0;
};

}  // namespace hseq::train
