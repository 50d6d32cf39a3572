// SPDX-License-Identifier: MIT
// Model FLOPs per token of hseq's TransformerLm and Hourglass, for MFU figures (host-only, any
// backend). bench/peer_pytorch_gpu.py's model_flops() is the same count over the PyTorch twins.
//
// Model FLOPs per token = 6 N_eff + attention term, forward + backward:
//   N_eff   the non-embedding parameters (token and position embeddings excluded), each weighted by
//           the fraction of the full-rate positions its layer processes (1 everywhere in the LM,
//           so N_eff = N)
//   attn    12 d (Tq Tk / T) per attention layer and token (QK^T and PV: 2 x 2 d Tq Tk forward,
//           x 3 with backward): 12 L d T for the LM, i.e. PaLM's 6N + 12 L d T ("palm", the
//           attention term not halved for the causal mask); "causal" halves the attention term.
// The tied output projection (6 d V per token) is not counted.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "hseq/hier/hierarchy.hpp"

namespace hseq_bench {

struct FlopCount {
  double n_total = 0, n_nonemb = 0, n_eff = 0, attn_palm = 0;
  double palm() const { return 6.0 * n_eff + attn_palm; }
  double causal() const { return 6.0 * n_eff + 0.5 * attn_palm; }
};

inline bool starts_with(std::string const& s, std::string const& p) { return s.compare(0, p.size(), p) == 0; }
inline bool is_embedding(std::string const& name) { return starts_with(name, "tok_emb.") || starts_with(name, "pos_emb."); }

/// TransformerLm: N = non-embedding parameters of the store, attention 12 L d T.
template <class Store>
FlopCount lm_flops(Store const& ps, std::int64_t layers, std::int64_t d, std::int64_t t) {
  FlopCount f;
  for (auto const& e : ps.entries()) {
    double n = double(e.param->shape.numel());
    f.n_total += n;
    if (is_embedding(e.name)) continue;
    f.n_nonemb += n;
    f.n_eff += n;
  }
  f.attn_palm = 12.0 * double(layers) * double(d) * double(t);
  return f;
}

/// Hourglass: rate[i] = product of the factors of the levels before level i (rate[0] = 1). A
/// parameter of level i runs at 1 / rate[i + 1] of the positions, except those that work at the
/// enclosing rate: the attention pool's input LayerNorm and key/value projection, the attention
/// upsampling's everything but its ln_s and key/value projection, and ln_up. Attention: pre/post
/// blocks 12 d T, level-i blocks 12 d T / rate[i+1]^2, each resampling cross-attention (queries at
/// one rate, keys at the other) 12 d T / (rate[i] rate[i+1]).
template <class Store>
FlopCount hourglass_flops(hseq::hier::HierarchySpec const& spec, Store const& ps, std::int64_t d_, std::int64_t t_,
                          bool attn_pool, bool attn_up) {
  std::vector<double> rate{1.0};
  for (auto const& lv : spec.levels) rate.push_back(rate.back() * double(lv.factor));
  FlopCount f;
  for (auto const& e : ps.entries()) {
    double n = double(e.param->shape.numel());
    f.n_total += n;
    if (is_embedding(e.name)) continue;
    f.n_nonemb += n;
    double frac = 1.0;
    if (starts_with(e.name, "levels.")) {
      std::size_t dot = e.name.find('.', 7);
      std::size_t i = std::size_t(std::atoi(e.name.substr(7, dot - 7).c_str()));
      std::string rest = e.name.substr(dot + 1);
      double inner = 1.0 / rate[i + 1], outer = 1.0 / rate[i];
      if (starts_with(rest, "pre.") || starts_with(rest, "post.")) frac = inner;
      else if (starts_with(rest, "shorten."))
        frac = (starts_with(rest, "shorten.attn.kv.") || starts_with(rest, "shorten.ln_in.")) ? outer : inner;
      else if (starts_with(rest, "upsample."))
        frac = (starts_with(rest, "upsample.attn.kv.") || starts_with(rest, "upsample.ln_s.")) ? inner : outer;
      else frac = outer;  // ln_up
    }
    f.n_eff += n * frac;
  }
  double d = double(d_), t = double(t_);
  f.attn_palm = 12.0 * d * t * double(spec.pre + spec.post);
  for (std::size_t i = 0; i < spec.levels.size(); ++i) {
    double blocks = double(spec.levels[i].layers) * (i + 1 < spec.levels.size() ? 2.0 : 1.0);
    f.attn_palm += blocks * 12.0 * d * t / (rate[i + 1] * rate[i + 1]);
    double cross = 12.0 * d * t / (rate[i] * rate[i + 1]);
    if (attn_pool) f.attn_palm += cross;
    if (attn_up) f.attn_palm += cross;
  }
  return f;
}

}  // namespace hseq_bench
