// SPDX-License-Identifier: MIT
/// @file
/// @brief The configuration shared by every shortening and upsampling module. The contracts those
/// modules follow are the concepts `ShortenPolicy` (hier/shorten_policy.hpp) and `UpsamplePolicy`
/// (hier/upsample_policy.hpp).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "hseq/core/error.hpp"

namespace hseq::hier {

struct ResampleConfig {
  std::int64_t dim = 0;
  std::int64_t factor = 2;      ///< k: L full-rate positions become L / k
  std::int64_t heads = 1;       ///< attention resampling only
  std::int64_t mlp_hidden = 0;  ///< attention resampling only; 0 means 4 * dim
  double eps = 1e-5;
  double init_std = 0.02;
  /// Attention resampling only. true (the default): the rate-aware causal masks of the
  /// autoregressive models. false: every query attends to every key of its own sequence (mask
  /// none; the bidirectional encoder of an autoencoder); cached generation (the step_* functions)
  /// then throws, since later positions would change earlier outputs.
  bool causal = true;
  /// The module serves a level of data-dependent segments (hier/ragged_policy.hpp; set by the
  /// Hourglass for rule levels): its cached state is sized for as many short positions as its
  /// capacity of inputs, not capacity / factor. Nothing else changes.
  bool segments = false;
};

inline ResampleConfig check_resample(ResampleConfig c, char const* who) {
  HSEQ_CHECK(c.dim > 0 && c.factor >= 1, who << ": dim " << c.dim << " and factor " << c.factor
                                             << " must be positive");
  return c;
}

/// Whether a shortening or upsampling policy P is attention resampling (its tag declares
/// `static constexpr bool kAttention = true`): such a module works at both rates (cross-attention
/// between them), which is what a FLOP count or a causality rule must know, whatever its query
/// source. False for a tag without the member.
template <class P>
inline constexpr bool kAttentionResampling = requires { requires P::kAttention; };

namespace detail {
/// "attention_" + Query::kName as a constant string (the kName of an attention resampling tag).
template <class Query>
struct AttentionNameText {
  static constexpr std::size_t kLen = std::char_traits<char>::length(Query::kName);
  static constexpr std::array<char, 10 + kLen + 1> kText = [] {
    std::array<char, 10 + kLen + 1> s{};  // zero-filled: the terminator
    constexpr char prefix[] = "attention_";
    for (std::size_t i = 0; i < 10; ++i) s[i] = prefix[i];
    for (std::size_t i = 0; i < kLen; ++i) s[10 + i] = Query::kName[i];
    return s;
  }();
};
/// The kName of attention resampling with the query source Query: "attention" for the original
/// query source `Default` (the name checkpoints and configurations have always used), else
/// "attention_" + Query::kName.
template <class Query, class Default>
constexpr char const* attention_name() {
  if constexpr (std::is_same_v<Query, Default>) return "attention";
  else return AttentionNameText<Query>::kText.data();
}
}  // namespace detail

}  // namespace hseq::hier
