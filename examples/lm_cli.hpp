// SPDX-License-Identifier: MIT
/// @file
/// @brief Model selection shared by hseq-train, hseq-eval and hseq-generate: the flags that
/// describe a model, and a dispatcher that turns a run-time choice (flags or a checkpoint) into the
/// compile-time model type (`TransformerLm` or one of the nine `Hourglass` policy pairs).
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "cli.hpp"
#include "hseq/hseq.hpp"
#include "hseq/io/checkpoint.hpp"
#include "hseq/models/hourglass.hpp"

namespace cli {

// The backend of the programs: hseq::cpu, or hseq::cuda in the CUDA builds of the same sources
// (examples/cuda/*.cu define HSEQ_EXAMPLE_BACKEND before including them).
#if defined(HSEQ_EXAMPLE_BACKEND)
using Backend = HSEQ_EXAMPLE_BACKEND;
#else
using Backend = hseq::cpu;
#endif
using Real = float;
using Lm = hseq::models::TransformerLm<Backend, Real>;
template <class Sh, class Up>
using Hourglass = hseq::models::Hourglass<Backend, Real, hseq::hier::DynamicHierarchy, Sh, Up>;

inline void add_model_flags(Args& a) {
  a.flag("model", "transformer", "model family: transformer (baseline) or hourglass")
      .flag("dim", "256", "model width d")
      .flag("heads", "4", "attention heads (must divide --dim)")
      .flag("layers", "4", "transformer: Transformer blocks")
      .flag("context", "128", "longest sequence the model sees (learned position table length)")
      .flag("position", "learned", "transformer: position encoding, learned, sinusoidal or none")
      .toggle("untied", "transformer: separate output projection instead of the token embedding")
      .flag("hierarchy", "2@1 4@4 2@1",
            "hourglass: LAYERS@FACTOR items with cumulative factors, a palindrome (\"2@1 2@2 2@8 2@2 2@1\" nests)")
      .flag("shorten", "attention", "hourglass: shortening, avg, linear or attention (pooling)")
      .flag("upsample", "attention", "hourglass: upsampling, repeat, linear or attention");
}

/// Which model to build: family, resampling policies, and either flags or a checkpoint's config.
struct ModelChoice {
  std::string kind = "transformer", shorten, upsample;
  std::string config_json;  ///< from a checkpoint; empty: build from the flags
};

inline ModelChoice choice_from_flags(Args const& a) { return {a.str("model"), a.str("shorten"), a.str("upsample"), ""}; }

/// The model recorded in a checkpoint.
inline ModelChoice choice_from_checkpoint(std::string const& path) {
  auto info = hseq::io::read_checkpoint_info(path);
  ModelChoice c;
  c.config_json = info.model_config;
  if (info.model_kind == Lm::kKind) {
    c.kind = "transformer";
  } else if (info.model_kind == "hourglass") {
    c.kind = "hourglass";
    auto j = nlohmann::json::parse(info.model_config);
    c.shorten = j.value("shorten", "");
    c.upsample = j.value("upsample", "");
  } else {
    HSEQ_FAIL("checkpoint " << path << " holds a '" << info.model_kind << "' model; these programs know transformer_lm "
                            << "and hourglass");
  }
  return c;
}

/// Calls f.template operator()<M>() with the model type M the choice names.
template <class F>
void dispatch(ModelChoice const& c, F&& f) {
  namespace hier = hseq::hier;
  if (c.kind == "transformer") return f.template operator()<Lm>();
  HSEQ_CHECK(c.kind == "hourglass", "unknown --model '" << c.kind << "' (known: transformer, hourglass)");
  auto with_up = [&]<class Sh>() {
    if (c.upsample == "repeat") return f.template operator()<Hourglass<Sh, hier::Repeat>>();
    if (c.upsample == "linear") return f.template operator()<Hourglass<Sh, hier::LinearUp>>();
    if (c.upsample == "attention") return f.template operator()<Hourglass<Sh, hier::AttentionUp>>();
    HSEQ_FAIL("unknown --upsample '" << c.upsample << "' (known: repeat, linear, attention)");
  };
  if (c.shorten == "avg") return with_up.template operator()<hier::AvgPool>();
  if (c.shorten == "linear") return with_up.template operator()<hier::LinearPool>();
  if (c.shorten == "attention") return with_up.template operator()<hier::AttentionPool>();
  HSEQ_FAIL("unknown --shorten '" << c.shorten << "' (known: avg, linear, attention)");
}

/// The configuration of model M from the flags, or from the checkpoint the choice carries.
template <class M>
typename M::Config model_config(Args const& a, ModelChoice const& c) {
  if (!c.config_json.empty()) return M::config_from_json(c.config_json);
  typename M::Config cfg;
  cfg.dim = a.integer("dim");
  cfg.heads = a.integer("heads");
  cfg.context = a.integer("context");
  if constexpr (std::is_same_v<M, Lm>) {
    cfg.layers = a.integer("layers");
    cfg.position = Lm::position_from_name(a.str("position"));
    cfg.tied = !a.on("untied");
  } else {
    cfg.hierarchy = hseq::hier::HierarchySpec::parse(a.str("hierarchy"));
  }
  return cfg;
}

/// When resuming, the structure comes from the checkpoint; model flags given explicitly must agree
/// with it (a clear error instead of silently training another model than the one asked for).
inline void check_resume_flags(Args const& a, ModelChoice const& ckpt) {
  bool any = false;
  for (char const* f : {"model", "dim", "heads", "layers", "context", "position", "untied", "hierarchy", "shorten",
                        "upsample"})
    any |= a.given(f);
  if (!any) return;
  ModelChoice flags = choice_from_flags(a);
  if (flags.kind == "transformer") flags.shorten = flags.upsample = "";
  HSEQ_CHECK(flags.kind == ckpt.kind && flags.shorten == ckpt.shorten && flags.upsample == ckpt.upsample,
             "--resume: the checkpoint holds a " << ckpt.kind << " model" << (ckpt.kind == "hourglass" ? " (shorten " + ckpt.shorten + ", upsample " + ckpt.upsample + ")" : std::string())
                                                 << " but the flags ask for " << flags.kind
                                                 << (flags.kind == "hourglass" ? " (shorten " + flags.shorten + ", upsample " + flags.upsample + ")" : std::string())
                                                 << "; drop the model flags to continue the checkpoint's model");
  dispatch(ckpt, [&]<class M>() {
    M from_flags(model_config<M>(a, flags));
    auto mine = nlohmann::json::parse(from_flags.config_json()), theirs = nlohmann::json::parse(ckpt.config_json);
    std::string diff;
    for (auto const& [key, value] : theirs.items())
      if (mine.contains(key) && mine[key] != value)
        diff += (diff.empty() ? "" : ", ") + key + ": checkpoint " + value.dump() + ", flags " + mine[key].dump();
    HSEQ_CHECK(diff.empty(), "--resume: the model flags disagree with the checkpoint (" << diff
                                                                                        << "); drop them to continue "
                                                                                           "the checkpoint's model");
  });
}

inline void add_thread_flag(Args& a) { a.flag("threads", "0", "OpenMP threads (0: OMP_NUM_THREADS or all cores)"); }
inline void apply_threads(Args const& a) {
#if defined(_OPENMP)
  if (a.integer("threads") > 0) omp_set_num_threads(int(a.integer("threads")));
#endif
}

/// A model of type M with its parameters loaded from a checkpoint (heap-allocated: the store
/// points into the model).
template <class M>
struct Loaded {
  std::unique_ptr<M> model;
  std::unique_ptr<hseq::nn::ParamStore<Backend, Real>> params;
};
template <class M>
Loaded<M> load_model(std::string const& path, ModelChoice const& c) {
  Loaded<M> l;
  l.model = std::make_unique<M>(M::config_from_json(c.config_json));
  l.params = std::make_unique<hseq::nn::ParamStore<Backend, Real>>(*l.model);
  hseq::io::load_checkpoint<Backend, Real>(path, M::kKind, l.model->config_json(), *l.params, nullptr);
  return l;
}

}  // namespace cli
