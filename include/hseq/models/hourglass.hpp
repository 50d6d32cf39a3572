// SPDX-License-Identifier: MIT
/// @file
/// @brief `Hourglass`: the hierarchical Transformer language model of Nawrot et al. (2022),
/// "Hierarchical Transformers Are More Efficient Language Models" (trax semantics).
///
///   x   = E[ids] + P                                     [B, L, d]
///   x   = N(Pre(x))                                      n_pre full-rate causal blocks
///   x   = Valley_0(x)
///   h   = Post(x); logits = LN_f(h) W^T                  [B, L, V]  (W = E when tied)
///   Valley_i(x):                                         x: [B, L_i, d]
///     s = Shorten_i(ShiftRight(x, k_i - 1))              [B, L_i / k_i, d]
///     s = N(Blocks_i(s)); if nested: s = N(Blocks_i'(Valley_{i+1}(s)))
///     return x + LN(Upsample_i(s, res = x))
/// N is the LayerNorm that closes each stack in trax (`Config::closing_norm`, the default; the
/// post stack's is LN_f); without it N is the identity (the models of checkpoint version 1).
/// Dropout (`Config::dropout`, trax's single rate; 0 by default): on the embeddings and, in every
/// block of every stack, on the attention probabilities, both residual branches and the MLP's
/// hidden activation, only in a training forward (`Trace::dropout` active: the trainer sets it per
/// step, nn/dropout.hpp); evaluation and generation never drop. The attention resampling's own
/// attention and MLP do not drop (trax's do).
/// The shift by k - 1 makes short position j summarise tokens up to j k only, and every use of it
/// at full rate is at positions >= j k (models.md §0.3), so the model is causal for every policy.
/// Sequences of any length are padded at the end to a multiple of the total factor; padding only
/// follows real positions, so it changes nothing before it, and its logits are dropped.
/// Positions (the position policy is the block type): with the default `TransformerBlock`, a
/// learned absolute table P at the input (lucidrains' implementation); with a block whose attention
/// encodes positions (`nn::kBlockRelativePositions<Block>`, e.g. `nn::RelativeCausalBlock`: the
/// Transformer-XL relative attention of the paper and trax) there is no table (P = 0), and the
/// blocks of level i take their distances in tokens: `distance_scale` = k_0 k_1 ... k_i, the
/// cumulative factor, so short rows j and j' are (j - j') k_0 ... k_i tokens apart.
///
/// Data-dependent levels (issue 19; spec segmentation.md): a level of a hierarchy of rules
/// ("2@1 4@space 2@1", hier::ByteRule) closes segment j of row b at position e_{b, j}, decided from
/// the row's tokens up to e_{b, j} (host, row by row: hier::compute_emits); nested rule levels read
/// the tokens at the enclosing level's emits. Such a level runs without the shift:
///     s = Shorten(x; e)                                  [B, C, d], s_j reads x_{<= e_j}
///     ... the level's stacks over C = the batch's largest count ...
///     return x + LN(Upsample(s; J))                      u_t reads s_{<= J(t)}, J(t) = max{j : e_j <= t}
/// (the inclusive rule: the summary of the segment t closes is usable at t, models.md §0.3 with
/// e_j for j k). A row's padding segments come after its real ones, so causal attention keeps them
/// from every real position. Only policies with a variable-length form (hier/ragged_policy.hpp:
/// `Select`, `AvgPool` (segment mean), `AttentionPool` (attention over the segment's bytes), `Repeat`,
/// `LinearUp` (position-indexed: one matrix per offset into a segment, AU-Net's), `AttentionUp` and
/// `AttentionUpLinear` (cross-attention to the closed segments)) and blocks without relative
/// positions take rule levels; the others (linear pooling, attention with linear queries) are
/// refused by name when the model is built. Cached generation keeps a position and a rule state
/// per batch row: a level steps for a row only when that row's new token closes a segment.
/// Entropy rules (BLT; "2@1 4@entropy:1.3/16 2@1", outermost level only) read H_t, the entropy of a
/// frozen byte-level `TransformerLm`'s prediction of x_{t+1} (`Config::entropy_lm`, parameters
/// `entropy_lm.*`, frozen when the model is built: no gradient, no update; saved in checkpoints with
/// the rest). Its logits are computed on the backend and their entropies on the host; cached
/// generation steps it with its own cache.
/// Router levels (H-Net; "2@1 4@router:5 2@1", any level): hier::CosineRouter turns the level's
/// input into p_t (from x_{t-1}, x_t; "mlp:N": hier::MlpRouter, Dynamic Token Pooling's boundary
/// predictor, from x_t), t emits when p_t > 1/2, and the level's output is
///     x + STE(c_t) LN(Upsample(s; J))        c_t = p_t at emits, 1 - p_t elsewhere
/// (STE(c) = 1 forward, dSTE/dc = 1 backward), and the loss gains ratio_weight times the ratio loss
/// of every router level (hier::ratio_loss; reported as the loss term "ratio"). With
/// `Config::dechunk` "ema" (H-Net's de-chunking) a router level smooths its segment outputs before
/// upsampling: z~_j = P_j z_j + (1 - P_j) z~_{j-1}, P_j = p at segment j's emit (hier::EmaDechunk),
/// which gives the router a second gradient path besides the STE.
///
/// Template parameters: the hierarchy (a compile-time `hier::Hierarchy<Pre, Post, Level<N, k>...>`,
/// whose levels, traces and caches are then `std::array`s of its level count, or
/// `hier::DynamicHierarchy`: `Config::hierarchy`, `std::vector`s), the shortening and upsampling
/// policies, and the block type of every stack (the backbone policy, `nn::ModelBackbonePolicy`, by
/// default the pre-LN `TransformerBlock`).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/attention_pool.hpp"
#include "hseq/hier/attention_upsample.hpp"
#include "hseq/hier/avg_pool.hpp"
#include "hseq/hier/byte_rule.hpp"
#include "hseq/hier/boundary_router.hpp"
#include "hseq/hier/ema_dechunk.hpp"
#include "hseq/hier/emit_layout.hpp"
#include "hseq/hier/hierarchy.hpp"
#include "hseq/hier/linear_pool.hpp"
#include "hseq/hier/linear_upsample.hpp"
#include "hseq/hier/ragged_policy.hpp"
#include "hseq/hier/repeat_upsample.hpp"
#include "hseq/hier/shift_right.hpp"
#include "hseq/hier/shorten_policy.hpp"
#include "hseq/hier/upsample_policy.hpp"
#include "hseq/models/config_json.hpp"
#include "hseq/models/flops.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "hseq/nn/block_stack.hpp"
#include "hseq/nn/dropout.hpp"
#include "hseq/nn/embedding.hpp"
#include "hseq/nn/layer_norm.hpp"
#include "hseq/nn/lm_head.hpp"
#include "hseq/nn/position_embedding.hpp"
#include "hseq/nn/transformer_block.hpp"
#include "hseq/ops/dropout.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/mat.hpp"

namespace hseq::models {

template <Backend B, class T, class HierarchyT = hier::DynamicHierarchy,
          hier::ShortenPolicy<B, T> ShortenT = hier::AttentionPool,
          hier::UpsamplePolicy<B, T> UpsampleT = hier::AttentionUp,
          nn::ModelBackbonePolicy<B, T> BlockT = nn::TransformerBlock<B, T>>
class Hourglass {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Ids = View<std::int32_t const, Space>;
  using MIds = View<std::int32_t, Space>;
  using Block = BlockT;
  using Stack = nn::BlockStack<B, T, Block>;
  using Head = nn::LmHead<B, T>;
  using ShortenM = typename ShortenT::template Module<B, T>;
  using UpsampleM = typename UpsampleT::template Module<B, T>;
  /// One X per shortening level: std::array for a compile-time hierarchy, std::vector otherwise.
  template <class X>
  using PerLevel = hier::PerLevel<HierarchyT, X>;

  static constexpr char const* kKind = "hourglass";
  /// Whether the blocks encode positions (no absolute table; see the file comment).
  static constexpr bool kRelative = nn::kBlockRelativePositions<Block>;
  /// Whether the policies pool and unpool over data-dependent segments (rule levels).
  static constexpr bool kRagged = hier::RaggedShorten<ShortenT, B, T> && hier::RaggedUpsample<UpsampleT, B, T>;
  /// The frozen byte LM whose next-byte entropies an entropy rule reads.
  using EntropyLm = TransformerLm<B, T>;
  /// The learned boundary router of a "router:N" level (H-Net's cosine router) or an "mlp:N" level
  /// (Dynamic Token Pooling's MLP boundary predictor).
  using Router = hier::BoundaryRouter<B, T>;
  /// The de-chunking smoother of router levels with Config::dechunk "ema" (H-Net).
  using Ema = hier::EmaDechunk<B, T>;

  /// Loss terms (train/trainer.hpp): the byte cross-entropy, and with router levels the sum of
  /// their ratio losses (the loss is ce + ratio_weight * ratio). Models without routers report "ce" only.
  struct Term {
    char const* name;
    double value;
  };
  static constexpr std::array<char const*, 2> kLossTerms{"ce", "ratio"};
  struct Terms {
    std::array<Term, 2> items{{{"ce", 0.0}, {"ratio", 0.0}}};
    std::size_t n = 1;  // 2 with router levels
    Term const* begin() const { return items.data(); }
    Term const* end() const { return items.data() + n; }
  };

  struct Config {
    std::int64_t vocab = 256;
    std::int64_t dim = 256, heads = 4;
    std::int64_t context = 1024;  ///< longest padded sequence (learned position table length)
    std::int64_t mlp_hidden = 0;  ///< 0 means 4 * dim
    double eps = 1e-5;
    double init_std = 0.02;
    hier::HierarchySpec hierarchy{};  ///< used with DynamicHierarchy; otherwise HierarchyT::spec()
    bool tied = true;          ///< the output projection is the token embedding (false: its own `head.weight`)
    bool closing_norm = true;  ///< a LayerNorm closes the pre stack and every level's stacks (trax)
    double dropout = 0.0;      ///< embeddings and every block's attention, residual and MLP dropout
    /// The byte LM of an entropy rule (needed exactly when level 0 segments by entropy; JSON key
    /// "entropy_lm", its own configuration, written only when present).
    std::optional<typename EntropyLm::Config> entropy_lm{};
    /// α, the weight of the router levels' ratio loss in the training loss (H-Net's 0.03; JSON key
    /// "ratio_weight", written only when a level segments by "router:N" or "mlp:N").
    double ratio_weight = 0.03;
    /// How router levels hand their segment outputs to the upsampling: "none" (as they are) or
    /// "ema" (H-Net's EMA de-chunking, hier::EmaDechunk; needs a router level). JSON key "dechunk",
    /// written only when "ema".
    std::string dechunk = "none";
    // Checkpoints store this JSON (plus the policies' names) and compare it by value on load: the
    // keys and value formats (hierarchy as "2@1 4@4 2@1") are a file format. Read in this order.
    // The keys added after version 1 (tied, closing_norm, dropout) are written by config_json only
    // where they differ from what a version-1 file means without them (tied, no closing norm, no
    // dropout), so version-1 checkpoints keep loading as the models they were.
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(Config, vocab, dim, heads, context, mlp_hidden, eps, init_std, hierarchy)
  };

  /// One shortening level and everything at its short rate.
  struct Level {
    std::int64_t factor;
    hier::ShiftRight<B, T> shift;
    ShortenM shorten;
    Stack pre, post;  // post is empty for the innermost level
    UpsampleM upsample;
    nn::LayerNorm<B, T> ln_up;
    nn::LayerNorm<B, T> ln_pre, ln_post;  // closing norms of pre and (nested only) post
    std::optional<hier::ByteRule> rule;   // a rule level: data-dependent segments (factor is 1)
    std::optional<Router> router;         // "router:N", "mlp:N" levels: the boundary router
    std::optional<Ema> ema;               // router levels with Config::dechunk "ema"
  };

  struct LevelTrace {
    CView x;            // [B, L, d] the level's input (its residual)
    MView shifted;      // [B, L, d]
    MView short_in;     // [B, Ls, d]
    typename ShortenM::Saved shorten;
    typename Stack::Saved pre, post;  // at the short rate
    typename nn::LayerNorm<B, T>::Saved ln_pre, ln_post;
    MView pre_n, post_n;  // [B, Ls, d] the stacks' closing norms (closing_norm only)
    MView inner_out;    // [B, Ls, d] output of the nested level
    MView u, un;        // [B, L, d] upsampled, LayerNorm(upsampled)
    typename UpsampleM::Saved up;
    typename nn::LayerNorm<B, T>::Saved ln;
    // Rule levels only (host vectors keep their capacity across steps: no allocation once warm).
    std::vector<std::int32_t> tokens;  // [B, L] the level's tokens (bytes; nested: those at the enclosing emits)
    hier::EmitLayout layout;           // its segments
    std::vector<std::int32_t> host_idx;  // staging of pool and up
    MIds pool, up_idx;                 // [B * C], [B * L] (hier/ragged_policy.hpp)
    std::vector<double> scores;        // [B, L] entropy rules: H_t (nats) of the entropy LM; router: p_t
    // Router levels. The straight-through estimator (H-Net): out = x + STE(c_t) LN(u_t), where
    // c_t = p_t at emits and 1 - p_t elsewhere (the confidence in t's decision), STE(c) = 1 in the
    // forward pass and dSTE/dc = 1 in the backward pass.
    mutable typename Router::Saved router;  // (mutable: backward stages its host buffers in it)
    std::vector<double> confidence;         // [B, L] c_t
    double ratio = 0, ratio_dg = 0;         // the level's ratio loss, and dL/dp_t of every real t
    /// Gradient checks only: when it holds B * L values c̄_t, the forward multiplies LN(u_t) by
    /// 1 + (c_t - c̄_t), the surrogate whose derivative the backward computes (exactly 1 when
    /// c_t = c̄_t, so a check sets it to `confidence` of the point it differentiates at). Empty
    /// (the default): no multiplication.
    std::vector<double> ste_reference;
    mutable std::vector<T> host_dc, host_un;
    mutable std::vector<double> dp;
    // EMA de-chunking (Config::dechunk "ema"): P_j [B * C] (p at segment j's emit, 1 on padding),
    // the smoother's trace, and backward's dL/dP_j.
    std::vector<double> ema_p;
    mutable typename Ema::Saved ema;
    mutable std::vector<double> ema_dp;
  };

  struct Trace {
    std::int64_t batch = 0, t = 0, tp = 0, counted = 0;
    double loss = std::numeric_limits<double>::quiet_NaN();
    Terms terms;        // "ce" (head loss), and "ratio" with router levels (see Terms)
    MIds ids, targets;  // [B, tp] padded copies
    bool has_targets = false;
    /// Dropout's stream: inactive (the default) drops nothing; the trainer activates it for its
    /// training forwards (nn/dropout.hpp). Read by forward, kept for backward.
    nn::DropoutStream dropout;
    typename nn::Embedding<B, T>::Saved emb;
    typename nn::PositionEmbedding<B, T>::Saved pos;
    typename Stack::Saved pre, post;
    typename nn::LayerNorm<B, T>::Saved ln_pre;
    MView pre_n;  // [B, tp, d] N(Pre(x)) (closing_norm only)
    MView valley_out;
    PerLevel<LevelTrace> levels;
    typename EntropyLm::Trace entropy;  // the entropy LM's forward (entropy rules only)
    std::vector<T> host_logits;         // its logits on the host
    typename Head::Saved head;
    MView logits_p;  // [B, tp, V] = head.logits (dlogits after backward)
    MView logits;    // [B, t, V] (aliases logits_p when t == tp)
  };

  explicit Hourglass(Config c)
      : cfg_(check(c)),
        spec_(checked_spec(spec_of(c), c.context)),
        tok_({c.vocab, c.dim, c.init_std}),
        pos_({kRelative ? nn::PositionKind::kNone : nn::PositionKind::kLearned, c.context, c.dim, c.init_std}),
        pre_({spec_.pre, block_config(1)}),
        ln_pre_({c.dim, c.eps}),
        post_({spec_.post, block_config(1)}),
        levels_(per_level<Level>([this](std::size_t i) { return make_level(i); })),
        head_({c.dim, c.vocab, c.tied, c.eps, c.init_std}, c.tied ? &tok_.table() : nullptr) {
    cfg_.hierarchy = spec_;
    HSEQ_CHECK(std::isfinite(cfg_.ratio_weight) && cfg_.ratio_weight >= 0.0,
               "Hourglass: ratio_weight " << cfg_.ratio_weight << " must be finite and >= 0");
    HSEQ_CHECK(cfg_.dechunk == "none" || (cfg_.dechunk == "ema" && has_router()),
               "Hourglass: dechunk \"" << cfg_.dechunk << "\" "
                                       << (cfg_.dechunk == "ema" ? "needs a router level (its p_t weights the EMA); "
                                                                   "hierarchy \"" + spec_.to_string() + "\" has none"
                                                                 : "is not one of \"none\", \"ema\""));
    bool entropy = spec_.dynamic() && spec_.levels.front().rule->reads_entropy();
    HSEQ_CHECK(entropy == cfg_.entropy_lm.has_value(),
               "Hourglass: hierarchy \"" << spec_.to_string() << "\" "
                                         << (entropy ? "segments by entropy but no entropy LM is configured "
                                                       "(Config::entropy_lm; the programs' --entropy-model)"
                                                     : "has no entropy rule but an entropy LM is configured"));
    if (entropy) {
      HSEQ_CHECK(cfg_.entropy_lm->vocab == cfg_.vocab, "Hourglass: the entropy LM's vocabulary "
                                                          << cfg_.entropy_lm->vocab << " differs from the model's "
                                                          << cfg_.vocab);
      entropy_lm_.emplace(*cfg_.entropy_lm);
      // Frozen: the boundaries are not differentiable, and AdamW must not decay its weights.
      entropy_lm_->visit_params([](std::string const&, auto& p) { p.frozen = true; });
    }
  }
  Hourglass(Hourglass const&) = delete;
  Hourglass& operator=(Hourglass const&) = delete;

  Config const& config() const { return cfg_; }
  hier::HierarchySpec const& hierarchy() const { return spec_; }
  /// Level i (outermost first): its stacks, resampling modules and norms.
  Level const& level(std::size_t i) const { return levels_.at(i); }
  static char const* shorten_name() { return ShortenT::kName; }
  static char const* upsample_name() { return UpsampleT::kName; }

  std::string config_json() const {
    nlohmann::json j = cfg_;  // cfg_.hierarchy is spec_ (also for a compile-time hierarchy)
    if (!cfg_.tied) j["tied"] = false;  // (see Config: absent means a version-1 value)
    if (cfg_.closing_norm) j["closing_norm"] = true;
    if (cfg_.dropout != 0.0) j["dropout"] = cfg_.dropout;
    if (cfg_.entropy_lm) j["entropy_lm"] = nlohmann::json(*cfg_.entropy_lm);
    if (has_router()) j["ratio_weight"] = cfg_.ratio_weight;
    if (cfg_.dechunk != "none") j["dechunk"] = cfg_.dechunk;
    j["shorten"] = ShortenT::kName;
    j["upsample"] = UpsampleT::kName;
    return j.dump();
  }
  /// Inverse of config_json; also checks that the file's policies are this type's policies.
  static Config config_from_json(std::string const& text) {
    return parse_config_json<Config>(text, "Hourglass", [](nlohmann::json const& j, Config& c) {
      c.tied = j.value("tied", true);  // absent: what version-1 files mean
      c.closing_norm = j.value("closing_norm", false);
      c.dropout = j.value("dropout", 0.0);
      if (j.contains("entropy_lm")) c.entropy_lm = j.at("entropy_lm").template get<typename EntropyLm::Config>();
      c.ratio_weight = j.value("ratio_weight", 0.03);
      c.dechunk = j.value("dechunk", std::string("none"));
      auto sh = j.at("shorten").get<std::string>(), up = j.at("upsample").get<std::string>();
      HSEQ_CHECK(sh == ShortenT::kName && up == UpsampleT::kName,
                 "Hourglass: the configuration uses shorten '" << sh << "' and upsample '" << up << "', this model type "
                                                               << "is shorten '" << ShortenT::kName << "', upsample '"
                                                               << UpsampleT::kName << "'");
    });
  }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    tok_.visit_params(f, prefix + "tok_emb.");
    pos_.visit_params(f, prefix + "pos_emb.");
    pre_.visit_params(f, prefix + "pre.");
    if (cfg_.closing_norm) ln_pre_.visit_params(f, prefix + "ln_pre.");
    for (std::size_t l = 0; l < levels_.size(); ++l) {
      Level& lv = levels_[l];
      std::string p = prefix + "levels." + std::to_string(l) + ".";
      lv.shorten.visit_params(f, p + "shorten.");
      if (lv.router) lv.router->visit_params(f, p + "router.");
      lv.pre.visit_params(f, p + "pre.");
      if (cfg_.closing_norm) lv.ln_pre.visit_params(f, p + "ln_pre.");
      lv.post.visit_params(f, p + "post.");
      if (cfg_.closing_norm && has_inner(l)) lv.ln_post.visit_params(f, p + "ln_post.");
      lv.upsample.visit_params(f, p + "upsample.");
      lv.ln_up.visit_params(f, p + "ln_up.");
    }
    post_.visit_params(f, prefix + "post.");
    head_.visit_params(f, prefix);  // ln_f., then head. when untied (tied: the table is tok_emb's)
    if (entropy_lm_) entropy_lm_->visit_params(f, prefix + "entropy_lm.");  // frozen
  }
  /// Whether a level segments by a learned router ("router:N", "mlp:N").
  bool has_router() const {
    return std::any_of(spec_.levels.begin(), spec_.levels.end(),
                       [](hier::LevelSpec const& l) { return l.rule && l.rule->learned(); });
  }
  /// The entropy rule's byte LM (entropy hierarchies only).
  EntropyLm const* entropy_lm() const { return entropy_lm_ ? &*entropy_lm_ : nullptr; }

  /// Length after padding to a multiple of the total shortening factor.
  std::int64_t padded_length(std::int64_t t) const {
    std::int64_t k = spec_.total_factor();
    return (t + k - 1) / k * k;
  }

  // ------------------------------------------------------------------------------------------
  // Training

  std::size_t forward_workspace(std::int64_t batch, std::int64_t t) const {
    std::int64_t tp = padded_length(t), n = batch * tp, d = cfg_.dim;
    std::size_t b = 2 * aligned_bytes<std::int32_t>(n) + aligned_bytes<T>(n * d) /*x0*/ +
                    aligned_bytes<T>(n * d) /*valley out*/ + head_.forward_workspace(batch, tp);
    if (tp != t) b += aligned_bytes<T>(batch * t * cfg_.vocab);
    b += pre_.forward_workspace(batch, tp) + post_.forward_workspace(batch, tp) + norm_workspace(batch * tp);
    if (entropy_lm_) b += entropy_lm_->forward_workspace(batch, tp);
    return b + level_forward_workspace(0, batch, tp);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t) const {
    std::int64_t tp = padded_length(t);
    std::size_t inner = std::max({level_backward_workspace(0, batch, tp), head_.backward_workspace(batch, tp),
                                  pre_.backward_workspace(batch, tp), post_.backward_workspace(batch, tp)});
    return 2 * aligned_bytes<T>(batch * tp * cfg_.dim) + inner;
  }

  /// Forward over ids [B, T] (any T >= 1 up to the context after padding); with targets [B, T]
  /// returns the mean cross-entropy in nats over targets >= 0. Logits land in tr.logits [B, T, V].
  double forward(Ctx& ctx, Ids ids, Ids targets, Arena<Space>& ws, Trace& tr) const {
    HSEQ_CHECK(ids.rank() == 2 && ids.size(0) > 0 && ids.size(1) > 0,
               "Hourglass: ids " << ids.shape << " must be [B, T] with B, T >= 1");
    HSEQ_CHECK(targets.empty() || targets.shape == ids.shape,
               "Hourglass: targets " << targets.shape << " differ from ids " << ids.shape);
    std::int64_t bsz = ids.size(0), t = ids.size(1), tp = padded_length(t), d = cfg_.dim, v = cfg_.vocab;
    HSEQ_CHECK(tp <= cfg_.context, "Hourglass: sequence length " << t << " (padded to " << tp
                                                                 << ") exceeds the context " << cfg_.context);
    tr.batch = bsz;
    tr.t = t;
    tr.tp = tp;
    tr.has_targets = !targets.empty();
    tr.ids = ws.template take<std::int32_t>(Shape{bsz, tp}, "hg.ids");
    tr.targets = ws.template take<std::int32_t>(Shape{bsz, tp}, "hg.targets");
    pad_ids(ctx, ids, tr.ids, 0);
    if (tr.has_targets) pad_ids(ctx, targets, tr.targets, -1);
    MView x0 = ws.template take<T>(Shape{bsz, tp, d}, "hg.x0");
    tr.emb = tok_.forward(ctx, tr.ids, x0, ws);
    tr.pos = pos_.forward(ctx, x0, x0, 0, ws);
    nn::DropoutStream const& drop = tr.dropout;
    if (double p = drop.rate(cfg_.dropout); p > 0) ops::dropout_forward<T>(ctx, x0, x0, p, drop.key(kEmbeddingSite));
    CView cur = close(ctx, ln_pre_, pre_.forward(ctx, x0, tr.pre, ws, drop.child(kPreChild)), tr.ln_pre, tr.pre_n, ws);
    tr.valley_out = ws.template take<T>(Shape{bsz, tp, d}, "hg.valley");
    if constexpr (HierarchyT::kDynamic) tr.levels.resize(levels_.size());
    if (spec_.dynamic()) {  // rule levels segment on the host (tp == t: no padding)
      auto& tk = tr.levels[0].tokens;
      tk.resize(std::size_t(bsz * tp));
      B::download(ctx, tk.data(), tr.ids.data, tk.size());
      if (entropy_lm_) entropy_scores(ctx, tr, ws);
    }
    valley_forward(ctx, 0, cur, tr.valley_out, tr.levels, drop, ws);
    cur = post_.forward(ctx, tr.valley_out, tr.post, ws, drop.child(kPostChild));
    // LN_f, logits over the padded length (padding targets are -1), loss      [B, tp, V]
    tr.head = head_.forward(ctx, cur, tr.has_targets ? Ids(tr.targets) : Ids{}, ws);
    tr.logits_p = tr.head.logits;
    tr.counted = tr.head.counted;
    tr.loss = tr.head.loss;
    tr.terms.items[0].value = tr.head.loss;
    tr.terms.n = 1;
    if (has_router()) {  // loss = ce + α Σ_levels L_ratio
      double ratio = 0;
      for (std::size_t i = 0; i < levels_.size(); ++i)
        if (levels_[i].router) ratio += tr.levels[i].ratio;
      tr.terms.items[1].value = ratio;
      tr.terms.n = 2;
      tr.loss = tr.head.loss + cfg_.ratio_weight * ratio;
    }
    if (tp == t) {
      tr.logits = tr.logits_p;
    } else {
      tr.logits = ws.template take<T>(Shape{bsz, t, v}, "hg.logits_t");
      ops::copy_mat<T>(ctx, {tr.logits_p.data, bsz, t * v, tp * v}, ops::as_mat(tr.logits.reshape(Shape{bsz, t * v})));
    }
    return tr.loss;
  }

  /// Gradients of the mean loss of the last forward (accumulated). Overwrites tr.logits_p.
  void backward(Ctx& ctx, Trace& tr, Arena<Space>& ws) const {
    HSEQ_CHECK(tr.has_targets && tr.counted > 0, "Hourglass::backward: the forward had no targets");
    ArenaScope<Space> scope(ws);
    Shape hs{tr.batch, tr.tp, cfg_.dim};
    MView da = ws.template take<T>(hs, "hg.da"), db = ws.template take<T>(hs, "hg.db");
    head_.backward(ctx, tr.head, db, da, ws);  // db = d(last post output) (da: scratch)
    post_.backward(ctx, tr.post, db, da, ws);
    valley_backward(ctx, 0, tr.levels, db, da, ws);  // da = d(valley input)
    std::swap(da, db);
    close_backward(ctx, ln_pre_, tr.ln_pre, db, da, ws);
    pre_.backward(ctx, tr.pre, db, da, ws);
    if (double p = tr.dropout.rate(cfg_.dropout); p > 0)
      ops::dropout_backward<T>(ctx, db, db, p, tr.dropout.key(kEmbeddingSite));
    pos_.backward(ctx, tr.pos, db, db, ws);
    tok_.backward(ctx, tr.emb, db, ws);
  }

  // ------------------------------------------------------------------------------------------
  // Cached generation: each level runs only when one of its short positions is complete, i.e.
  // once every k level inputs (every k_1 k_2 ... tokens at the innermost level).

  struct LevelCache {
    Tensor<T, B> ring;  // [B, k, d]: level input q in slot q mod k (zeros before position 0)
    typename ShortenM::StepState shorten;
    typename Stack::Cache pre, post;  // [B, short capacity, 2 d] per block
    typename UpsampleM::StepState upsample;
    std::int64_t pos = 0;  // level inputs consumed (fixed levels; a rule level counts per row below)
    std::vector<hier::ByteRule::State> rule_state;  // rule levels: [B] each row's segmentation state
    std::vector<std::int64_t> segments;             // rule levels: [B] segments each row has closed
    std::optional<typename Router::StepState> router;  // router levels: each row's q_{t-1}
    std::optional<typename Ema::StepState> ema;        // EMA de-chunking: each row's last z~
  };
  /// (With a compile-time hierarchy `levels` is a std::array, built in place by make_cache, so the
  /// policies' StepState needs only a move constructor; the Cache is then move-assignable when
  /// their StepStates are, as those of the library's policies are.)
  struct Cache {
    std::int64_t batch = 0, capacity = 0, pos = 0;
    typename Stack::Cache pre, post;  // [B, capacity, 2 d] per full-rate block
    PerLevel<LevelCache> levels;
    std::vector<std::int32_t> host_ids;  // [B] the step's tokens on the host (rule levels)
    // Entropy rules: the entropy LM's cache, its step logits [B, 1, V] and their host copy.
    std::optional<typename EntropyLm::KvCache> entropy;
    std::optional<Tensor<T, B>> entropy_logits;
    std::vector<T> host_logits;
  };

  Cache make_cache(std::int64_t batch, std::int64_t capacity) const {
    HSEQ_CHECK(batch > 0 && capacity > 0 && capacity <= cfg_.context,
               "Hourglass::make_cache: batch " << batch << ", capacity " << capacity << " (context " << cfg_.context
                                               << ")");
    // Level i's inputs: capacity at i = 0, then cap_{i+1} = cap_i / k_i + 1 (its short positions).
    // A rule level's: the most segments its capacity can hold (per row).
    std::vector<std::int64_t> caps{capacity};
    for (std::size_t i = 0; i < levels_.size(); ++i) caps.push_back(cache_short_len(i, caps.back()));
    Cache c{batch, capacity, 0, pre_.make_cache(batch, capacity), post_.make_cache(batch, capacity),
            per_level<LevelCache>([&](std::size_t i) {
              Level const& lv = levels_[i];
              return LevelCache{Tensor<T, B>(Shape{batch, lv.factor, cfg_.dim}),
                                lv.shorten.make_step_state(batch, caps[i]),
                                lv.pre.make_cache(batch, caps[i + 1]),
                                lv.post.make_cache(batch, caps[i + 1]),
                                lv.upsample.make_step_state(batch, caps[i]),
                                0,
                                std::vector<hier::ByteRule::State>(lv.rule ? std::size_t(batch) : 0),
                                std::vector<std::int64_t>(lv.rule ? std::size_t(batch) : 0),
                                lv.router ? std::optional(lv.router->make_step_state(batch)) : std::nullopt,
                                lv.ema ? std::optional(lv.ema->make_step_state(batch)) : std::nullopt};
            }),
            std::vector<std::int32_t>(std::size_t(batch)),
            std::nullopt,
            std::nullopt,
            {}};
    if (entropy_lm_) {
      c.entropy.emplace(entropy_lm_->make_cache(batch, capacity));
      c.entropy_logits.emplace(Shape{batch, 1, cfg_.vocab});
      c.host_logits.resize(std::size_t(batch * cfg_.vocab));
    }
    reset_cache(c);
    return c;
  }
  /// Forgets everything the cache holds (position 0 again). Host bookkeeping only: a level's ring is
  /// zeroed by its first `forward_step` after this, on the caller's context (so no work leaves the
  /// caller's stream).
  void reset_cache(Cache& c) const {
    c.pos = 0;
    for (std::size_t i = 0; i < levels_.size(); ++i) {
      LevelCache& lc = c.levels[i];
      lc.pos = 0;
      if (levels_[i].rule) {
        for (auto& st : lc.rule_state) st = levels_[i].rule->start();
        for (auto& n : lc.segments) n = 0;
      }
      if (lc.router) levels_[i].router->reset(*lc.router);
    }
  }

  /// Scratch bytes of one `forward_step` token (an upper bound: the sum of every stage's peak).
  std::size_t step_workspace(std::int64_t batch, std::int64_t /*n*/, std::int64_t capacity) const {
    std::int64_t d = cfg_.dim;
    // step_token's two [B, 1, d] buffers, then the largest of what runs while they are held.
    std::size_t b = 2 * aligned_bytes<T>(batch * d) +
                    std::max({head_.predict_workspace(batch), pre_.step_workspace(batch, 1, capacity),
                              post_.step_workspace(batch, 1, capacity),
                              entropy_lm_ ? entropy_lm_->step_workspace(batch, 1, capacity) : std::size_t(0)});
    std::int64_t cap = capacity;
    std::size_t levels = 0;
    for (std::size_t i = 0; i < levels_.size(); ++i) {
      Level const& lv = levels_[i];
      std::int64_t cs = cache_short_len(i, cap);
      std::size_t inner = std::max({lv.shorten.step_workspace(batch, cap), lv.upsample.step_workspace(batch, cap),
                                    lv.ln_up.forward_workspace(batch), lv.pre.step_workspace(batch, 1, cs),
                                    lv.post.step_workspace(batch, 1, cs)});
      if (lv.router) inner = std::max(inner, lv.router->step_workspace());
      levels += aligned_bytes<T>(batch * lv.factor * d) + 6 * aligned_bytes<T>(batch * d) + inner;
      cap = cs;
    }
    return b + levels;
  }

  /// Logits [B, n, V] for ids [B, n] at positions [pos, pos + n); `pos` must be the number of
  /// tokens the cache has consumed (generation is sequential). Equal to the rows [pos, pos + n)
  /// of a full forward.
  void forward_step(Ctx& ctx, Ids ids, Cache& cache, std::int64_t pos, MView logits, Arena<Space>& ws) const {
    HSEQ_CHECK(ids.rank() == 2 && ids.size(0) == cache.batch,
               "Hourglass::forward_step: ids " << ids.shape << " for a cache of batch " << cache.batch);
    HSEQ_CHECK(pos == cache.pos, "Hourglass::forward_step: position " << pos << " but the cache holds " << cache.pos
                                                                      << " tokens (generation is sequential)");
    std::int64_t bsz = ids.size(0), n = ids.size(1), v = cfg_.vocab;
    HSEQ_CHECK(pos + n <= cache.capacity, "Hourglass::forward_step: positions up to " << pos + n
                                                                                      << " exceed the cache capacity "
                                                                                      << cache.capacity);
    check_shape(logits, Shape{bsz, n, v}, "Hourglass::forward_step: logits");
    for (std::int64_t i = 0; i < n; ++i) {
      Ids one(ids.data + i, Shape{bsz, 1});
      if (n > 1) {  // a column of a [B, n] tensor is strided: gather it
        ArenaScope<Space> scope(ws);
        MIds col = ws.template take<std::int32_t>(Shape{bsz, 1}, "hg_step.ids");
        ops::copy_mat<std::int32_t>(ctx, {ids.data + i, bsz, 1, n}, ops::as_mat(col));
        step_token(ctx, col, cache, logits, i, n, ws);
      } else {
        step_token(ctx, one, cache, logits, i, n, ws);
      }
    }
  }

  // ------------------------------------------------------------------------------------------
  // Cost

  /// Model FLOPs per token of a training step at sequence length t (models/flops.hpp; t is taken
  /// padded to the total factor). rate_i = the product of the factors of the levels before level
  /// i (rate_0 = 1): level i's blocks run at 1 / rate_{i+1} of the positions, its ln_up at
  /// 1 / rate_i. The resampling policies work at both rates: the attention pool's input LayerNorm
  /// and key/value projection at the enclosing rate 1 / rate_i, its queries, output and MLP at
  /// the pooled one; the attention upsampling's ln_s and key/value projection at the short rate,
  /// the rest at the enclosing one; a linear pool (k d -> d) or linear upsampling (d -> k d) runs
  /// once per short position, so at the short rate, and so does an attention resampling's linear
  /// query source (query.*). Relative-position blocks: their r projection is counted as a
  /// parameter at the block's rate; the position scores (q + v) Rk^T, as many as the content
  /// scores, are not in the attention term. Attention: the pre/post blocks 12 d T each,
  /// level i's blocks 12 d T / rate_{i+1}^2, each attention resampling's cross-attention (queries
  /// at one rate, keys at the other) 12 d T / (rate_i rate_{i+1}).
  FlopCount flops(std::int64_t t) const {
    FlopCount f;
    f.add_embedding(tok_).add_embedding(pos_).add(pre_, 1.0).add(post_, 1.0).add(head_, 1.0);  // head: ln_f (+ W)
    if (cfg_.closing_norm) f.add(ln_pre_, 1.0);
    double d = double(cfg_.dim), tt = double(padded_length(t)), rate = 1.0;
    f.add_attention(double(spec_.pre + spec_.post), d, tt, tt, tt);
    if (entropy_lm_) {  // the frozen entropy LM runs forward only: a third of its training FLOPs
      FlopCount lm = entropy_lm_->flops(padded_length(t));
      f.n_eff += lm.n_eff / 3.0;
      f.attn_palm += lm.attn_palm / 3.0;
      f.n_total += lm.n_total;
    }
    for (Level const& lv : levels_) {
      // A rule level counts at its worst case: an emit every min_gap() positions (an upper bound).
      double k = lv.rule ? double(lv.rule->min_gap()) : double(lv.factor);
      double outer = 1.0 / rate, inner = 1.0 / (rate * k);
      f.add(lv.pre, inner).add(lv.post, inner).add(lv.ln_up, outer);
      if (lv.router) f.add(*lv.router, outer);  // q, k at every position of the level's input
      if (cfg_.closing_norm) f.add(lv.ln_pre, inner);
      if (cfg_.closing_norm && !lv.post.empty()) f.add(lv.ln_post, inner);  // post is empty innermost
      f.add_attention(double(lv.pre.size() + lv.post.size()), d, tt * inner, tt * inner, tt);
      if constexpr (hier::kAttentionResampling<ShortenT>) {
        f.add(lv.shorten, [&](std::string const& n) {
          return n.starts_with("ln_in.") || n.starts_with("attn.kv.") ? outer : inner;
        });
        f.add_attention(1.0, d, tt * inner, tt * outer, tt);
      } else {
        f.add(lv.shorten, inner);
      }
      if constexpr (hier::kAttentionResampling<UpsampleT>) {
        f.add(lv.upsample, [&](std::string const& n) {
          return n.starts_with("ln_s.") || n.starts_with("attn.kv.") || n.starts_with("query.") ? inner : outer;
        });
        f.add_attention(1.0, d, tt * outer, tt * inner, tt);
      } else {
        f.add(lv.upsample, inner);
      }
      rate *= k;
    }
    return f;
  }

 private:
  static Config check(Config c) {
    HSEQ_CHECK(c.vocab > 0 && c.dim > 0 && c.heads > 0 && c.context > 0,
               "Hourglass: vocab " << c.vocab << ", dim " << c.dim << ", heads " << c.heads << ", context "
                                   << c.context << " must be positive");
    HSEQ_CHECK(c.dim % c.heads == 0, "Hourglass: heads " << c.heads << " do not divide the width " << c.dim);
    nn::checked_dropout_rate(c.dropout, "Hourglass: dropout");
    return c;
  }
  static hier::HierarchySpec spec_of(Config const& c) {
    if constexpr (HierarchyT::kDynamic) return c.hierarchy;
    else return HierarchyT::spec();
  }
  /// The validated hierarchy; the context must be a multiple of its total factor (checked before
  /// any module is built).
  static hier::HierarchySpec checked_spec(hier::HierarchySpec s, std::int64_t context) {
    s.validate();
    if (s.dynamic()) {
      HSEQ_CHECK(kRagged, "Hourglass: hierarchy \"" << s.to_string() << "\" segments by rules, which needs pooling and "
                          << "upsampling over variable segments; shorten '" << ShortenT::kName << "' / upsample '"
                          << UpsampleT::kName
                          << "' have none (rule levels take shorten 'select', 'avg' or 'attention' and upsample "
                             "'repeat', 'linear', 'attention' or 'attention_linear')");
      HSEQ_CHECK(!kRelative, "Hourglass: hierarchy \"" << s.to_string() << "\" segments by rules; relative-position "
                             << "blocks measure distances in tokens at a fixed factor and take numeric levels only");
    }
    HSEQ_CHECK(context % s.total_factor() == 0,
               "Hourglass: context " << context << " is not a multiple of the total shortening factor "
                                     << s.total_factor() << " of \"" << s.to_string() << "\"");
    return s;
  }
  /// Every block's configuration (cfg_ and spec_ are set before the stacks are built), described
  /// as a TransformerBlock's (nn::ModelBackbonePolicy); `rate` is the stack's cumulative
  /// shortening factor (1 at full rate), the distance scale of relative-position blocks.
  typename Block::Config block_config(std::int64_t rate) const {
    // GPT-2: residual-branch output projections start smaller, by 1/sqrt(2 * layers).
    double out_std = cfg_.init_std / std::sqrt(2.0 * double(spec_.total_layers()));
    typename Block::Config bc(typename nn::TransformerBlock<B, T>::Config{
        cfg_.dim, cfg_.heads, cfg_.mlp_hidden, nn::AttentionMask::causal(), true, cfg_.eps, cfg_.init_std, out_std});
    if constexpr (kRelative) bc.distance_scale = rate;
    (void)rate;
    if constexpr (requires { bc.resid_dropout; }) {
      bc.attn_dropout = bc.resid_dropout = bc.ff_dropout = cfg_.dropout;
    } else {
      HSEQ_CHECK(cfg_.dropout == 0.0, "Hourglass: dropout " << cfg_.dropout << " needs blocks with dropout rates "
                                                               "(TransformerBlock); this block type has none");
    }
    return bc;
  }
  /// Dropout sub-streams: the embeddings' site, the full-rate stacks, then two per level (its
  /// pre and post stacks), so no two masks of a forward share a stream.
  static constexpr std::uint64_t kEmbeddingSite = 0, kPreChild = 0, kPostChild = 1;
  /// Offsets into a segment that position-indexed (linear) upsampling tells apart at a rule level
  /// without /MAXLEN (AU-Net's 16; offsets are taken modulo it).
  static constexpr std::int64_t kSegmentOffsets = 16;
  static std::uint64_t level_child(std::size_t i, std::uint64_t side) { return 2 + 2 * std::uint64_t(i) + side; }
  /// The cumulative shortening factor of level i's short rate: k_0 k_1 ... k_i.
  std::int64_t level_rate(std::size_t i) const {
    std::int64_t r = 1;
    for (std::size_t l = 0; l <= i; ++l) r *= spec_.levels[l].factor;
    return r;
  }
  /// Level i of spec_ (after the full-rate stacks: cfg_, spec_ are set).
  Level make_level(std::size_t i) const {
    auto const& ls = spec_.levels[i];
    // (A rule level's modules pool by the layout, not by a factor: fixed:K passes K, the others 1.)
    std::int64_t k = !ls.rule ? ls.factor : ls.rule->kind == hier::ByteRule::Kind::kFixed ? ls.rule->n : 1;
    hier::ResampleConfig rc{cfg_.dim, k, cfg_.heads, cfg_.mlp_hidden, cfg_.eps, cfg_.init_std};
    rc.segments = bool(ls.rule);
    // The upsampling's offsets into a segment (linear upsampling: one matrix per offset, AU-Net's
    // position-indexed unpooling): K for fixed:K, else the rule's /MAXLEN, else kSegmentOffsets.
    hier::ResampleConfig urc = rc;
    if (ls.rule && ls.rule->kind != hier::ByteRule::Kind::kFixed)
      urc.factor = ls.rule->max_len > 0 ? ls.rule->max_len : kSegmentOffsets;
    bool nested = i + 1 < spec_.levels.size();
    return Level{ls.factor,
                 hier::ShiftRight<B, T>({ls.factor - 1}),
                 ShortenM(rc),
                 Stack({ls.layers, block_config(level_rate(i))}),
                 Stack({nested ? ls.layers : 0, block_config(level_rate(i))}),
                 UpsampleM(urc),
                 nn::LayerNorm<B, T>({cfg_.dim, cfg_.eps}),
                 nn::LayerNorm<B, T>({cfg_.dim, cfg_.eps}),
                 nn::LayerNorm<B, T>({cfg_.dim, cfg_.eps}),
                 ls.rule,
                 ls.rule && ls.rule->learned()
                     ? std::optional<Router>(std::in_place,
                                             typename Router::Config{ls.rule->kind, cfg_.dim, cfg_.init_std})
                     : std::nullopt,
                 ls.rule && ls.rule->learned() && cfg_.dechunk == "ema"
                     ? std::optional<Ema>(std::in_place, typename Ema::Config{cfg_.dim})
                     : std::nullopt};
  }
  /// One make(i) per level of spec_, in order. For a compile-time hierarchy a std::array whose
  /// elements are initialised from make's results in place (guaranteed copy elision), so X need
  /// not be default-constructible, copyable or even movable.
  template <class X, class F>
  PerLevel<X> per_level(F&& make) const {
    if constexpr (HierarchyT::kDynamic) {
      PerLevel<X> v;
      v.reserve(spec_.levels.size());
      for (std::size_t i = 0; i < spec_.levels.size(); ++i) v.push_back(make(i));
      return v;
    } else {
      return per_level_array<X>(make, std::make_index_sequence<std::tuple_size<PerLevel<X>>::value>{});
    }
  }
  template <class X, class F, std::size_t... I>
  static std::array<X, sizeof...(I)> per_level_array(F& make, std::index_sequence<I...>) {
    return {{make(I)...}};  // a braced list is evaluated left to right: levels in order
  }

  /// dst [B, tp] = src [B, t] followed by `fill`.
  void pad_ids(Ctx& ctx, Ids src, MIds dst, std::int32_t fill) const {
    std::int64_t bsz = src.size(0), t = src.size(1), tp = dst.size(1);
    if (tp != t) ops::fill<std::int32_t>(ctx, dst, fill);
    ops::copy_mat<std::int32_t>(ctx, ops::as_mat(src), {dst.data, bsz, t, tp});
  }

  /// The closing norm N of a stack (models.md; Config::closing_norm): out = LN(x) carved from ws
  /// and returned, or x itself without closing norms. x, out: [B, L, d].
  CView close(Ctx& ctx, nn::LayerNorm<B, T> const& ln, CView x, typename nn::LayerNorm<B, T>::Saved& saved,
              MView& out, Arena<Space>& ws) const {
    if (!cfg_.closing_norm) return x;
    out = ws.template take<T>(x.shape, "hg.closed");
    saved = ln.forward(ctx, x, out, ws);
    return out;
  }
  std::size_t norm_workspace(std::int64_t rows) const {
    return cfg_.closing_norm ? aligned_bytes<T>(rows * cfg_.dim) + ln_pre_.forward_workspace(rows) : 0;
  }
  /// Backward of `close`: on entry d holds d(out), on exit d(x); tmp is clobbered (swapped as in
  /// BlockStack::backward).
  void close_backward(Ctx& ctx, nn::LayerNorm<B, T> const& ln, typename nn::LayerNorm<B, T>::Saved const& saved,
                      MView& d, MView& tmp, Arena<Space>& ws) const {
    if (!cfg_.closing_norm) return;
    ln.backward(ctx, saved, d, tmp, ws);
    std::swap(d, tmp);
  }
  /// `close` for one generation step: x [B, 1, d] in place (tmp clobbered, swapped).
  void close_step(Ctx& ctx, nn::LayerNorm<B, T> const& ln, MView& x, MView& tmp, Arena<Space>& ws) const {
    if (!cfg_.closing_norm) return;
    ln.forward(ctx, x, tmp, ws);
    std::swap(x, tmp);
  }

  /// Whether level i has a nested level. (Written i < n - 1, n >= 1, rather than i + 1 < n: with a
  /// compile-time level count GCC then keeps the recursion's index in bounds instead of warning
  /// (-Warray-bounds) about the path where i + 1 wraps around.)
  bool has_inner(std::size_t i) const { return i < levels_.size() - 1; }

  /// Level i's short length for `len` level inputs: len / k, or for a rule level the most segments
  /// len positions can hold (ByteRule::max_emits: what workspace plans and caches reserve).
  std::int64_t short_len(std::size_t i, std::int64_t len) const {
    Level const& lv = levels_[i];
    return lv.rule ? lv.rule->max_emits(len) : len / lv.factor;
  }

  std::size_t level_forward_workspace(std::size_t i, std::int64_t batch, std::int64_t len) const {
    Level const& lv = levels_[i];
    std::int64_t ls = short_len(i, len), d = cfg_.dim;
    std::size_t b = 2 * aligned_bytes<T>(batch * len * d) /*shifted, u*/ + aligned_bytes<T>(batch * len * d) /*un*/ +
                    aligned_bytes<T>(batch * ls * d) /*short_in*/ + lv.shorten.forward_workspace(batch, len) +
                    lv.upsample.forward_workspace(batch, len) + lv.ln_up.forward_workspace(batch * len);
    b += lv.pre.forward_workspace(batch, ls) + lv.post.forward_workspace(batch, ls) + norm_workspace(batch * ls);
    if constexpr (kRagged) {
      if (lv.rule)
        b += aligned_bytes<std::int32_t>(batch * ls) + aligned_bytes<std::int32_t>(batch * len) /*pool, up*/ +
             lv.shorten.ragged_forward_workspace(batch, len, ls) + lv.upsample.ragged_forward_workspace(batch, len, ls);
      if (lv.router) b += lv.router->forward_workspace(batch, len);
      if (lv.ema) b += aligned_bytes<T>(batch * ls * d) + lv.ema->forward_workspace(batch, ls);
    }
    if (has_inner(i))
      b += aligned_bytes<T>(batch * ls * d) + norm_workspace(batch * ls) + level_forward_workspace(i + 1, batch, ls);
    return b;
  }
  std::size_t level_backward_workspace(std::size_t i, std::int64_t batch, std::int64_t len) const {
    Level const& lv = levels_[i];
    std::int64_t ls = short_len(i, len), d = cfg_.dim;
    std::size_t own = 3 * aligned_bytes<T>(batch * len * d) + 2 * aligned_bytes<T>(batch * ls * d);
    std::size_t inner = std::max({lv.shorten.backward_workspace(batch, len), lv.upsample.backward_workspace(batch, len),
                                  lv.pre.backward_workspace(batch, ls), lv.post.backward_workspace(batch, ls)});
    if constexpr (kRagged) {
      if (lv.rule)
        inner = std::max({inner, lv.shorten.ragged_backward_workspace(batch, len, ls),
                          lv.upsample.ragged_backward_workspace(batch, len, ls)});
      if (lv.router)  // dc [B * L], then the router's backward
        inner = std::max(inner, aligned_bytes<T>(batch * len) + lv.router->backward_workspace(batch, len));
      if (lv.ema) inner = std::max(inner, lv.ema->backward_workspace(batch, ls));
    }
    if (has_inner(i)) inner = std::max(inner, level_backward_workspace(i + 1, batch, ls));
    return own + inner;
  }

  /// H_t for every position of the forward's ids: the entropy LM's logits [B, t, V] on the
  /// backend, their entropies (nats, in double) on the host, into tr.levels[0].scores.
  void entropy_scores(Ctx& ctx, Trace& tr, Arena<Space>& ws) const {
    std::int64_t bsz = tr.batch, t = tr.tp, v = cfg_.vocab;
    HSEQ_CHECK(t <= entropy_lm_->config().context, "Hourglass: sequence length "
                                                     << t << " exceeds the entropy LM's context "
                                                     << entropy_lm_->config().context);
    entropy_lm_->forward(ctx, Ids(tr.ids), Ids{}, ws, tr.entropy);
    tr.host_logits.resize(std::size_t(bsz * t * v));
    B::download(ctx, tr.host_logits.data(), tr.entropy.logits.data, tr.host_logits.size());
    auto& sc = tr.levels[0].scores;
    sc.resize(std::size_t(bsz * t));
    for (std::int64_t r = 0; r < bsz * t; ++r) sc[std::size_t(r)] = entropy_of(tr.host_logits.data() + r * v, v);
  }
  /// The entropy (nats) of softmax(z) over v logits, in double.
  static double entropy_of(T const* z, std::int64_t v) {
    double m = double(z[0]);
    for (std::int64_t i = 1; i < v; ++i) m = std::max(m, double(z[i]));
    double s = 0, sz = 0;
    for (std::int64_t i = 0; i < v; ++i) {
      double e = std::exp(double(z[i]) - m);
      s += e;
      sz += e * (double(z[i]) - m);
    }
    return std::log(s) - sz / s;  // -sum p log p with p = e / s, log p = (z - m) - log s
  }

  /// Rule level i over its tokens tr[i].tokens [B, L] (host): the layout (row by row; a nested
  /// level's rows are as long as the enclosing level's counts), its index rows uploaded into ws, and
  /// the nested level's tokens. Returns C, the batch's largest segment count.
  std::int64_t segment(Ctx& ctx, std::size_t i, std::int64_t bsz, std::int64_t len, PerLevel<LevelTrace>& tr,
                       Arena<Space>& ws) const {
    LevelTrace& lt = tr[i];
    hier::ByteRule const& rule = *levels_[i].rule;
    std::span<std::int32_t const> row_len;
    if (i > 0) row_len = tr[i - 1].layout.count;
    hier::compute_emits(rule, lt.tokens, bsz, len, row_len, rule.max_emits(len), lt.layout, lt.scores);
    std::int64_t c = lt.layout.segments;
    lt.host_idx.resize(std::size_t(bsz * (c + len)));
    std::int32_t* pool = lt.host_idx.data();
    std::int32_t* up = pool + bsz * c;
    for (std::int64_t b = 0; b < bsz; ++b) {
      for (std::int64_t j = 0; j < c; ++j) pool[b * c + j] = std::int32_t(b * len + lt.layout.emit_at(b, j));
      for (std::int64_t t = 0; t < len; ++t) up[b * len + t] = std::int32_t(b * c + lt.layout.segment_of(b, t));
    }
    lt.pool = ws.template take<std::int32_t>(Shape{bsz * c}, "hg.pool_idx");
    lt.up_idx = ws.template take<std::int32_t>(Shape{bsz * len}, "hg.up_idx");
    B::upload(ctx, lt.pool.data, pool, std::size_t(bsz * c));
    B::upload(ctx, lt.up_idx.data, up, std::size_t(bsz * len));
    if (has_inner(i)) hier::gather_emitted(lt.tokens, lt.layout, tr[i + 1].tokens);
    return c;
  }

  /// out = x + LN(Upsample(Inner(Shorten(ShiftRight(x))), x)) for level i; x, out: [B, L, d].
  void valley_forward(Ctx& ctx, std::size_t i, CView x, MView out, PerLevel<LevelTrace>& tr,
                      nn::DropoutStream const& drop, Arena<Space>& ws) const {
    Level const& lv = levels_[i];
    LevelTrace& lt = tr[i];
    std::int64_t bsz = x.size(0), len = x.size(1), d = cfg_.dim, ls = 0;
    lt.x = x;
    if (lv.rule) {  // s = Shorten(x; e)                                  [B, C, d]
      if constexpr (kRagged) {
        if (lv.router) {  // p_t from x_{t-1}, x_t: the scores the rule thresholds at 1/2
          std::span<std::int32_t const> row_len;
          if (i > 0) row_len = tr[i - 1].layout.count;
          lv.router->forward(ctx, x, row_len, lt.router, ws);
          lt.scores.assign(lt.router.p().begin(), lt.router.p().end());
        }
        ls = segment(ctx, i, bsz, len, tr, ws);
        if (lv.router) router_statistics(*lv.rule, lt);
        lt.short_in = ws.template take<T>(Shape{bsz, ls, d}, "hg.short");
        lt.shorten = lv.shorten.ragged_forward(ctx, x, Ids(lt.pool), lt.short_in, ws);
      }
    } else {        // s = Shorten(ShiftRight(x, k - 1))                  [B, L / k, d]
      ls = len / lv.factor;
      HSEQ_CHECK(len % lv.factor == 0, "Hourglass: level " << i << " length " << len << " is not a multiple of "
                                                           << lv.factor);
      lt.shifted = ws.template take<T>(x.shape, "hg.shifted");
      lv.shift.forward(ctx, x, lt.shifted, ws);
      lt.short_in = ws.template take<T>(Shape{bsz, ls, d}, "hg.short");
      lt.shorten = lv.shorten.forward(ctx, lt.shifted, lt.short_in, ws);
    }
    CView cur = close(ctx, lv.ln_pre, lv.pre.forward(ctx, lt.short_in, lt.pre, ws, drop.child(level_child(i, 0))),
                      lt.ln_pre, lt.pre_n, ws);
    if (has_inner(i)) {
      lt.inner_out = ws.template take<T>(Shape{bsz, ls, d}, "hg.inner");
      valley_forward(ctx, i + 1, cur, lt.inner_out, tr, drop, ws);
      cur = close(ctx, lv.ln_post, lv.post.forward(ctx, lt.inner_out, lt.post, ws, drop.child(level_child(i, 1))),
                  lt.ln_post, lt.post_n, ws);
    }
    if (lv.ema) cur = dechunk(ctx, lv, lt, cur, ws);  // z~ = EMA(z; P)            [B, C, d]
    lt.u = ws.template take<T>(x.shape, "hg.u");
    if (!lv.rule) {
      lt.up = lv.upsample.forward(ctx, cur, x, lt.u, ws);
    } else if constexpr (kRagged) {
      lt.up = lv.upsample.ragged_forward(ctx, cur, x, Ids(lt.up_idx), lt.u, ws);
    }
    lt.un = ws.template take<T>(x.shape, "hg.un");
    lt.ln = lv.ln_up.forward(ctx, lt.u, lt.un, ws);
    if (lv.router && !lt.ste_reference.empty()) ste_surrogate(ctx, lt);
    ops::copy<T>(ctx, x, out);
    ops::axpy<T>(ctx, T(1), CView(lt.un), out);
  }

  /// dx = d(level input) from dout = d(level output) (overwrites dx).
  void valley_backward(Ctx& ctx, std::size_t i, PerLevel<LevelTrace> const& tr, CView dout, MView dx,
                       Arena<Space>& ws) const {
    Level const& lv = levels_[i];
    LevelTrace const& lt = tr[i];
    ArenaScope<Space> scope(ws);
    MView du = ws.template take<T>(lt.u.shape, "hg.du");
    MView dres = ws.template take<T>(lt.u.shape, "hg.dres");
    MView dsh = ws.template take<T>(lt.u.shape, "hg.dshifted");
    MView dc = ws.template take<T>(lt.short_in.shape, "hg.dshort");
    MView dt = ws.template take<T>(lt.short_in.shape, "hg.dshort_tmp");
    ops::copy<T>(ctx, dout, dx);                      // residual path
    lv.ln_up.backward(ctx, lt.ln, dout, du, ws);
    if (!lv.rule) {
      lv.upsample.backward(ctx, lt.up, du, dc, dres, ws);
    } else if constexpr (kRagged) {
      lv.upsample.ragged_backward(ctx, lt.up, Ids(lt.up_idx), du, dc, dres, ws);
    }
    if constexpr (UpsampleT::kUsesResidual) ops::axpy<T>(ctx, T(1), CView(dres), dx);
    if (lv.ema) {  // dc = d(z~) -> d(z); dL/dP_j for the router
      lt.ema_dp.resize(std::size_t(lt.short_in.size(0) * lt.short_in.size(1)));
      lv.ema->backward(ctx, lt.ema, dc, dt, lt.ema_dp, ws);
      std::swap(dc, dt);
    }
    if (has_inner(i)) {
      close_backward(ctx, lv.ln_post, lt.ln_post, dc, dt, ws);
      lv.post.backward(ctx, lt.post, dc, dt, ws);
      valley_backward(ctx, i + 1, tr, dc, dt, ws);
      std::swap(dc, dt);
    }
    close_backward(ctx, lv.ln_pre, lt.ln_pre, dc, dt, ws);
    lv.pre.backward(ctx, lt.pre, dc, dt, ws);
    if (!lv.rule) {
      lv.shorten.backward(ctx, lt.shorten, dc, dsh, ws);
      lv.shift.backward(ctx, {}, dsh, du, ws);
    } else if constexpr (kRagged) {
      lv.shorten.ragged_backward(ctx, lt.shorten, Ids(lt.pool), dc, du, ws);
    }
    ops::axpy<T>(ctx, T(1), CView(du), dx);
    if (lv.router) {  // the router's inputs: through the STE and the ratio loss
      router_backward(ctx, lv, lt, dout, dsh, ws);
      ops::axpy<T>(ctx, T(1), CView(dsh), dx);
    }
  }

  /// EMA de-chunking of router level `lv`'s segment outputs z [B, C, d]: P_j = p at segment j's
  /// emit (padding 1); returns z~ carved from ws.
  CView dechunk(Ctx& ctx, Level const& lv, LevelTrace& lt, CView z, Arena<Space>& ws) const {
    hier::EmitLayout const& lay = lt.layout;
    std::int64_t bsz = z.size(0), c = z.size(1), len = lay.n;
    lt.ema_p.assign(std::size_t(bsz * c), 1.0);
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t j = 0; j < lay.count[std::size_t(b)]; ++j)
        lt.ema_p[std::size_t(b * c + j)] = lt.scores[std::size_t(b * len + lay.emit_at(b, j))];
    MView zs = ws.template take<T>(z.shape, "hg.dechunk");
    lv.ema->forward(ctx, z, lt.ema_p, lay.count, zs, lt.ema, ws);
    return zs;
  }
  /// A router level's F, G, ratio loss and confidences c_t, from its scores and layout.
  void router_statistics(hier::ByteRule const& rule, LevelTrace& lt) const {
    hier::EmitLayout const& lay = lt.layout;
    std::int64_t bsz = lay.batch, len = lay.n;
    lt.confidence.assign(std::size_t(bsz * len), 1.0);
    double emits = 0, real = 0, g = 0;
    for (std::int64_t b = 0; b < bsz; ++b) {
      std::int64_t rl = lt.router.row_len()[std::size_t(b)];
      emits += double(lay.count[std::size_t(b)]);
      real += double(rl);
      for (std::int64_t t = 0; t < rl; ++t) {
        double p = lt.scores[std::size_t(b * len + t)];
        bool emit = lay.emit_at(b, lay.segment_of(b, t)) == t;
        lt.confidence[std::size_t(b * len + t)] = emit ? p : 1.0 - p;
        g += p;
      }
    }
    hier::RatioLoss r = hier::ratio_loss(rule.ratio, emits / real, g / real);
    lt.ratio = r.value;
    lt.ratio_dg = r.d_g / real;  // dL/dp_t = dL/dG dG/dp_t, G = Σ p / real
  }
  /// Gradient checks only (LevelTrace::ste_reference): LN(u_t) *= 1 + (c_t - c̄_t), on the host.
  void ste_surrogate(Ctx& ctx, LevelTrace& lt) const {
    std::int64_t n = lt.un.size(0) * lt.un.size(1), d = cfg_.dim;
    HSEQ_CHECK(std::int64_t(lt.ste_reference.size()) == n,
               "Hourglass: ste_reference holds " << lt.ste_reference.size() << " values for " << n << " positions");
    lt.host_un.resize(std::size_t(n * d));
    B::download(ctx, lt.host_un.data(), lt.un.data, lt.host_un.size());
    for (std::int64_t r = 0; r < n; ++r) {
      double s = 1.0 + (lt.confidence[std::size_t(r)] - lt.ste_reference[std::size_t(r)]);
      for (std::int64_t c = 0; c < d; ++c) lt.host_un[std::size_t(r * d + c)] *= T(s);
    }
    B::upload(ctx, lt.un.data, lt.host_un.data(), lt.host_un.size());
  }
  /// dx_router [B, L, d] (overwritten) of router level `lv`: dp_t = ±dc_t + α dL_ratio/dp_t, with
  /// dc_t = <dout_t, LN(u_t)> (out = x + STE(c) LN(u), dSTE/dc = 1) and ± = +1 at emits (c = p),
  /// -1 elsewhere (c = 1 - p).
  void router_backward(Ctx& ctx, Level const& lv, LevelTrace const& lt, CView dout, MView dx_router,
                       Arena<Space>& ws) const {
    ArenaScope<Space> scope(ws);
    std::int64_t bsz = lt.un.size(0), len = lt.un.size(1), n = bsz * len, d = cfg_.dim;
    MView dcv = ws.template take<T>(Shape{n}, "hg.router_dc");
    // dc_t = <dout_t, un_t>: N dot products (one strided-batched GEMM).
    ops::row_dots<T>(ctx, ops::Mat<T const, Space>(dout.data, n, d), ops::Mat<T const, Space>(lt.un.data, n, d),
                     ops::Mat<T, Space>(dcv.data, n, 1));
    lt.host_dc.resize(std::size_t(n));
    B::download(ctx, lt.host_dc.data(), dcv.data, lt.host_dc.size());
    lt.dp.assign(std::size_t(n), 0.0);
    double const alpha = cfg_.ratio_weight;
    for (std::int64_t b = 0; b < bsz; ++b)
      for (std::int64_t t = 1; t < lt.router.row_len()[std::size_t(b)]; ++t) {
        std::size_t r = std::size_t(b * len + t);
        double sign = lt.layout.emit_at(b, lt.layout.segment_of(b, t)) == t ? 1.0 : -1.0;
        lt.dp[r] = sign * double(lt.host_dc[r]) + alpha * lt.ratio_dg;
      }
    if (lv.ema) {  // P_j is p at segment j's emit
      std::int64_t c = lt.layout.segments;
      for (std::int64_t b = 0; b < bsz; ++b)
        for (std::int64_t j = 0; j < lt.layout.count[std::size_t(b)]; ++j)
          lt.dp[std::size_t(b * len + lt.layout.emit_at(b, j))] += lt.ema_dp[std::size_t(b * c + j)];
    }
    lv.router->backward(ctx, lt.router, lt.dp, dx_router, ws);
  }

  /// One token for every batch row: writes logits row `col` of [B, n, V].
  void step_token(Ctx& ctx, Ids id, Cache& cache, MView logits, std::int64_t col, std::int64_t n,
                  Arena<Space>& ws) const {
    ArenaScope<Space> scope(ws);
    std::int64_t bsz = id.size(0), d = cfg_.dim, v = cfg_.vocab, p = cache.pos;
    Shape one{bsz, 1, d};
    MView a = ws.template take<T>(one, "hg_step.a"), b = ws.template take<T>(one, "hg_step.b");
    tok_.forward(ctx, id, a, ws);
    pos_.forward(ctx, a, a, p, ws);
    pre_.forward_step(ctx, a, b, cache.pre, p, ws);
    close_step(ctx, ln_pre_, a, b, ws);
    if (spec_.dynamic()) {  // rule levels: each row steps alone (its segments close at its own times)
      if constexpr (kRagged) {
        B::download(ctx, cache.host_ids.data(), id.data, std::size_t(bsz));
        if (entropy_lm_) {  // H_t of each row: the entropy LM steps with its own cache
          entropy_lm_->forward_step(ctx, id, *cache.entropy, p, cache.entropy_logits->view(), ws);
          B::download(ctx, cache.host_logits.data(), cache.entropy_logits->data(), cache.host_logits.size());
        }
        for (std::int64_t r = 0; r < bsz; ++r) {
          double score = entropy_lm_ ? entropy_of(cache.host_logits.data() + r * cfg_.vocab, cfg_.vocab) : 0.0;
          rule_level_step(ctx, 0, cache, r, CView(a.data + r * d, Shape{1, 1, d}), MView(b.data + r * d, Shape{1, 1, d}),
                          cache.host_ids[std::size_t(r)], score, ws);
        }
      }
    } else {
      level_step(ctx, 0, cache, a, b, ws);
    }
    std::swap(a, b);
    post_.forward_step(ctx, a, b, cache.post, p, ws);
    head_.predict(ctx, a, {logits.data + col * v, bsz, v, n * v}, ws);  // row `col` of [B, n, V]
    ++cache.pos;
  }

  /// Short positions a cache of level i reserves for `cap` level inputs: cap / k + 1 (the window
  /// in progress), or for a rule level the most segments cap positions can hold.
  std::int64_t cache_short_len(std::size_t i, std::int64_t cap) const {
    Level const& lv = levels_[i];
    return lv.rule ? lv.rule->max_emits(cap) : cap / lv.factor + 1;
  }

  /// Rule level i, batch row `row` alone: consumes the row's next input x [1, 1, d] (whose token is
  /// `token`: the byte, for nested levels the byte that closed the enclosing segment) and writes
  /// out [1, 1, d]. The level's stacks step only when the token closes one of the row's segments.
  void rule_level_step([[maybe_unused]] Ctx& ctx, [[maybe_unused]] std::size_t i, [[maybe_unused]] Cache& cache,
                       [[maybe_unused]] std::int64_t row, [[maybe_unused]] CView x, [[maybe_unused]] MView out,
                       [[maybe_unused]] std::int32_t token, [[maybe_unused]] double score,
                       [[maybe_unused]] Arena<Space>& ws) const {
    if constexpr (kRagged) {  // (rule levels exist only then: checked_spec)
      Level const& lv = levels_[i];
      LevelCache& lc = cache.levels[i];
      ArenaScope<Space> scope(ws);
      Shape one{1, 1, cfg_.dim};
      if (lv.router) score = lv.router->step(ctx, *lc.router, row, x, ws);  // p_t of the row
      lv.shorten.ragged_step_input(ctx, lc.shorten, row, x, lc.rule_state[std::size_t(row)].pos, ws);
      if (lv.rule->step(lc.rule_state[std::size_t(row)], token, score)) {  // segment j of the row closes here
        std::int64_t j = lc.segments[std::size_t(row)]++;
        MView ya = ws.template take<T>(one, "hg_step.ya"), yb = ws.template take<T>(one, "hg_step.yb");
        lv.shorten.ragged_step_emit(ctx, lc.shorten, row, x, ya, ws);
        lv.pre.forward_step_row(ctx, ya, yb, lc.pre, row, j, ws);
        close_step(ctx, lv.ln_pre, ya, yb, ws);
        if (has_inner(i)) {
          rule_level_step(ctx, i + 1, cache, row, ya, yb, token, 0.0, ws);  // (nested: no entropy; a router its own)
          std::swap(ya, yb);
          lv.post.forward_step_row(ctx, ya, yb, lc.post, row, j, ws);
          close_step(ctx, lv.ln_post, ya, yb, ws);
        }
        if (lv.ema) {  // z~_j of the row (score: its p at this emit)
          lv.ema->step(ctx, *lc.ema, row, j, score, ya, yb);
          std::swap(ya, yb);
        }
        lv.upsample.ragged_step_short(ctx, lc.upsample, row, ya, j, ws);
      }
      MView u = ws.template take<T>(one, "hg_step.u"), un = ws.template take<T>(one, "hg_step.un");
      lv.upsample.ragged_step_up(ctx, lc.upsample, row, x, u, ws);
      lv.ln_up.forward(ctx, u, un, ws);
      ops::copy<T>(ctx, x, out);
      ops::axpy<T>(ctx, T(1), CView(un), out);
    }
  }

  /// Level i consumes its next input x [B, 1, d] and writes its output out [B, 1, d].
  void level_step(Ctx& ctx, std::size_t i, Cache& cache, CView x, MView out, Arena<Space>& ws) const {
    Level const& lv = levels_[i];
    LevelCache& lc = cache.levels[i];
    ArenaScope<Space> scope(ws);
    std::int64_t bsz = x.size(0), d = cfg_.dim, k = lv.factor, p = lc.pos;
    Shape one{bsz, 1, d};
    if (p == 0) ops::fill<T>(ctx, lc.ring.view(), T(0));  // the ring's slots before position 0 read as zeros
    ops::copy_mat<T>(ctx, ops::as_mat(x.reshape(Shape{bsz, d})), {lc.ring.data() + (p % k) * d, bsz, d, k * d});
    lv.shorten.step_input(ctx, lc.shorten, x, p, ws);
    if (p % k == 0) {  // short position j = p / k is complete: inputs p - k + 1 .. p
      std::int64_t j = p / k;
      MView window = ws.template take<T>(Shape{bsz, k, d}, "hg_step.window");
      for (std::int64_t s = 0; s < k; ++s) {
        std::int64_t slot = ((p - k + 1 + s) % k + k) % k;
        ops::copy_mat<T>(ctx, {lc.ring.data() + slot * d, bsz, d, k * d}, {window.data + s * d, bsz, d, k * d});
      }
      MView ya = ws.template take<T>(one, "hg_step.ya"), yb = ws.template take<T>(one, "hg_step.yb");
      lv.shorten.step_pool(ctx, lc.shorten, window, p, ya, ws);
      lv.pre.forward_step(ctx, ya, yb, lc.pre, j, ws);
      close_step(ctx, lv.ln_pre, ya, yb, ws);
      if (has_inner(i)) {
        level_step(ctx, i + 1, cache, ya, yb, ws);
        std::swap(ya, yb);
        lv.post.forward_step(ctx, ya, yb, lc.post, j, ws);
        close_step(ctx, lv.ln_post, ya, yb, ws);
      }
      lv.upsample.step_short(ctx, lc.upsample, ya, j, ws);
    }
    MView u = ws.template take<T>(one, "hg_step.u"), un = ws.template take<T>(one, "hg_step.un");
    lv.upsample.step_up(ctx, lc.upsample, x, p, u, ws);
    lv.ln_up.forward(ctx, u, un, ws);
    ops::copy<T>(ctx, x, out);
    ops::axpy<T>(ctx, T(1), CView(un), out);
    ++lc.pos;
  }

  Config cfg_;
  hier::HierarchySpec spec_;
  nn::Embedding<B, T> tok_;
  nn::PositionEmbedding<B, T> pos_;
  Stack pre_;
  nn::LayerNorm<B, T> ln_pre_;  // the pre stack's closing norm
  Stack post_;
  PerLevel<Level> levels_;  // outermost first
  Head head_;
  std::optional<EntropyLm> entropy_lm_;  // entropy rules only (frozen)
};

}  // namespace hseq::models
