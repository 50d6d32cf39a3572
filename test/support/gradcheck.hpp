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
///   4. central differences with a fixed eps for every element of every input and every parameter
///      or, above `max_per_tensor` elements, for a seeded random subset of exactly that many (always
///      including the first and the last element; see `sample`); pass when
///      |a - n| <= rel_tol * max(|a|, |n|), or |a - n| is below an absolute floor: abs_tol plus an
///      estimate of the quotient's own error (4 |n(eps) - n(2 eps)| + 8 ulps of |L| / 2 eps), which
///      only matters for gradients that are (nearly) zero. The worst element is reported;
///   5. no ignored tensor: every input and every parameter tensor must have a non-zero analytic
///      gradient, meaning max|g| > zero_fraction * (the largest |g| of any tensor). A tensor whose
///      gradient is zero by construction is named with `allow_zero(pattern, reason)`; it must then be
///      (near) zero by the same measure, and every pattern must match some tensor, so a stale entry
///      fails. Step 4 cannot catch a forward that ignores a tensor: analytic and numeric are both 0.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <utility>
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
  /// Tensors with more elements are probed at this many (>= 2) seeded random elements.
  std::int64_t max_per_tensor = 64;
  /// A tensor's gradient counts as zero when max|g| <= zero_fraction * (largest |g| of any tensor).
  /// In double, a gradient that is zero in exact arithmetic shows rounding noise instead: the key
  /// half of the attention kv.bias, which softmax cancels, measures at most 2e-16 of the largest
  /// gradient in these tests. Real gradients can be small, though: the attention query weights of
  /// the tiny randomised Hourglass models, with two or three keys per query at the short levels,
  /// measure down to 2e-7 of the largest. 1e-11 is four decades from each.
  double zero_fraction = 1e-11;
  /// Key of the Philox streams that choose the probed elements (the stream is a hash of the name).
  std::uint64_t sample_seed = 0x5EED;
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

  /// Declares that the gradient of every tensor whose name ("param <name>" or "input <name>", as in
  /// the failure messages) matches `pattern` is zero by construction, for the stated `reason`
  /// (required: the allowlist documents itself). `*` in the pattern matches any run of characters.
  GradCheck& allow_zero(std::string pattern, std::string reason) {
    REQUIRE(!reason.empty());
    allowed_zero_.push_back({std::move(pattern), std::move(reason)});
    return *this;
  }

  /// The elements of an n-element tensor that step 4 probes, ascending: all when n <= m
  /// (= max_per_tensor), else the first, the last and m - 2 distinct others drawn uniformly by a
  /// partial Fisher-Yates shuffle from Philox stream `stream`. A stride of n / m would probe the same
  /// columns of every row whenever the row length shares a factor with the stride.
  static std::vector<std::int64_t> sample(std::int64_t n, std::int64_t m, std::uint64_t seed, std::uint64_t stream) {
    REQUIRE(m >= 2);
    std::vector<std::int64_t> idx(static_cast<std::size_t>(n));
    std::iota(idx.begin(), idx.end(), std::int64_t(0));
    if (n <= m) return idx;
    Rng rng(seed, stream);
    // idx[1 .. n-2] are the candidates; move m - 2 random ones to idx[1 .. m-2], keep idx[n-1] last.
    for (std::int64_t k = 1; k < m - 1; ++k) {
      std::int64_t j = k + std::int64_t(rng.below(std::uint64_t(n - 1 - k)));
      std::swap(idx[std::size_t(k)], idx[std::size_t(j)]);
    }
    std::vector<std::int64_t> out(idx.begin(), idx.begin() + (m - 1));
    out.push_back(n - 1);
    std::sort(out.begin(), out.end());
    return out;
  }

  /// Glob match with `*` as the only wildcard.
  static bool glob_match(std::string const& pattern, std::string const& name) {
    std::size_t p = 0, s = 0, star = std::string::npos, mark = 0;
    while (s < name.size()) {
      if (p < pattern.size() && pattern[p] == '*') {
        star = p++;
        mark = s;
      } else if (p < pattern.size() && pattern[p] == name[s]) {
        ++p;
        ++s;
      } else if (star != std::string::npos) {
        p = star + 1;
        s = ++mark;
      } else {
        return false;
      }
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
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
      double worst_rel = 0;
      std::int64_t worst_i = -1, failures = 0;
      double worst_a = 0, worst_n = 0;
      for (std::int64_t i : sample(p.value.numel(), opt_.max_per_tensor, opt_.sample_seed, name_hash(p.name))) {
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
    // 5. Nothing ignored: every tensor's gradient is non-zero unless allowlisted, and then zero.
    std::vector<std::pair<std::string, double>> max_grads;
    for (auto const& p : probes) max_grads.emplace_back(p.name, max_abs(p.analytic));
    for (auto const& problem : zero_gradient_problems(max_grads, allowed_zero_, opt_.zero_fraction))
      FAIL_CHECK(problem);
  }

  struct AllowedZero {
    std::string pattern, reason;
  };

  /// Step 5 on (tensor name, max|analytic gradient|) pairs: one message per problem, none when the
  /// gradients pass. Separate from `run` so that the rule itself is tested (test_gradcheck.cpp).
  static std::vector<std::string> zero_gradient_problems(std::vector<std::pair<std::string, double>> const& max_grads,
                                                         std::vector<AllowedZero> const& allowed, double zero_fraction) {
    std::vector<std::string> problems;
    double largest = 0;
    for (auto const& [name, m] : max_grads) largest = std::max(largest, m);
    if (!(largest > 0)) problems.push_back("every gradient is exactly zero");
    double zero_below = zero_fraction * largest;
    auto num = [](double x) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.6g", x);
      return std::string(buf);
    };
    std::string scale = " (zero_fraction of the largest max|grad|, " + num(largest) + ")";
    std::vector<bool> used(allowed.size(), false);
    for (auto const& [name, m] : max_grads) {
      std::string const* reason = nullptr;
      for (std::size_t k = 0; k < allowed.size(); ++k)
        if (glob_match(allowed[k].pattern, name)) {
          used[k] = true;
          if (!reason) reason = &allowed[k].reason;
        }
      if (reason && !(m <= zero_below))
        problems.push_back(name + " is allowlisted as zero by construction (" + *reason + ") but max|grad| = " +
                           num(m) + " > " + num(zero_below) + scale);
      if (!reason && !(m > zero_below))
        problems.push_back(name + " has a zero gradient: max|grad| = " + num(m) + " <= " + num(zero_below) + scale +
                           "; the forward ignores it, or allowlist it with allow_zero and the reason");
    }
    for (std::size_t k = 0; k < allowed.size(); ++k)
      if (!used[k])
        problems.push_back("allow_zero pattern '" + allowed[k].pattern + "' (" + allowed[k].reason +
                           ") matches no tensor: a stale entry");
    return problems;
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
  static double max_abs(std::vector<double> const& v) {
    double m = 0;
    for (double x : v) m = std::max(m, std::abs(x));
    return m;
  }
  /// FNV-1a: each tensor's probed subset depends on its name only, not on registration order.
  static std::uint64_t name_hash(std::string const& s) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h;
  }
  static bool all_finite(std::vector<double> const& v) {
    return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
  }

  nn::ParamStore<cpu, double>* ps_ = nullptr;
  GradcheckOptions opt_;
  std::vector<Input> inputs_;
  std::vector<AllowedZero> allowed_zero_;
  std::int64_t checked_ = 0;
};

}  // namespace hseq::test
