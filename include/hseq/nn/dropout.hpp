// SPDX-License-Identifier: MIT
/// @file
/// @brief `DropoutStream`: where a module's dropout masks come from, and whether it drops at all.
///
/// Dropout in the modules (the attention probabilities of `MultiHeadAttention`, the hidden
/// activation of `Mlp`, the two residual branches of `TransformerBlock`) is inverted dropout with
/// ops::dropout_forward: the mask is a pure function of (seed, stream, element index) through
/// Philox, so backward regenerates it instead of storing it, a CPU and a GPU run drop the same
/// elements, and a finite-difference check over a fixed stream is valid. The rates live in the
/// modules' Configs; the stream is an argument of `forward` (a trailing `DropoutStream drop = {}`),
/// recorded in the module's Saved for backward. A default (inactive) stream drops nothing, and the
/// module then runs exactly the code it ran before dropout existed (bit-identical results), as it
/// does with every rate 0. Cached generation (`forward_step`) takes no stream: it never drops.
///
/// Each module that owns sub-modules hands them `drop.child(i)` (a distinct sub-stream per block of a
/// stack, per sub-module of a block) and takes the key of each of its own dropout sites with
/// `drop.key(site)`, so no two masks of one forward share a stream. The trainer makes a fresh
/// active stream per step and micro-batch (`training_dropout`), derived from its data seed, so a
/// resumed run draws the masks an uninterrupted one would; the evaluator's stream stays inactive.
#pragma once

#include <cstdint>

#include "hseq/core/error.hpp"
#include "hseq/ops/dropout.hpp"

namespace hseq::nn {

struct DropoutStream {
  std::uint64_t seed = 0, stream = 0;
  bool active = false;  ///< false: every module drops nothing (evaluation, the default)

  /// Tags of the two derivations, so that child(i) and key(i) never share a stream.
  static constexpr std::uint64_t kChildTag = 0xC1, kSiteTag = 0x51;

  /// The sub-stream of sub-module i (block l of a stack, the attention or MLP of a block).
  DropoutStream child(std::uint64_t i) const { return {seed, ops::derive_stream(stream, kChildTag, i), active}; }
  /// The mask key of this module's own dropout site `site`.
  ops::DropoutKey key(std::uint64_t site) const { return {seed, ops::derive_stream(stream, kSiteTag, site)}; }
  /// The probability a site configured with rate p drops with: p when active, else 0.
  double rate(double p) const { return active ? p : 0.0; }
};

/// The stream of a training forward: seed `seed` (the trainer's data seed), one stream per
/// (step, micro-batch), active. A pure function, so a resumed run reproduces the masks.
inline DropoutStream training_dropout(std::uint64_t seed, std::int64_t step, std::int64_t micro) {
  constexpr std::uint64_t kSeedTag = 0xD5, kStepTag = 0x57;
  return {ops::derive_stream(seed, kSeedTag, 0),
          ops::derive_stream(std::uint64_t(step), kStepTag, std::uint64_t(micro)), true};
}

/// Checks a configured dropout rate (in [0, 1)); `who` names the field in the error.
inline double checked_dropout_rate(double p, char const* who) {
  HSEQ_CHECK(p >= 0.0 && p < 1.0, who << " " << p << " is outside [0, 1)");
  return p;
}

}  // namespace hseq::nn
