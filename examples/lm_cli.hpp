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
    // A hand-edited or foreign config must give an hseq::Error naming the checkpoint, not a bare
    // nlohmann exception or an "unknown --shorten ''" that blames a flag nobody gave.
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(info.model_config);
    } catch (nlohmann::json::exception const& ex) {
      HSEQ_FAIL("checkpoint " << path << ": the model config is not valid JSON (" << ex.what()
                              << "): " << info.model_config);
    }
    for (char const* key : {"shorten", "upsample"})
      HSEQ_CHECK(j.is_object() && j.contains(key) && j[key].is_string(),
                 "checkpoint " << path << ": the hourglass config has no '" << key << "' policy name: " << info.model_config);
    c.shorten = j["shorten"].get<std::string>();
    c.upsample = j["upsample"].get<std::string>();
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
/// Only flags given on the command line are compared: a flag left at its default says nothing
/// about the model (resuming an hourglass checkpoint with just `--dim 64` must not be read as
/// "--model transformer"). Flags that do not apply to the checkpoint's family (e.g. --layers for
/// an hourglass) are ignored, as they are when training from scratch.
inline void check_resume_flags(Args const& a, ModelChoice const& ckpt) {
  // Family and resampling policies: the flags given, the checkpoint's choice for the others.
  ModelChoice flags = ckpt;
  if (a.given("model")) flags.kind = a.str("model");
  if (flags.kind == "hourglass") {
    if (a.given("shorten")) flags.shorten = a.str("shorten");
    if (a.given("upsample")) flags.upsample = a.str("upsample");
    // --model hourglass on a transformer checkpoint: the policies the flags would build.
    if (flags.shorten.empty()) flags.shorten = a.str("shorten");
    if (flags.upsample.empty()) flags.upsample = a.str("upsample");
  } else {
    flags.shorten = flags.upsample = "";
  }
  auto policies = [](ModelChoice const& c) {
    return c.kind == "hourglass" ? " (shorten " + c.shorten + ", upsample " + c.upsample + ")" : std::string();
  };
  HSEQ_CHECK(flags.kind == ckpt.kind && flags.shorten == ckpt.shorten && flags.upsample == ckpt.upsample,
             "--resume: the checkpoint holds a " << ckpt.kind << " model" << policies(ckpt) << " but the flags ask for "
                                                 << flags.kind << policies(flags)
                                                 << "; drop the model flags to continue the checkpoint's model");

  // Structure: each given flag against the checkpoint's configuration value.
  nlohmann::json theirs;
  try {
    theirs = nlohmann::json::parse(ckpt.config_json);
  } catch (nlohmann::json::exception const& ex) {
    HSEQ_FAIL("--resume: the checkpoint's model config is not valid JSON (" << ex.what() << "): " << ckpt.config_json);
  }
  std::string diff;
  auto differs = [&](std::string const& key, nlohmann::json const& mine) {
    diff += (diff.empty() ? "" : ", ") + key + ": checkpoint " + theirs[key].dump() + ", flags " + mine.dump();
  };
  for (char const* f : {"dim", "heads", "layers", "context"})
    if (a.given(f) && theirs.contains(f) && theirs[f] != nlohmann::json(a.integer(f))) differs(f, a.integer(f));
  if (a.given("position") && theirs.contains("position") && theirs["position"] != a.str("position"))
    differs("position", a.str("position"));
  if (a.given("untied") && theirs.contains("tied") && theirs["tied"] != !a.on("untied")) differs("tied", !a.on("untied"));
  if (a.given("hierarchy") && theirs.contains("hierarchy")) {
    // Compared as parsed hierarchies: "2@1 4@4 2@1" and "2@1  4@4  2@1" are the same model.
    HSEQ_CHECK(theirs["hierarchy"].is_string(),
               "--resume: the checkpoint's hierarchy " << theirs["hierarchy"].dump() << " is not a string");
    if (!(hseq::hier::HierarchySpec::parse(a.str("hierarchy")) ==
          hseq::hier::HierarchySpec::parse(theirs["hierarchy"].get<std::string>())))
      differs("hierarchy", a.str("hierarchy"));
  }
  HSEQ_CHECK(diff.empty(), "--resume: the model flags disagree with the checkpoint ("
                               << diff << "); drop them to continue the checkpoint's model");
}

inline void add_thread_flag(Args& a) { a.flag("threads", "0", "OpenMP threads (0: OMP_NUM_THREADS or all cores)"); }
inline void apply_threads(Args const& a) {
#if defined(_OPENMP)
  if (a.integer("threads") > 0) omp_set_num_threads(int(a.integer("threads")));
#endif
}

/// A model of type M with its parameters loaded from a checkpoint (heap-allocated: the store
/// points into the model). The store is zeroed and loaded on `ctx`; a trainer checkpoint's optimizer
/// state is skipped.
template <class M>
struct Loaded {
  std::unique_ptr<M> model;
  std::unique_ptr<hseq::nn::ParamStore<Backend, Real>> params;
};
template <class M>
Loaded<M> load_model(Backend::Context& ctx, std::string const& path, ModelChoice const& c) {
  Loaded<M> l;
  l.model = std::make_unique<M>(M::config_from_json(c.config_json));
  l.params = std::make_unique<hseq::nn::ParamStore<Backend, Real>>(ctx, *l.model);
  hseq::io::load_checkpoint<Backend, Real>(ctx, path, M::kKind, l.model->config_json(), *l.params);
  return l;
}

}  // namespace cli
