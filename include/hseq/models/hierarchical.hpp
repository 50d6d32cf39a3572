// SPDX-License-Identifier: MIT
/// @file
/// @brief `Hierarchical`: the segment-level hierarchical language models HRED (Sordoni et al. 2015,
/// Serban et al. 2016) and HAED (Mujika 2023) as one template over four policies (spec models.md
/// §1, §2; docs/hred_haed.md):
///
///   x = E[ids]                                  [B, T, d]       byte embeddings
///   e = Encoder(x)                              [B, N, d]       one vector per segment of K bytes
///   s = Backbone(e)                             [B, N, d]       causal over segments
///   c = [c_start; s_0; ...; s_{N-2}]            [B, N, d]       shift by one segment
///   y = Decoder(c, x)                           [B, T, d]       row iK + r: c_i, bytes iK .. iK + r
///   logits = LN_f(y) E^T                        [B, T, V]       loss: mean CE over targets >= 0
///
/// Causality ("shift by one block", spec §0.3): segment i's bytes see the backbone output of
/// segments < i only (segment 0 a learned start vector c_start) and the bytes of their own segment
/// up to themselves, so logit row p depends on bytes 0..p only. T must be a multiple of K.
///
/// Cached generation: the decoder runs byte by byte from the segment's condition; when a segment's
/// K-th byte arrives, the segment is encoded and the backbone runs one step, whose output is the
/// next segment's condition. The backbone therefore runs once per K bytes.
///
/// Objectives (docs/hred_haed.md; spec §2.4, §2.5), chosen by `set_objective` or by the trainer's
/// phase names through `set_phase`: "full" (the byte cross-entropy above, end to end), "iem" (the
/// implicit-embedding-matrix sampled softmax of hier/iem_loss.hpp: the backbone output of segment
/// i, through a linear head g, scores the encoder embedding of segment i + 1 against sampled and/or
/// in-batch negatives; no decoder activations and no byte logits exist), and "decoder" (the byte
/// cross-entropy with the gradient stopped at the conditions c: only the decoder, c_start, LN_f and
/// the decoder's use of the byte table learn). IEM needs Config::iem_negatives > 0 (and a
/// `SegmentProposal`, `set_iem_proposal`) or Config::iem_in_batch.
///
/// Every model type has kind "hierarchical"; its config JSON records the four policies by name
/// ("segment", "encoder", "backbone", "decoder"), so a checkpoint names its type, and
/// `config_from_json` refuses a document of another type. `Hred<B, T, K>` and
/// `Haed<B, T, K, Decoder>` name the two published combinations; every combination works.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/decoder_policy.hpp"
#include "hseq/hier/encoder_policy.hpp"
#include "hseq/hier/fixed_chunks.hpp"
#include "hseq/hier/iem_loss.hpp"
#include "hseq/hier/mlp_encoder.hpp"
#include "hseq/hier/part_config.hpp"
#include "hseq/hier/rnn_backbone.hpp"
#include "hseq/hier/rnn_decoder.hpp"
#include "hseq/hier/rnn_encoder.hpp"
#include "hseq/hier/segment_backbone_policy.hpp"
#include "hseq/hier/segment_proposal.hpp"
#include "hseq/hier/segmenter_policy.hpp"
#include "hseq/hier/transformer_backbone.hpp"
#include "hseq/hier/transformer_decoder.hpp"
#include "hseq/nn/embedding.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/lm_head.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/nn/rnn.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/mat.hpp"
#include "hseq/ops/resample.hpp"

namespace hseq::models {

template <Backend B, class T, hier::SegmenterPolicy SegmentT, hier::EncoderPolicy<B, T> EncoderT,
          hier::SegmentBackbonePolicy<B, T> BackboneT, hier::DecoderPolicy<B, T> DecoderT>
  requires std::constructible_from<hier::EncoderModule<EncoderT, B, T>, hier::PartConfig> &&
           std::constructible_from<hier::SegmentBackboneModule<BackboneT, B, T>, hier::PartConfig> &&
           std::constructible_from<hier::DecoderModule<DecoderT, B, T>, hier::PartConfig>
class Hierarchical {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Ids = View<std::int32_t const, Space>;
  using MIds = View<std::int32_t, Space>;
  using EncoderM = hier::EncoderModule<EncoderT, B, T>;
  using BackboneM = hier::SegmentBackboneModule<BackboneT, B, T>;
  using DecoderM = hier::DecoderModule<DecoderT, B, T>;
  using Head = nn::LmHead<B, T>;

  /// Bytes per segment.
  static constexpr std::int64_t kSegment = SegmentT::kSize;
  /// Names the model family in checkpoints (the policies are in the config JSON).
  static constexpr char const* kKind = "hierarchical";

  struct Config {
    std::int64_t vocab = 256;
    std::int64_t dim = 256, heads = 4;
    std::int64_t layers = 4;          ///< backbone layers (Transformer blocks or stacked RNN layers)
    std::int64_t decoder_layers = 2;  ///< decoder layers (Transformer blocks or stacked RNN layers)
    std::int64_t mlp_hidden = 0;      ///< every MLP's hidden width (MLP encoder, blocks); 0 means 4 dim
    nn::RnnKind cell = nn::RnnKind::kGru;  ///< the RNN policies' cell (ignored by the others)
    std::int64_t context = 1024;      ///< longest sequence in bytes (a multiple of the segment size)
    double eps = 1e-5;
    double init_std = 0.02;
    // The IEM objective (spec §2.4). Enabled when iem_negatives > 0 or iem_in_batch: only then do
    // its parameters ("iem.head.*", "iem.log_tau_ratio") exist and these fields appear in the JSON,
    // so a model without IEM keeps its parameters and its configuration document.
    std::int64_t iem_negatives = 0;  ///< negatives drawn from the proposal per micro-batch (shared by its rows)
    bool iem_in_batch = false;       ///< also the other rows' target segments as negatives (no log-Q correction)
    double iem_tau = 0.07;           ///< temperature (the initial one when learned)
    bool iem_learn_tau = true;       ///< learn log(tau / iem_tau)
    std::uint64_t iem_seed = 0;      ///< Philox seed of the negative draws
    bool iem_enabled() const { return iem_negatives > 0 || iem_in_batch; }
    // Checkpoints store this JSON (plus the policies' names) and compare it by value on load.
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(Config, vocab, dim, heads, layers, decoder_layers, mlp_hidden, cell, context, eps,
                                   init_std)
  };

  /// What forward computes and backward differentiates (see the file comment).
  enum class Objective { kFull, kIem, kDecoder };
  /// One loss term as the trainer records it (trace.terms).
  struct LossTerm {
    char const* name = "";
    double value = std::numeric_limits<double>::quiet_NaN();
  };

  /// What a training forward saved for backward; reuse one Trace across steps (its vectors and the
  /// parts' Saved vectors are sized on the first step and reused, so later steps do not allocate).
  struct Trace {
    Objective objective = Objective::kFull;  // of the forward that filled it
    std::int64_t batch = 0, t = 0, segments = 0;
    std::int64_t counted = 0;  // byte targets counted; 0 in the IEM objective (no byte likelihood)
    double loss = std::numeric_limits<double>::quiet_NaN();
    std::array<LossTerm, 1> terms{};  // {"ce", loss} or {"iem", loss}
    Ids ids, targets;
    typename nn::Embedding<B, T>::Saved emb;
    MView x, e, s, c, y;  // [B, T, d], [B, N, d] x3, [B, T, d]
    typename EncoderM::Saved enc;
    typename BackboneM::Saved backbone;
    typename DecoderM::Saved dec;
    typename Head::Saved head;
    MView logits;  // [B, T, vocab] = head.logits (overwritten by dlogits in backward); empty in IEM
    // IEM objective, M = B (N - 1) predictions, Kn sampled negatives:
    MView iem_in, iem_pred, iem_pos;  // [M, d] s_i, g(s_i), e_{i+1}
    MIds neg_ids;                     // [1, Kn K] the negatives' bytes
    MView neg_x, neg_e;               // [1, Kn K, d], [1, Kn, d]
    typename nn::Embedding<B, T>::Saved neg_emb;
    typename EncoderM::Saved neg_enc;
    typename nn::Linear<B, T>::Saved iem_head;
    typename hier::IemLoss<B, T>::Saved iem;
    std::int64_t iem_hits = 0;  // masked accidental hits of the last IEM forward
    // Host scratch of the IEM forward (sized once): the batch's bytes, the positives' and the
    // negatives' bytes, the draws, their log-proposals and the additive logit bias [M, C].
    std::vector<std::int32_t> host_ids, pos_bytes, neg_bytes;
    std::vector<std::int64_t> neg_index;
    std::vector<double> log_q;
    std::vector<T> bias;
  };

  /// Generation state: the current segment's byte embeddings, the condition of the current segment
  /// (the backbone output of the previous one, or the start vector), and the parts' step states.
  struct Cache {
    std::int64_t batch = 0, capacity = 0, pos = 0;
    Tensor<T, B> segment;  // [B, K, d] embeddings of the current segment's bytes so far
    Tensor<T, B> cond;     // [B, 1, d] condition of the current segment
    typename BackboneM::StepState backbone;
    typename DecoderM::StepState decoder;
  };

  explicit Hierarchical(Config c)
      : cfg_(check(c)),
        tok_({c.vocab, c.dim, c.init_std}),
        encoder_(part(1)),
        backbone_(part(c.layers)),
        decoder_(part(c.decoder_layers)),
        head_({c.dim, c.vocab, true, c.eps, c.init_std}, &tok_.table()),
        iem_head_({c.dim, c.dim, true, c.init_std}),
        iem_({c.iem_tau, c.iem_learn_tau}) {
    start_ = nn::Param<T, Space>(Shape{c.dim}, nn::InitSpec::normal(c.init_std), false);
  }
  Hierarchical(Hierarchical const&) = delete;
  Hierarchical& operator=(Hierarchical const&) = delete;

  Config const& config() const { return cfg_; }
  static char const* segment_name() { return SegmentT::kName; }
  static char const* encoder_name() { return EncoderT::kName; }
  static char const* backbone_name() { return BackboneT::kName; }
  static char const* decoder_name() { return DecoderT::kName; }

  std::string config_json() const {
    nlohmann::json j = cfg_;
    if (cfg_.iem_enabled()) {
      j["iem_negatives"] = cfg_.iem_negatives;
      j["iem_in_batch"] = cfg_.iem_in_batch;
      j["iem_tau"] = cfg_.iem_tau;
      j["iem_learn_tau"] = cfg_.iem_learn_tau;
      j["iem_seed"] = cfg_.iem_seed;
    }
    j["segment"] = SegmentT::kName;
    j["encoder"] = EncoderT::kName;
    j["backbone"] = BackboneT::kName;
    j["decoder"] = DecoderT::kName;
    return j.dump();
  }
  /// Inverse of config_json; also checks that the document's policies are this type's policies.
  static Config config_from_json(std::string const& text) {
    Config c;
    try {
      auto j = nlohmann::json::parse(text);
      j.get_to(c);
      if (j.contains("iem_negatives")) c.iem_negatives = j.at("iem_negatives").template get<std::int64_t>();
      if (j.contains("iem_in_batch")) c.iem_in_batch = j.at("iem_in_batch").template get<bool>();
      if (j.contains("iem_tau")) c.iem_tau = j.at("iem_tau").template get<double>();
      if (j.contains("iem_learn_tau")) c.iem_learn_tau = j.at("iem_learn_tau").template get<bool>();
      if (j.contains("iem_seed")) c.iem_seed = j.at("iem_seed").template get<std::uint64_t>();
      std::string got[4], want[4] = {SegmentT::kName, EncoderT::kName, BackboneT::kName, DecoderT::kName};
      char const* keys[4] = {"segment", "encoder", "backbone", "decoder"};
      for (int i = 0; i < 4; ++i) got[i] = j.at(keys[i]).template get<std::string>();
      for (int i = 0; i < 4; ++i)
        HSEQ_CHECK(got[i] == want[i], "Hierarchical: the configuration uses " << keys[i] << " '" << got[i]
                                                                              << "', this model type is segment '"
                                                                              << want[0] << "', encoder '" << want[1]
                                                                              << "', backbone '" << want[2]
                                                                              << "', decoder '" << want[3] << "'");
    } catch (nlohmann::json::exception const& e) {
      HSEQ_FAIL("Hierarchical: invalid config JSON '" << text << "': " << e.what());
    }
    return c;
  }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    tok_.visit_params(f, prefix + "tok_emb.");
    encoder_.visit_params(f, prefix + "encoder.");
    backbone_.visit_params(f, prefix + "backbone.");
    f(prefix + "start", start_);
    decoder_.visit_params(f, prefix + "decoder.");
    head_.visit_params(f, prefix);  // ln_f. (tied to tok_emb: no head. weight)
    if (cfg_.iem_enabled()) {
      iem_head_.visit_params(f, prefix + "iem.head.");  // g
      iem_.visit_params(f, prefix + "iem.");            // log_tau_ratio (when learned)
    }
  }

  // ------------------------------------------------------------------------------------------
  // Objectives and phases

  Objective objective() const { return objective_; }
  void set_objective(Objective o) {
    HSEQ_CHECK(o != Objective::kIem || cfg_.iem_enabled(),
               "Hierarchical: the IEM objective needs Config::iem_negatives > 0 (with set_iem_proposal) or "
               "Config::iem_in_batch; this model has neither");
    objective_ = o;
  }
  /// The trainer's phase hook: "full", "iem" or "decoder" (see the file comment).
  void set_phase(std::string_view name) {
    if (name == "full") set_objective(Objective::kFull);
    else if (name == "iem") set_objective(Objective::kIem);
    else if (name == "decoder") set_objective(Objective::kDecoder);
    else HSEQ_FAIL("Hierarchical::set_phase: unknown phase '" << name << "' (known: full, iem, decoder)");
  }
  /// The proposal the IEM negatives are drawn from (hier/segment_proposal.hpp), over segments of
  /// this model's K bytes; built by the caller from the training data.
  void set_iem_proposal(hier::SegmentProposal p) {
    HSEQ_CHECK(p.segment_size() == kSegment && p.size() > 0,
               "Hierarchical::set_iem_proposal: a proposal over " << p.size() << " segments of " << p.segment_size()
                                                                  << " bytes for a model of segment size " << kSegment);
    proposal_ = std::move(p);
  }
  hier::SegmentProposal const& iem_proposal() const { return proposal_; }
  /// The current IEM temperature (a host read of the learned parameter).
  double iem_tau(Ctx& ctx) const { return iem_.tau(ctx); }

  // ------------------------------------------------------------------------------------------
  // Training

  /// Plans for every objective this model can train with (the trainer sizes its workspace once).
  std::size_t forward_workspace(std::int64_t batch, std::int64_t t) const {
    std::size_t b = forward_workspace(batch, t, Objective::kFull);
    return cfg_.iem_enabled() ? std::max(b, forward_workspace(batch, t, Objective::kIem)) : b;
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t) const {
    std::size_t b = backward_workspace(batch, t, Objective::kFull);
    return cfg_.iem_enabled() ? std::max(b, backward_workspace(batch, t, Objective::kIem)) : b;
  }
  /// The plan of one objective (kDecoder carves what kFull does).
  std::size_t forward_workspace(std::int64_t batch, std::int64_t t, Objective o) const {
    std::int64_t n = t / kSegment, d = cfg_.dim;
    std::size_t shared = aligned_bytes<T>(batch * t * d) /*x*/ + 2 * aligned_bytes<T>(batch * n * d) /*e, s*/ +
                         encoder_.forward_workspace(batch, t) + backbone_.forward_workspace(batch, n);
    if (o != Objective::kIem)
      return shared + aligned_bytes<T>(batch * t * d) /*y*/ + aligned_bytes<T>(batch * n * d) /*c*/ +
             decoder_.forward_workspace(batch, t) + head_.forward_workspace(batch, t);
    std::int64_t m = batch * (n - 1), kn = cfg_.iem_negatives;
    std::size_t b = shared + 3 * aligned_bytes<T>(m * d) /*iem_in, iem_pred, iem_pos*/;
    if (kn > 0)
      b += aligned_bytes<std::int32_t>(kn * kSegment) + aligned_bytes<T>(kn * kSegment * d) + aligned_bytes<T>(kn * d) +
           encoder_.forward_workspace(1, kn * kSegment);
    return b + aligned_bytes<T>(m * hier::IemLoss<B, T>::columns(m, kn, cfg_.iem_in_batch)) /*bias*/ +
           iem_.forward_workspace(m, kn, cfg_.iem_in_batch);
  }
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t, Objective o) const {
    std::int64_t n = t / kSegment, d = cfg_.dim;
    if (o != Objective::kIem) {
      std::size_t inner = std::max({head_.backward_workspace(batch, t), decoder_.backward_workspace(batch, t),
                                    backbone_.backward_workspace(batch, n), encoder_.backward_workspace(batch, t)});
      return 2 * aligned_bytes<T>(batch * t * d) + 2 * aligned_bytes<T>(batch * n * d) + inner;
    }
    std::int64_t m = batch * (n - 1), kn = cfg_.iem_negatives;
    std::size_t inner = std::max({iem_.backward_workspace(m, kn, cfg_.iem_in_batch),
                                  backbone_.backward_workspace(batch, n), encoder_.backward_workspace(batch, t),
                                  kn > 0 ? encoder_.backward_workspace(1, kn * kSegment) : std::size_t(0)});
    std::size_t b = 3 * aligned_bytes<T>(m * d) /*dpred, dpos, din*/ + 2 * aligned_bytes<T>(batch * n * d) /*ds, de*/ +
                    aligned_bytes<T>(batch * t * d) /*dx*/;
    if (kn > 0) b += aligned_bytes<T>(kn * d) + aligned_bytes<T>(kn * kSegment * d);  // dneg, dneg_x
    return b + inner;
  }

  /// Forward over ids [B, T] (T a multiple of the segment size, at most the context) in the current
  /// objective. Full and decoder: with targets [B, T] (entries < 0 ignored) returns the mean
  /// cross-entropy in nats (NaN without targets); logits land in tr.logits [B, T, vocab]. IEM:
  /// returns the mean IEM loss over the B (N - 1) segment predictions (targets are not read: the
  /// targets are the next segments of ids), tr.logits is empty and tr.counted is 0, so an
  /// evaluation in this objective reports NaN bits per byte (the IEM loss is no byte likelihood).
  double forward(Ctx& ctx, Ids ids, Ids targets, Arena<Space>& ws, Trace& tr) const {
    HSEQ_CHECK(ids.rank() == 2 && ids.size(0) > 0 && ids.size(1) > 0,
               "Hierarchical: ids " << ids.shape << " must be [B, T] with B, T >= 1");
    HSEQ_CHECK(targets.empty() || targets.shape == ids.shape,
               "Hierarchical: targets " << targets.shape << " differ from ids " << ids.shape);
    std::int64_t bsz = ids.size(0), t = ids.size(1), d = cfg_.dim;
    HSEQ_CHECK(t <= cfg_.context, "Hierarchical: sequence length " << t << " exceeds the context " << cfg_.context);
    std::int64_t n = SegmentT::segments(t, "Hierarchical");
    tr.objective = objective_;
    if (objective_ == Objective::kIem) return forward_iem(ctx, ids, targets, ws, tr);
    tr.batch = bsz;
    tr.t = t;
    tr.segments = n;
    tr.ids = ids;
    tr.targets = targets;
    tr.x = ws.template take<T>(Shape{bsz, t, d}, "hier.x");
    tr.emb = tok_.forward(ctx, ids, tr.x, ws);                  // x = E[ids]                [B, T, d]
    tr.e = ws.template take<T>(Shape{bsz, n, d}, "hier.e");
    tr.enc = encoder_.forward(ctx, tr.x, tr.e, ws);             // e = Encoder(x)            [B, N, d]
    tr.s = ws.template take<T>(Shape{bsz, n, d}, "hier.s");
    backbone_.forward(ctx, tr.e, tr.s, tr.backbone, ws);        // s = Backbone(e)           [B, N, d]
    tr.c = ws.template take<T>(Shape{bsz, n, d}, "hier.c");
    ops::shift_right<T>(ctx, tr.s, tr.c, 1);                    // c_i = s_{i-1}             [B, N, d]
    for (std::int64_t b = 0; b < bsz; ++b)                      // c_0 = c_start             [B, 1, d]
      ops::copy_mat<T>(ctx, {start_.value.data, 1, d, d}, {tr.c.data + b * n * d, 1, d, d});
    tr.y = ws.template take<T>(Shape{bsz, t, d}, "hier.y");
    decoder_.forward(ctx, tr.c, tr.x, tr.y, tr.dec, ws);        // y = Decoder(c, x)         [B, T, d]
    tr.head = head_.forward(ctx, tr.y, targets, ws);            // LN_f, E^T, loss           [B, T, V]
    tr.logits = tr.head.logits;
    tr.counted = tr.head.counted;
    tr.loss = tr.head.loss;
    tr.terms[0] = {"ce", tr.loss};
    return tr.loss;
  }

  /// Gradients of the mean loss of the last forward, accumulated into the parameters' grads.
  /// Overwrites tr.logits with dlogits.
  void backward(Ctx& ctx, Trace& tr, Arena<Space>& ws) const {
    if (tr.objective == Objective::kIem) return backward_iem(ctx, tr, ws);
    HSEQ_CHECK(!tr.targets.empty() && tr.counted > 0, "Hierarchical::backward: the forward had no targets");
    ArenaScope<Space> scope(ws);
    std::int64_t bsz = tr.batch, n = tr.segments, d = cfg_.dim;
    MView dy = ws.template take<T>(tr.x.shape, "hier.dy"), dx = ws.template take<T>(tr.x.shape, "hier.dx");
    MView dc = ws.template take<T>(tr.e.shape, "hier.dc"), ds = ws.template take<T>(tr.e.shape, "hier.ds");
    head_.backward(ctx, tr.head, dy, dx, ws);                   // dy = dL/dy (dx: scratch)   [B, T, d]
    decoder_.backward(ctx, tr.dec, dy, dc, dx, ws);             // dc, dx (decoder path)      [B, N, d], [B, T, d]
    if (!start_.frozen)                                         // d c_start = sum_b dc[b, 0]
      for (std::int64_t b = 0; b < bsz; ++b)
        ops::add_mat<T>(ctx, {dc.data + b * n * d, 1, d, d}, {start_.grad.data, 1, d, d});
    if (tr.objective == Objective::kDecoder) {                  // the conditions are constants:
      tok_.backward(ctx, tr.emb, dx, ws);                       // the decoder's path only
      return;
    }
    ops::shift_right_backward<T>(ctx, dc, ds, 1);               // ds_j = dc_{j+1}            [B, N, d]
    backbone_.backward(ctx, tr.backbone, ds, dc, ws);           // dc = de                    [B, N, d]
    encoder_.backward(ctx, tr.enc, dc, dy, ws);                 // dy = dx (encoder path)     [B, T, d]
    ops::axpy<T>(ctx, T(1), CView(dy), dx);                     // dx = both paths            [B, T, d]
    tok_.backward(ctx, tr.emb, dx, ws);
  }

  // ------------------------------------------------------------------------------------------
  // Cached generation

  Cache make_cache(std::int64_t batch, std::int64_t capacity) const {
    HSEQ_CHECK(batch > 0 && capacity > 0 && capacity <= cfg_.context,
               "Hierarchical::make_cache: batch " << batch << ", capacity " << capacity << " (context " << cfg_.context
                                                  << ")");
    Cache c;
    c.batch = batch;
    c.capacity = capacity;
    c.segment = Tensor<T, B>(Shape{batch, kSegment, cfg_.dim});
    c.cond = Tensor<T, B>(Shape{batch, 1, cfg_.dim});
    c.backbone = backbone_.make_step_state(batch, segments_for(capacity));
    c.decoder = decoder_.make_step_state(batch);
    return c;
  }
  /// Forgets everything the cache holds (position 0 again). Host bookkeeping only: the first
  /// forward_step after it starts from the start vector and restarts the backbone at segment 0.
  void reset_cache(Cache& c) const { c.pos = 0; }

  /// Scratch bytes of `forward_step` (per token; n does not matter).
  std::size_t step_workspace(std::int64_t batch, std::int64_t /*n*/, std::int64_t capacity) const {
    std::int64_t d = cfg_.dim;
    std::size_t per_segment = aligned_bytes<T>(batch * d) /*e*/ +
                              std::max(encoder_.forward_workspace(batch, kSegment),
                                       backbone_.step_workspace(batch, segments_for(capacity)));
    return aligned_bytes<std::int32_t>(batch) /*a gathered id column*/ + 2 * aligned_bytes<T>(batch * d) /*x, y*/ +
           std::max({decoder_.step_workspace(batch), head_.predict_workspace(batch), per_segment});
  }

  /// Logits [B, n, V] for ids [B, n] at positions [pos, pos + n); `pos` must be the number of bytes
  /// the cache holds (generation is sequential). Equal to rows [pos, pos + n) of a full forward.
  void forward_step(Ctx& ctx, Ids ids, Cache& cache, std::int64_t pos, MView logits, Arena<Space>& ws) const {
    HSEQ_CHECK(ids.rank() == 2 && ids.size(0) == cache.batch,
               "Hierarchical::forward_step: ids " << ids.shape << " for a cache of batch " << cache.batch);
    HSEQ_CHECK(pos == cache.pos, "Hierarchical::forward_step: position " << pos << " but the cache holds " << cache.pos
                                                                         << " bytes (generation is sequential)");
    std::int64_t bsz = ids.size(0), n = ids.size(1), v = cfg_.vocab;
    HSEQ_CHECK(pos + n <= cache.capacity, "Hierarchical::forward_step: positions up to "
                                              << pos + n << " exceed the cache capacity " << cache.capacity);
    check_shape(logits, Shape{bsz, n, v}, "Hierarchical::forward_step: logits");
    for (std::int64_t i = 0; i < n; ++i) {
      ArenaScope<Space> scope(ws);
      MIds col = ws.template take<std::int32_t>(Shape{bsz, 1}, "hier_step.ids");  // column i of [B, n]
      ops::copy_mat<std::int32_t>(ctx, {ids.data + i, bsz, 1, n}, ops::as_mat(col));
      step_byte(ctx, col, cache, logits, i, n, ws);
    }
  }

 private:
  static Config check(Config c) {
    HSEQ_CHECK(c.vocab > 0 && c.dim > 0 && c.heads > 0 && c.context > 0 && c.layers > 0 && c.decoder_layers > 0,
               "Hierarchical: vocab " << c.vocab << ", dim " << c.dim << ", heads " << c.heads << ", layers "
                                      << c.layers << ", decoder_layers " << c.decoder_layers << ", context "
                                      << c.context << " must all be positive");
    HSEQ_CHECK(c.dim % c.heads == 0, "Hierarchical: heads " << c.heads << " do not divide the width " << c.dim);
    HSEQ_CHECK(c.context % kSegment == 0, "Hierarchical: context " << c.context
                                                                   << " is not a multiple of the segment size "
                                                                   << kSegment);
    HSEQ_CHECK(c.iem_negatives >= 0 && std::isfinite(c.iem_tau) && c.iem_tau > 0,
               "Hierarchical: iem_negatives " << c.iem_negatives << " must be >= 0 and iem_tau " << c.iem_tau
                                              << " positive");
    return c;
  }

  /// FNV-1a over the batch's bytes: the Philox stream of its negatives, so a resumed run (which
  /// replays the same batches) draws the same negatives without any sampler state.
  static std::uint64_t batch_stream(std::span<std::int32_t const> ids) {
    std::uint64_t h = 1469598103934665603ull;
    for (std::int32_t v : ids) {
      h ^= std::uint64_t(std::uint32_t(v));
      h *= 1099511628211ull;
    }
    return h;
  }

  /// The IEM forward (spec §2.4): embeddings, encoder, backbone, head g, negatives, loss. No decoder.
  double forward_iem(Ctx& ctx, Ids ids, Ids targets, Arena<Space>& ws, Trace& tr) const {
    std::int64_t bsz = ids.size(0), t = ids.size(1), d = cfg_.dim, k = kSegment, n = t / k;
    std::int64_t kn = cfg_.iem_negatives;
    bool in_batch = cfg_.iem_in_batch;
    HSEQ_CHECK(n >= 2, "Hierarchical(iem): sequences of " << t << " bytes hold " << n << " segment(s) of " << k
                                                          << "; the IEM objective predicts segment i + 1 from i "
                                                             "and needs at least 2");
    HSEQ_CHECK(kn == 0 || proposal_.size() > 0,
               "Hierarchical(iem): Config::iem_negatives = " << kn << " but no proposal was given (set_iem_proposal)");
    std::int64_t m = bsz * (n - 1), c = hier::IemLoss<B, T>::columns(m, kn, in_batch);
    tr.batch = bsz;
    tr.t = t;
    tr.segments = n;
    tr.ids = ids;
    tr.targets = targets;
    tr.x = ws.template take<T>(Shape{bsz, t, d}, "hier.x");
    tr.emb = tok_.forward(ctx, ids, tr.x, ws);                  // x = E[ids]                [B, T, d]
    tr.e = ws.template take<T>(Shape{bsz, n, d}, "hier.e");
    tr.enc = encoder_.forward(ctx, tr.x, tr.e, ws);             // e = Encoder(x)            [B, N, d]
    tr.s = ws.template take<T>(Shape{bsz, n, d}, "hier.s");
    backbone_.forward(ctx, tr.e, tr.s, tr.backbone, ws);        // s = Backbone(e)           [B, N, d]
    tr.iem_in = ws.template take<T>(Shape{m, d}, "hier.iem_in");
    tr.iem_pred = ws.template take<T>(Shape{m, d}, "hier.iem_pred");
    tr.iem_pos = ws.template take<T>(Shape{m, d}, "hier.iem_pos");
    for (std::int64_t b = 0; b < bsz; ++b) {                    // rows b (N-1) + i, i < N - 1
      ops::copy_mat<T>(ctx, {tr.s.data + b * n * d, n - 1, d, d}, {tr.iem_in.data + b * (n - 1) * d, n - 1, d, d});
      ops::copy_mat<T>(ctx, {tr.e.data + (b * n + 1) * d, n - 1, d, d}, {tr.iem_pos.data + b * (n - 1) * d, n - 1, d, d});
    }
    tr.iem_head = iem_head_.forward(ctx, tr.iem_in, tr.iem_pred, ws);  // p_i = g(s_i)      [M, d]
    // Host side: the positives' bytes (segment i + 1 of each row), the draws and the logit bias.
    tr.host_ids.resize(std::size_t(bsz * t));
    B::template download<std::int32_t>(ctx, tr.host_ids.data(), ids.data, tr.host_ids.size());
    tr.pos_bytes.resize(std::size_t(m * k));
    for (std::int64_t b = 0; b < bsz; ++b)
      std::copy(tr.host_ids.begin() + b * t + k, tr.host_ids.begin() + (b + 1) * t,
                tr.pos_bytes.begin() + b * (n - 1) * k);
    tr.neg_index.resize(std::size_t(kn));
    tr.neg_bytes.resize(std::size_t(kn * k));
    tr.log_q.resize(std::size_t(kn));
    MView neg2;
    if (kn > 0) {
      proposal_.draw(cfg_.iem_seed, batch_stream(tr.host_ids), tr.neg_index);
      for (std::int64_t j = 0; j < kn; ++j) {
        auto seg = proposal_.segment(tr.neg_index[std::size_t(j)]);
        std::copy(seg.begin(), seg.end(), tr.neg_bytes.begin() + j * k);
        // log of the expected count Kn q(c) of a draw with replacement (the sampled-softmax correction)
        tr.log_q[std::size_t(j)] = std::log(double(kn)) + proposal_.log_prob(tr.neg_index[std::size_t(j)]);
      }
      tr.neg_ids = ws.template take<std::int32_t>(Shape{1, kn * k}, "hier.neg_ids");
      B::template upload<std::int32_t>(ctx, tr.neg_ids.data, tr.neg_bytes.data(), tr.neg_bytes.size());
      tr.neg_x = ws.template take<T>(Shape{1, kn * k, d}, "hier.neg_x");
      tr.neg_emb = tok_.forward(ctx, tr.neg_ids, tr.neg_x, ws);  // the negatives' bytes      [1, Kn K, d]
      tr.neg_e = ws.template take<T>(Shape{1, kn, d}, "hier.neg_e");
      tr.neg_enc = encoder_.forward(ctx, tr.neg_x, tr.neg_e, ws); // en = Encoder(...)        [1, Kn, d]
      neg2 = tr.neg_e.reshape(Shape{kn, d});
    }
    tr.bias.resize(std::size_t(m * c));
    tr.iem_hits = hier::IemLoss<B, T>::build_bias(tr.pos_bytes, tr.neg_bytes, k, tr.log_q, in_batch, tr.bias);
    MView bias = ws.template take<T>(Shape{m, c}, "hier.iem_bias");
    B::template upload<T>(ctx, bias.data, tr.bias.data(), tr.bias.size());
    tr.loss = iem_.forward(ctx, tr.iem_pred, tr.iem_pos, neg2, bias, in_batch, tr.iem, ws);
    tr.counted = 0;
    tr.logits = {};
    tr.terms[0] = {"iem", tr.loss};
    return tr.loss;
  }

  /// Gradients of the IEM loss: into g, the backbone, the encoder (through the inputs, the positive
  /// targets and the negatives), the byte table and the temperature.
  void backward_iem(Ctx& ctx, Trace& tr, Arena<Space>& ws) const {
    HSEQ_CHECK(tr.iem.rows > 0, "Hierarchical::backward: the IEM forward saved nothing");
    ArenaScope<Space> scope(ws);
    std::int64_t bsz = tr.batch, n = tr.segments, d = cfg_.dim, m = tr.iem.rows, kn = tr.iem.negs;
    MView dpred = ws.template take<T>(Shape{m, d}, "hier.dpred"), dpos = ws.template take<T>(Shape{m, d}, "hier.dpos");
    MView din = ws.template take<T>(Shape{m, d}, "hier.din");
    MView ds = ws.template take<T>(tr.e.shape, "hier.ds"), de = ws.template take<T>(tr.e.shape, "hier.de");
    MView dx = ws.template take<T>(tr.x.shape, "hier.dx");
    MView dneg, dneg_x;
    if (kn > 0) {
      dneg = ws.template take<T>(Shape{kn, d}, "hier.dneg");
      dneg_x = ws.template take<T>(tr.neg_x.shape, "hier.dneg_x");
    }
    iem_.backward(ctx, tr.iem, dpred, dpos, dneg, ws);          // dp, de_{i+1}, den          [M, d], [Kn, d]
    iem_head_.backward(ctx, tr.iem_head, dpred, din, ws);       // ds_i (i < N - 1)           [M, d]
    ops::fill<T>(ctx, ds, T(0));                                // the last segment: no prediction
    for (std::int64_t b = 0; b < bsz; ++b)
      ops::copy_mat<T>(ctx, {din.data + b * (n - 1) * d, n - 1, d, d}, {ds.data + b * n * d, n - 1, d, d});
    backbone_.backward(ctx, tr.backbone, ds, de, ws);           // de (input side)            [B, N, d]
    for (std::int64_t b = 0; b < bsz; ++b)                      // + de_{i+1} (output side)
      ops::add_mat<T>(ctx, {dpos.data + b * (n - 1) * d, n - 1, d, d}, {de.data + (b * n + 1) * d, n - 1, d, d});
    encoder_.backward(ctx, tr.enc, de, dx, ws);                 // dx                         [B, T, d]
    tok_.backward(ctx, tr.emb, dx, ws);
    if (kn > 0) {                                               // the negatives' encoder pass
      encoder_.backward(ctx, tr.neg_enc, dneg.reshape(Shape{1, kn, d}), dneg_x, ws);
      tok_.backward(ctx, tr.neg_emb, dneg_x, ws);
    }
  }
  static std::int64_t segments_for(std::int64_t bytes) { return (bytes + kSegment - 1) / kSegment; }
  /// The configuration of one part (encoder, backbone or decoder) with `layers` layers.
  hier::PartConfig part(std::int64_t layers) const {
    return hier::PartConfig{cfg_.dim,   kSegment,   cfg_.heads,          layers,    cfg_.mlp_hidden,
                            cfg_.cell,  cfg_.context / kSegment, cfg_.eps, cfg_.init_std};
  }

  /// One byte for every batch row (position cache.pos): writes logits row `col` of [B, n, V].
  void step_byte(Ctx& ctx, Ids id, Cache& cache, MView logits, std::int64_t col, std::int64_t n,
                 Arena<Space>& ws) const {
    ArenaScope<Space> scope(ws);
    std::int64_t bsz = id.size(0), d = cfg_.dim, v = cfg_.vocab, p = cache.pos, i = p / kSegment, r = p % kSegment;
    Shape one{bsz, 1, d};
    MView x = ws.template take<T>(one, "hier_step.x"), y = ws.template take<T>(one, "hier_step.y");
    tok_.forward(ctx, id, x, ws);                                               // x_p = E[id]     [B, 1, d]
    ops::copy_mat<T>(ctx, ops::as_mat(CView(x).reshape(Shape{bsz, d})),         // segment row r   [B, K, d]
                     {cache.segment.data() + r * d, bsz, d, kSegment * d});
    if (r == 0) {  // a new segment: its condition is c_start or the backbone output of the last one
      if (i == 0)
        for (std::int64_t b = 0; b < bsz; ++b)
          ops::copy_mat<T>(ctx, {start_.value.data, 1, d, d}, {cache.cond.data() + b * d, 1, d, d});
      decoder_.step_begin(ctx, cache.decoder, cache.cond.cview(), ws);
    }
    decoder_.step(ctx, cache.decoder, x, r, y, ws);                            // y_p            [B, 1, d]
    head_.predict(ctx, y, {logits.data + col * v, bsz, v, n * v}, ws);        // row col of [B, n, V]
    if (r == kSegment - 1) {  // the segment is complete: encode it, one backbone step -> next condition
      MView e = ws.template take<T>(one, "hier_step.e");
      {
        ArenaScope<Space> enc_scope(ws);
        encoder_.forward(ctx, cache.segment.cview(), e, ws);                    // e_i            [B, 1, d]
      }
      backbone_.step(ctx, cache.backbone, e, i, cache.cond.view(), ws);         // s_i = c_{i+1}  [B, 1, d]
    }
    ++cache.pos;
  }

  Config cfg_;
  nn::Embedding<B, T> tok_;
  EncoderM encoder_;
  BackboneM backbone_;
  nn::Param<T, Space> start_;  // [d] c_start, the condition of segment 0
  DecoderM decoder_;
  Head head_;
  nn::Linear<B, T> iem_head_;  // g: d -> d, the IEM prediction head (parameters only when IEM is enabled)
  hier::IemLoss<B, T> iem_;    // the temperature
  hier::SegmentProposal proposal_;
  Objective objective_ = Objective::kFull;
};

/// HRED: recurrent encoder, backbone and decoder (cell: Config::cell) over segments of K bytes.
template <Backend B, class T, std::int64_t K>
using Hred = Hierarchical<B, T, hier::FixedChunks<K>, hier::RnnEncoder, hier::RnnBackbone, hier::RnnDecoder>;

/// HAED: MLP encoder and Transformer backbone over segments of K bytes, and a decoder of choice
/// (recurrent by default, or hier::TransformerDecoder).
template <Backend B, class T, std::int64_t K, class Decoder = hier::RnnDecoder>
using Haed = Hierarchical<B, T, hier::FixedChunks<K>, hier::MlpEncoder, hier::TransformerBackbone, Decoder>;

}  // namespace hseq::models
