// SPDX-License-Identifier: MIT
/// @file
/// @brief `PartConfig`: the one configuration every part of a segment-level hierarchical model
/// (HRED / HAED: encoder, backbone, decoder policies) is built from, as `ResampleConfig` is for the
/// Hourglass's resampling policies. The model fills one per part, so a policy can be swapped
/// without the model knowing its fields; each module reads the fields it needs and says so.
#pragma once

#include <cstdint>

#include "hseq/core/error.hpp"
#include "hseq/nn/rnn.hpp"

namespace hseq::hier {

struct PartConfig {
  std::int64_t dim = 0;           ///< model width d (every part's input and output width)
  std::int64_t segment = 0;       ///< bytes per segment K (encoders and decoders)
  std::int64_t heads = 1;         ///< attention heads (Transformer parts)
  std::int64_t layers = 1;        ///< stacked layers (backbones and decoders; encoders use one)
  std::int64_t mlp_hidden = 0;    ///< hidden width of every MLP (the MLP encoder, the blocks); 0: 4 dim
  nn::RnnKind cell = nn::RnnKind::kGru;  ///< recurrent cell (RNN parts)
  std::int64_t max_segments = 0;  ///< longest sequence of segments (the Transformer backbone's positions)
  double eps = 1e-5;              ///< LayerNorm epsilon
  double init_std = 0.02;         ///< weights ~ N(0, init_std^2) where a part draws normal weights
};

/// Checks the fields every part reads (dim, segment) and names the part in the error.
inline PartConfig check_part(PartConfig c, char const* who) {
  HSEQ_CHECK(c.dim > 0 && c.segment > 0,
             who << ": dim " << c.dim << " and segment size " << c.segment << " must be positive");
  HSEQ_CHECK(c.layers >= 1, who << ": layers must be >= 1, got " << c.layers);
  HSEQ_CHECK(c.mlp_hidden >= 0, who << ": mlp_hidden must be >= 0, got " << c.mlp_hidden);
  return c;
}

}  // namespace hseq::hier
