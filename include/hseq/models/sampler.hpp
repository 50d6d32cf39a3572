// SPDX-License-Identifier: MIT
/// @file
/// @brief Next-token sampling from one row of logits: greedy, temperature, top-k and top-p
/// (nucleus), seeded and reproducible (Philox).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "hseq/core/error.hpp"
#include "hseq/core/rng.hpp"

namespace hseq::models {

struct SamplerConfig {
  double temperature = 1.0;  ///< 0 means greedy (argmax)
  std::int64_t top_k = 0;    ///< keep the k most likely tokens (0: all)
  double top_p = 1.0;        ///< keep the smallest set whose probability reaches p (1: all)
  std::uint64_t seed = 1;
};

/// Draws token ids from logits. Holds its scratch buffers, so sampling does not allocate after the
/// first call for a vocabulary size.
class Sampler {
 public:
  explicit Sampler(SamplerConfig c = {}) : cfg_(c), rng_(c.seed, 0x5A4D) {
    HSEQ_CHECK(c.temperature >= 0 && c.top_k >= 0 && c.top_p > 0 && c.top_p <= 1,
               "Sampler: temperature " << c.temperature << ", top_k " << c.top_k << ", top_p " << c.top_p
                                       << " (need temperature >= 0, top_k >= 0, 0 < top_p <= 1)");
  }
  SamplerConfig const& config() const { return cfg_; }

  /// One token from logits[0, vocab). Ties in greedy mode go to the lowest id.
  template <class T>
  std::int32_t sample(T const* logits, std::int64_t vocab) {
    HSEQ_CHECK(vocab > 0, "Sampler: empty vocabulary");
    for (std::int64_t i = 0; i < vocab; ++i)
      HSEQ_CHECK(!std::isnan(double(logits[i])), "Sampler: logit " << i << " is NaN");
    if (cfg_.temperature == 0.0) return std::int32_t(std::max_element(logits, logits + vocab) - logits);
    order_.resize(std::size_t(vocab));
    probs_.resize(std::size_t(vocab));
    std::iota(order_.begin(), order_.end(), 0);
    // Sort ids by logit, descending (stable, so equal logits keep id order: reproducible).
    std::stable_sort(order_.begin(), order_.end(), [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b]; });
    std::int64_t keep = cfg_.top_k > 0 ? std::min(cfg_.top_k, vocab) : vocab;
    double mx = double(logits[order_[0]]), total = 0;
    for (std::int64_t i = 0; i < keep; ++i) {
      probs_[std::size_t(i)] = std::exp((double(logits[order_[std::size_t(i)]]) - mx) / cfg_.temperature);
      total += probs_[std::size_t(i)];
    }
    if (cfg_.top_p < 1.0) {
      double acc = 0;
      std::int64_t n = 0;
      while (n < keep) {
        acc += probs_[std::size_t(n)] / total;
        ++n;
        if (acc >= cfg_.top_p) break;
      }
      keep = n;
      total = 0;
      for (std::int64_t i = 0; i < keep; ++i) total += probs_[std::size_t(i)];
    }
    double u = rng_.uniform() * total, acc = 0;
    for (std::int64_t i = 0; i < keep; ++i) {
      acc += probs_[std::size_t(i)];
      if (u < acc) return order_[std::size_t(i)];
    }
    return order_[std::size_t(keep - 1)];
  }

 private:
  SamplerConfig cfg_;
  Rng rng_;
  std::vector<std::int32_t> order_;
  std::vector<double> probs_;
};

}  // namespace hseq::models
