// SPDX-License-Identifier: MIT
/// @file
/// @brief Model flags and checkpoint loading shared by hseq-train, hseq-eval and hseq-generate.
#pragma once

#include <memory>
#include <string>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "cli.hpp"
#include "hseq/hseq.hpp"
#include "hseq/io/checkpoint.hpp"

namespace cli {

using Backend = hseq::cpu;
using Real = float;
using Lm = hseq::models::TransformerLm<Backend, Real>;

inline void add_model_flags(Args& a) {
  a.flag("model", "transformer", "model family: transformer (the baseline decoder-only LM)")
      .flag("dim", "256", "model width d")
      .flag("heads", "4", "attention heads (must divide --dim)")
      .flag("layers", "6", "Transformer blocks")
      .flag("context", "256", "longest sequence the model sees (learned position table length)")
      .flag("position", "learned", "position encoding: learned, sinusoidal or none")
      .toggle("untied", "use a separate output projection instead of the token embedding");
}

inline Lm::Config model_config(Args const& a) {
  std::string kind = a.str("model");
  HSEQ_CHECK(kind == "transformer", "unknown --model '" << kind << "' (known: transformer)");
  Lm::Config c;
  c.dim = a.integer("dim");
  c.heads = a.integer("heads");
  c.layers = a.integer("layers");
  c.context = a.integer("context");
  c.position = Lm::position_from_name(a.str("position"));
  c.tied = !a.on("untied");
  return c;
}

inline void add_thread_flag(Args& a) { a.flag("threads", "0", "OpenMP threads (0: OMP_NUM_THREADS or all cores)"); }
inline void apply_threads(Args const& a) {
#if defined(_OPENMP)
  if (a.integer("threads") > 0) omp_set_num_threads(int(a.integer("threads")));
#endif
}

/// A model with its parameters, both heap-allocated (the store points into the model).
struct LoadedLm {
  std::unique_ptr<Lm> model;
  std::unique_ptr<hseq::nn::ParamStore<Backend, Real>> params;
  hseq::io::CheckpointInfo info;
};

/// Rebuilds the model recorded in a checkpoint and loads its parameters.
inline LoadedLm load_lm(std::string const& path) {
  LoadedLm l;
  l.info = hseq::io::read_checkpoint_info(path);
  HSEQ_CHECK(l.info.model_kind == Lm::kKind, "checkpoint " << path << " holds a '" << l.info.model_kind
                                                           << "' model; this program supports '" << Lm::kKind << "'");
  l.model = std::make_unique<Lm>(Lm::config_from_json(l.info.model_config));
  l.params = std::make_unique<hseq::nn::ParamStore<Backend, Real>>(*l.model);
  hseq::io::load_checkpoint<Backend, Real>(path, Lm::kKind, l.model->config_json(), *l.params, nullptr);
  return l;
}

}  // namespace cli
