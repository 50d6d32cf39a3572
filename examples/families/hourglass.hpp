// SPDX-License-Identifier: MIT
/// @file
/// @brief The Hourglass as a family of the programs (--model hourglass): the hierarchy is a flag
/// (run-time `DynamicHierarchy`), the shortening and upsampling policies are template parameters
/// chosen by --shorten and --upsample (twenty model types; "attention_linear" is attention
/// resampling whose queries come from linear pooling / linear upsampling instead of avg / repeat).
/// Hierarchies of data-dependent rules ("2@1 4@space 2@1", "2@1 4@router:5 2@1") take --shorten
/// select, avg or attention and --upsample repeat, linear, attention or attention_linear.
#pragma once

#include <algorithm>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "hseq/hier/attention_pool.hpp"
#include "hseq/hier/attention_upsample.hpp"
#include "hseq/hier/avg_pool.hpp"
#include "hseq/hier/hierarchy.hpp"
#include "hseq/hier/linear_pool.hpp"
#include "hseq/hier/linear_upsample.hpp"
#include "hseq/hier/repeat_upsample.hpp"
#include "hseq/hier/select_pool.hpp"
#include "hseq/io/safetensors.hpp"
#include "hseq/models/hourglass.hpp"
#include "programs.hpp"

namespace cli {

struct HourglassFamily {
  static constexpr char const* kModel = "hourglass";
  static constexpr char const* kHelp = "Hourglass: shortened Transformer levels between full-rate ones";
  using Policies = cli::Policies<
      Slot<"shorten", "shortening (pooling)", hseq::hier::AttentionPool, hseq::hier::AvgPool, hseq::hier::LinearPool,
           hseq::hier::AttentionPoolLinear, hseq::hier::Select>,
      Slot<"upsample", "upsampling", hseq::hier::AttentionUp, hseq::hier::Repeat, hseq::hier::LinearUp,
           hseq::hier::AttentionUpLinear>>;
  // Model<Shorten, Upsample>, declared with a pack (an alias cannot take a pack into named
  // parameters, and the programs expand the chosen policies as a pack).
  template <class... ShortenUpsample>
  using Model = hseq::models::Hourglass<Backend, Real, hseq::hier::DynamicHierarchy, ShortenUpsample...>;

  static void add_flags(Args& a) {
    a.flag("dim", "256", "model width d")
        .flag("heads", "4", "attention heads (must divide --dim)")
        .flag("context", "128", "longest sequence the model sees (learned position table length)")
        .flag("hierarchy", "2@1 4@4 2@1",
              "hourglass: LAYERS@FACTOR items with cumulative factors, a palindrome (\"2@1 2@2 2@8 2@2 2@1\" nests); "
              "or LAYERS@RULE levels segmented by the data (\"2@1 4@space 2@1\", \"2@1 2@word 2@fixed:2 2@word 2@1\"; "
              "rules: space, word[:N], fixed:K, entropy:θ, entropy_rise:θ, router:N (H-Net's learned router, N "
              "positions per segment its ratio loss aims at), mlp:N (Dynamic Token Pooling's MLP boundary "
              "predictor, trained the same way), each with an optional /MAXLEN; they need --shorten "
              "select, avg or attention, --upsample repeat, linear, attention or attention_linear)")
        .toggle("untied", "hourglass: separate output projection instead of the token embedding")
        .toggle("no-closing-norm", "hourglass: no LayerNorm closing each stack (trax has them; version-1 models do not)")
        .flag("entropy-model", "",
              "hourglass: a transformer checkpoint of hseq-train (--model transformer) whose next-byte entropies "
              "segment an entropy level (\"2@1 4@entropy:1.3/16 2@1\", BLT); its weights are copied in, frozen and "
              "saved with the model")
        .flag("ratio-weight", "0.03",
              "hourglass: weight of the router levels' ratio loss in the training loss (H-Net's 0.03)")
        .flag("dechunk", "none",
              "hourglass: learned router levels' de-chunking: none, or ema (H-Net's smoothing of segment outputs by the "
              "router's boundary probabilities: z~_j = P_j z_j + (1 - P_j) z~_{j-1})")
        .flag("dropout", "0", "hourglass: dropout rate of the embeddings and of every block's attention, residual and MLP (training only; trax's enwik8 recipe: 0.2)");
  }
  template <class M>
  static void apply_flags(FlagReader const& r, typename M::Config& c) {
    r.integer("dim", c.dim);
    r.integer("heads", c.heads);
    r.integer("context", c.context);
    r.parsed("hierarchy", c.hierarchy, &hseq::hier::HierarchySpec::parse);
    r.toggle("untied", c.tied, /*when_on=*/false);
    r.toggle("no-closing-norm", c.closing_norm, /*when_on=*/false);
    r.real("dropout", c.dropout);
    r.real("ratio-weight", c.ratio_weight);
    r.str("dechunk", c.dechunk);
    if (r.applies("entropy-model") && !r.args().str("entropy-model").empty())
      c.entropy_lm = entropy_model_config<M>(r.args().str("entropy-model"));
  }
  /// The configuration of the --entropy-model checkpoint (a TransformerLm's).
  template <class M>
  static typename M::EntropyLm::Config entropy_model_config(std::string const& path) {
    auto f = hseq::io::SafetensorsFile::load_header(path);
    std::string kind = f.has_metadata("hseq.model_kind") ? f.metadata("hseq.model_kind") : "";
    HSEQ_CHECK(kind == M::EntropyLm::kKind, "--entropy-model " << path << ": a '" << kind << "' checkpoint; an entropy "
                                                               << "level needs a byte LM of hseq-train --model transformer");
    return M::EntropyLm::config_from_json(f.metadata("hseq.model_config"));
  }
  /// Copies the --entropy-model checkpoint's weights into the model's (frozen) entropy_lm.* parameters.
  template <class M>
  static void prepare(M& m, hseq::io::TextDataset const&, Args const& a) {
    std::string const path = a.str("entropy-model");
    if (path.empty() || m.entropy_lm() == nullptr) return;
    auto f = hseq::io::SafetensorsFile::load(path);
    Backend::Context ctx;
    std::int64_t copied = 0;
    m.visit_params([&](std::string const& name, auto& p) {
      if (!name.starts_with("entropy_lm.")) return;
      std::string const theirs = name.substr(std::string("entropy_lm.").size());
      HSEQ_CHECK(f.has(theirs), "--entropy-model " << path << ": no tensor '" << theirs << "'");
      auto v = f.read<Real>(theirs, p.shape);
      Backend::upload<Real>(ctx, p.value.data, v.data(), v.size());
      ++copied;
    });
    Backend::synchronize(ctx);
    std::cout << "entropy model: " << path << " (" << copied << " tensors, frozen)" << std::endl;
  }
  /// After training (hseq-train): for a hierarchy of rules, the segments each level closes on up to
  /// 64 held-out windows of the training length: positions per segment of level 0 (bytes) and of
  /// every level (bytes per segment, cumulative), and the coefficient of variation of level 0's
  /// segment lengths. A learned router's figures are what it converged to (its ratio loss aims at N).
  /// For levels that threshold a score (entropy, router, mlp), the decisions' margins |score - θ|
  /// (entropy_rise: |H_t - H_{t-1} - θ|) over the real positions t >= 1: their median, their
  /// minimum and the share below 1e-4, where rounding (fp32 against fp64, one GPU against another,
  /// a cached step against the full forward) can flip a boundary (spec segmentation.md §3).
  template <class M>
  static void report(M const& m, hseq::io::TextDataset const& data, std::int64_t seq_len) {
    if (!m.hierarchy().dynamic()) return;
    using Split = hseq::io::TextDataset::Split;
    std::int64_t const t = std::min(seq_len, m.config().context), rows = 8;
    std::int64_t const avail = data.num_windows(Split::kValidation, t);
    if (avail <= 0) return;
    std::int64_t const windows = std::min<std::int64_t>(64, avail);
    Backend::Context ctx;
    hseq::Workspace<Backend> ws(m.forward_workspace(rows, t));
    hseq::Tensor<std::int32_t, Backend> ids(hseq::Shape{rows, t});
    std::vector<std::int32_t> host(std::size_t(rows * t)), tg(std::size_t(t), 0);
    typename M::Trace tr;
    std::size_t const nl = m.hierarchy().levels.size();
    std::vector<double> emits(nl, 0.0);
    std::vector<std::vector<double>> margins(nl);
    double bytes = 0, len_sum = 0, len_sq = 0, segs0 = 0;
    for (std::int64_t first = 0; first < windows; first += rows) {
      std::int64_t const n = std::min(rows, windows - first);
      for (std::int64_t r = 0; r < rows; ++r)
        data.window(Split::kValidation, std::min(first + r, windows - 1) * avail / windows, t, host.data() + r * t,
                    tg.data());
      Backend::template upload<std::int32_t>(ctx, ids.data(), host.data(), host.size());
      auto a = ws.arena();
      m.forward(ctx, hseq::View<std::int32_t const, typename Backend::Space>(ids.data(), ids.shape()), {}, a, tr);
      for (std::int64_t r = 0; r < n; ++r) {
        bytes += double(t);
        for (std::size_t l = 0; l < nl; ++l) {
          emits[l] += tr.levels[l].layout.count[std::size_t(r)];
          hseq::hier::ByteRule const& rule = *m.hierarchy().levels[l].rule;
          if (!rule.needs_scores()) continue;
          auto const& sc = tr.levels[l].scores;
          std::int64_t const len = tr.levels[l].layout.n;
          std::int64_t const real = l == 0 ? t : tr.levels[l - 1].layout.count[std::size_t(r)];
          bool const rise = rule.kind == hseq::hier::ByteRule::Kind::kEntropyRise;
          for (std::int64_t q = 1; q < real; ++q) {
            double v = sc[std::size_t(r * len + q)] - (rise ? sc[std::size_t(r * len + q - 1)] : 0.0);
            margins[l].push_back(std::abs(v - rule.threshold));
          }
        }
        auto const& lay = tr.levels[0].layout;
        for (std::int64_t j = 0; j < lay.count[std::size_t(r)]; ++j) {  // level 0's segment lengths
          double end = j + 1 < lay.count[std::size_t(r)] ? lay.emit_at(r, j + 1) : double(t);
          double len = end - lay.emit_at(r, j);
          len_sum += len;
          len_sq += len * len;
          segs0 += 1;
        }
      }
    }
    double mean = len_sum / segs0, cv = std::sqrt(std::max(0.0, len_sq / segs0 - mean * mean)) / mean;
    std::cout << "segments (" << windows << " held-out windows of " << t << "):";
    for (std::size_t l = 0; l < nl; ++l)
      std::cout << " level " << l << " (" << m.hierarchy().levels[l].rule->to_string() << ") " << bytes / emits[l]
                << " bytes per segment" << (l == 0 ? ", cv " + std::to_string(cv) : std::string()) << ";";
    std::cout << std::endl;
    for (std::size_t l = 0; l < nl; ++l) {
      auto& mg = margins[l];
      if (mg.empty()) continue;
      std::sort(mg.begin(), mg.end());
      double const close = double(std::lower_bound(mg.begin(), mg.end(), 1e-4) - mg.begin()) / double(mg.size());
      std::cout << "decision margins, level " << l << " (" << m.hierarchy().levels[l].rule->to_string()
                << "): |score - threshold| median " << mg[mg.size() / 2] << ", min " << mg.front() << ", "
                << 100.0 * close << "% below 1e-4 (of " << mg.size() << " decisions)" << std::endl;
    }
  }
  /// Benchmark rows: "2@1 4@4 2@1" at width 256 with attention resampling and with average pooling
  /// and repetition (against transformer/d256_L8), and a tiny case for ctest's bench.smoke.
  static std::vector<BenchCase> bench_cases() {
    std::vector<std::string> d256{"--dim", "256", "--heads", "4", "--hierarchy", "2@1 4@4 2@1"};
    auto with = [&](std::vector<std::string> policies) {
      policies.insert(policies.begin(), d256.begin(), d256.end());
      return policies;
    };
    return {{"d256_attn", with({"--shorten", "attention", "--upsample", "attention"}), {{4, 1024}, {2, 2048}}},
            {"d256_avg", with({"--shorten", "avg", "--upsample", "repeat"}), {{4, 1024}, {2, 2048}}},
            {"small", {"--dim", "32", "--heads", "4"}, {{1, 64}}}};
  }
};

}  // namespace cli
