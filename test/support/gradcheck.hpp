// SPDX-License-Identifier: MIT
/// @file
/// @brief Test support: random tensors, and the finite-difference gradient check every module uses.
///
/// The check (dlib's test_layer, ggml's test-backend-ops, in double):
///   1. scalarise the output with a fixed random r: L = <out, r>, so dL/dout = r;
///   2. analytic gradients: zero the parameter gradients, run forward + backward with dout = r;
///   3. accumulate rule: pre-fill parameter gradients with sentinels and input gradients with NaN,
///      run again: parameter gradients must equal sentinel + analytic (accumulated) and input
///      gradients must equal the analytic ones (overwritten, no NaN left);
///   4. central differences with a fixed eps for every element (or an evenly spread subset of at
///      most `max_per_tensor` elements) of every input and every parameter; pass when
///      |a - n| <= rel_tol * max(|a|, |n|), or |a - n| is below an absolute floor: abs_tol plus an
///      estimate of the quotient's own error (4 |n(eps) - n(2 eps)| + 8 ulps of |L| / 2 eps), which
///      only matters for gradients that are (nearly) zero. The worst element is reported.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/nn/parameter.hpp"

namespace hseq::test {

using HostTensor = Tensor<double, cpu>;

/// A tensor of N(0, scale^2) draws from Philox stream `seed`.
template <class T = double>
Tensor<T, cpu> random_tensor(Shape shape, std::uint64_t seed, double scale = 1.0) {
  Tensor<T, cpu> t(shape);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = T(scale * philox_normal(seed, 0xC0FFEE, std::uint64_t(i)));
  return t;
}

template <class T = double>
Tensor<T, cpu> filled_tensor(Shape shape, T value) {
  Tensor<T, cpu> t(shape);
  std::fill(t.data(), t.data() + t.numel(), value);
  return t;
}

/// <a, b> in double.
template <class T>
double dot(View<T const, HostSpace> a, View<T const, HostSpace> b) {
  REQUIRE(a.numel() == b.numel());
  double s = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) s += double(a[i]) * double(b[i]);
  return s;
}

/// Overwrites every parameter with N(0, scale^2) draws (so that zero-initialised biases and unit
/// LayerNorm gains do not hide errors).
template <class B, class T>
void randomize_params(nn::ParamStore<B, T>& ps, std::uint64_t seed, double scale = 0.5) {
  for (std::size_t k = 0; k < ps.entries().size(); ++k) {
    auto v = ps.entries()[k].param->value;
    for (std::int64_t i = 0; i < v.numel(); ++i) v[i] = T(scale * philox_normal(seed, 1000 + k, std::uint64_t(i)));
  }
}

struct GradcheckOptions {
  double eps = 1e-5;
  double rel_tol = 1e-6;
  double abs_tol = 1e-9;
  std::int64_t max_per_tensor = 64;
};

/// Gradient checker over the parameters of a ParamStore plus any inputs registered with `input`.
class GradCheck {
 public:
  explicit GradCheck(nn::ParamStore<cpu, double>& ps, GradcheckOptions opt = {}) : ps_(&ps), opt_(opt) {}
  explicit GradCheck(GradcheckOptions opt = {}) : opt_(opt) {}

  /// An input `value` whose gradient backward writes (overwrites) into `grad`.
  GradCheck& input(std::string name, View<double, HostSpace> value, View<double, HostSpace> grad) {
    REQUIRE(value.numel() == grad.numel());
    inputs_.push_back({std::move(name), value, grad});
    return *this;
  }

  /// `loss()` runs forward and returns <out, r>; `grads()` runs forward and backward with dout = r.
  void run(std::function<double()> const& loss, std::function<void()> const& grads) {
    // 2. analytic gradients
    if (ps_) fill(ps_->grads(), 0.0);
    for (auto& in : inputs_) fill(in.grad, 0.0);
    grads();
    std::vector<Probe> probes;
    for (auto& in : inputs_) probes.push_back({"input " + in.name, in.value, in.grad, copy_of(in.grad)});
    if (ps_)
      for (auto const& e : ps_->entries())
        probes.push_back({"param " + e.name, e.param->value, e.param->grad, copy_of(e.param->grad)});
    for (auto const& p : probes) {
      INFO("tensor: ", p.name);
      CHECK(all_finite(p.analytic));
    }
    // 3. accumulate into parameter gradients, overwrite input gradients
    if (ps_) {
      auto g = ps_->grads();
      for (std::int64_t i = 0; i < g.numel(); ++i) g[i] = 0.25 + 0.001 * double(i % 97);
    }
    for (auto& in : inputs_) fill(in.grad, std::numeric_limits<double>::quiet_NaN());
    grads();
    for (auto const& p : probes) {
      bool is_param = p.name.rfind("param ", 0) == 0;
      std::int64_t base = is_param ? std::int64_t(p.grad.data - ps_->grads().data) : 0;
      double worst = 0;
      for (std::int64_t i = 0; i < p.grad.numel(); ++i) {
        double expect = is_param ? 0.25 + 0.001 * double((base + i) % 97) + p.analytic[i] : p.analytic[i];
        double err = std::abs(p.grad[i] - expect);
        if (!(err <= 1e-12 * (1 + std::abs(expect)))) worst = std::max(worst, std::isnan(err) ? 1e300 : err);
      }
      INFO("accumulate rule (params accumulate, inputs overwrite) for ", p.name);
      CHECK(worst == 0);
    }
    // 4. central differences
    for (auto const& p : probes) {
      std::int64_t n = p.value.numel();
      std::int64_t stride = std::max<std::int64_t>(1, n / opt_.max_per_tensor);
      double worst_rel = 0;
      std::int64_t worst_i = -1, failures = 0;
      double worst_a = 0, worst_n = 0;
      for (std::int64_t i = 0; i < n; i += stride) {
        double v = p.value[i];
        // Central differences at eps and 2 eps: their disagreement estimates the quotient's own
        // error (rounding ~ 1/eps, truncation ~ eps^2), which sets the floor for gradients that are
        // zero or nearly so (e.g. the key bias, which softmax cancels exactly).
        auto quotient = [&](double h, double& lsum) {
          p.value[i] = v + h;
          double lp = loss();
          p.value[i] = v - h;
          double lm = loss();
          p.value[i] = v;
          lsum = std::abs(lp) + std::abs(lm);
          return (lp - lm) / (2 * h);
        };
        double lsum = 0, lsum2 = 0;
        double num = quotient(opt_.eps, lsum), num2 = quotient(2 * opt_.eps, lsum2), ana = p.analytic[i];
        double err = std::abs(num - ana), mag = std::max(std::abs(num), std::abs(ana));
        double floor = opt_.abs_tol + 4 * std::abs(num - num2) +
                       8 * std::numeric_limits<double>::epsilon() * lsum / (2 * opt_.eps);
        bool ok = err <= opt_.rel_tol * mag || err <= floor;
        double rel = mag > 0 ? err / mag : 0;
        if (!ok) ++failures;
        if (!ok && rel >= worst_rel) {
          worst_rel = rel;
          worst_i = i;
          worst_a = ana;
          worst_n = num;
        }
        ++checked_;
      }
      INFO("finite differences for ", p.name, ": worst element ", worst_i, " analytic ", worst_a, " numeric ",
           worst_n, " relative error ", worst_rel);
      CHECK(failures == 0);
    }
    // Nothing trivial: some gradient must be non-zero.
    double norm = 0;
    for (auto const& p : probes)
      for (double a : p.analytic) norm += a * a;
    CHECK(norm > 0);
  }

  std::int64_t elements_checked() const { return checked_; }

 private:
  struct Input {
    std::string name;
    View<double, HostSpace> value, grad;
  };
  struct Probe {
    std::string name;
    View<double, HostSpace> value, grad;
    std::vector<double> analytic;
  };
  static void fill(View<double, HostSpace> v, double x) { std::fill(v.begin(), v.end(), x); }
  static std::vector<double> copy_of(View<double, HostSpace> v) { return std::vector<double>(v.begin(), v.end()); }
  static bool all_finite(std::vector<double> const& v) {
    return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
  }

  nn::ParamStore<cpu, double>* ps_ = nullptr;
  GradcheckOptions opt_;
  std::vector<Input> inputs_;
  std::int64_t checked_ = 0;
};

}  // namespace hseq::test
