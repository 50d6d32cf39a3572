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
/// Variable segments (a `hier::VariableSegmenter` such as `hier::Delimited<MaxLen>`, segments ended
/// by a run-time delimiter, Config::delimiter): the segmenter computes the batch's layout on the
/// host from the ids, and the model runs the same equations over a padded segment grid,
///
///   X = gather(x)                               [B, S, L, d]    L = MaxLen, S = the batch's most segments;
///                                                               padding rows are zero
///   e = Encoder(X, lengths)                     [B, S, d]       e_i from segment i's real bytes only
///   s = Backbone(e), c = [c_start; s_0; ...]    [B, S, d]       trailing padding segments: causal, harmless
///   Y = Decoder(c, X)                           [B, S, L, d]    padding rows come after the real ones
///   y = gather(Y) (each byte's cell)            [B, T, d]       logits and loss as above
///
/// Both gathers are row lookups (ops::embedding_forward; their adjoints are the lookups with the
/// other index), so every backend runs them. The FixedChunks path is unchanged (no gather). Every
/// objective works with variable segments; the IEM proposal then counts the training data's
/// delimited segments (`SegmentProposal(bytes, model.segmenter())`).
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
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/decoder_policy.hpp"
#include "hseq/hier/delimited.hpp"
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
#include "hseq/models/config_json.hpp"
#include "hseq/models/flops.hpp"
#include "hseq/nn/embedding.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/lm_head.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/nn/rnn.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/embedding.hpp"
#include "hseq/ops/mat.hpp"
#include "hseq/ops/resample.hpp"

namespace hseq::models {

template <Backend B, class T, hier::SegmenterPolicy SegmentT, hier::EncoderPolicy<B, T> EncoderT,
          hier::SegmentBackbonePolicy<B, T> BackboneT, hier::DecoderPolicy<B, T> DecoderT>
  requires std::constructible_from<hier::EncoderModule<EncoderT, B, T>, hier::PartConfig> &&
           std::constructible_from<hier::SegmentBackboneModule<BackboneT, B, T>, hier::PartConfig> &&
           std::constructible_from<hier::DecoderModule<DecoderT, B, T>, hier::PartConfig> &&
           (!hier::VariableSegmenter<SegmentT> ||
            hier::RaggedEncoderModule<hier::EncoderModule<EncoderT, B, T>, B, T>)  // variable segments need lengths
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

  /// Bytes per segment (a variable segmenter: the most, MaxLen, the padded grid's width).
  static constexpr std::int64_t kSegment = SegmentT::kSize;
  /// Whether the segments are data-dependent (a layout per batch, a padded grid).
  static constexpr bool kVariable = hier::VariableSegmenter<SegmentT>;
  /// Names the model family in checkpoints (the policies are in the config JSON).
  static constexpr char const* kKind = "hierarchical";
  /// Every loss-term name forward can report in `trace.terms` ("ce" in the full and decoder
  /// objectives, "iem" in the IEM one), so training logs have the same columns in every phase.
  static constexpr std::array<char const*, 2> kLossTerms{"ce", "iem"};

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
    /// A variable segmenter's delimiter (hier::Delimited: "\n" lines, "\n\n" turns); fixed
    /// segmenters ignore it, and only variable ones write it to the JSON.
    std::string delimiter = "\n";
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
    // Variable segmenters: the batch's layout (host, sized for the worst case once), its gather
    // indices on the device, the byte rows with a zero row appended, and the padded grids.
    hier::SegmentLayout layout;
    MIds grid_src, byte_cell, last_cell;  // [B S L], [B T], [B S]
    MView x_ext;                          // [B T + 1, d] x and one zero row (the padding's source)
    MView xg, yg;                         // [B, S L, d] byte embeddings and decoder outputs on the grid
    // ... and their IEM objective: the negatives' padded grid [1, Kn L, d] (neg_x then holds
    // [Kn L + 1, d], the zero row last), its gather index and last rows, and host offsets of the
    // variable-length positives and negatives.
    MIds neg_src, neg_last;               // [Kn L], [Kn]
    MView neg_xg;                         // [1, Kn L, d]
    std::vector<std::int64_t> pos_off, neg_off;  // [M + 1], [Kn + 1]
    std::vector<std::int32_t> neg_len, neg_host;  // [Kn]; the staging of neg_ids, neg_src, neg_last
  };

  /// Variable segmenters' generation state of one batch row (rows segment independently, so each
  /// row steps its own parts with batch 1).
  struct RowCache {
    Tensor<T, B> segment;              // [1, L, d] the current segment's embeddings, zero past its bytes
    Tensor<T, B> cond;                 // [1, 1, d] condition of the current segment
    typename BackboneM::StepState backbone;
    typename DecoderM::StepState decoder;
    std::vector<std::int32_t> bytes;   // the current segment's bytes so far (host; at most L)
    std::int64_t index = 0;            // the current segment's index i in the row
  };
  /// Generation state: the current segment's byte embeddings, the condition of the current segment
  /// (the backbone output of the previous one, or the start vector), and the parts' step states.
  /// Variable segmenters keep one RowCache per batch row instead.
  struct Cache {
    std::int64_t batch = 0, capacity = 0, pos = 0;
    Tensor<T, B> segment;  // [B, K, d] embeddings of the current segment's bytes so far
    Tensor<T, B> cond;     // [B, 1, d] condition of the current segment
    typename BackboneM::StepState backbone;
    typename DecoderM::StepState decoder;
    std::vector<RowCache> rows;            // variable segmenters: [B]
    std::vector<std::int32_t> host_ids;    // variable segmenters: the step's ids on the host
  };

  explicit Hierarchical(Config c)
      : cfg_(check(c)),
        segmenter_(make_segmenter(cfg_)),
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
  /// The segmenter (a variable one holds its configuration).
  SegmentT const& segmenter() const { return segmenter_; }
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
    if constexpr (kVariable) {  // the name follows the delimiter ("line", "turn", "delimited")
      j["segment"] = segmenter_.name();
      j["delimiter"] = cfg_.delimiter;
      j["segment_max_len"] = kSegment;
    } else {
      j["segment"] = SegmentT::kName;
    }
    j["encoder"] = EncoderT::kName;
    j["backbone"] = BackboneT::kName;
    j["decoder"] = DecoderT::kName;
    return j.dump();
  }
  /// Inverse of config_json; also checks that the document's policies are this type's policies.
  static Config config_from_json(std::string const& text) {
    return parse_config_json<Config>(text, "Hierarchical", [](nlohmann::json const& j, Config& c) {
      if (j.contains("iem_negatives")) c.iem_negatives = j.at("iem_negatives").template get<std::int64_t>();
      if (j.contains("iem_in_batch")) c.iem_in_batch = j.at("iem_in_batch").template get<bool>();
      if (j.contains("iem_tau")) c.iem_tau = j.at("iem_tau").template get<double>();
      if (j.contains("iem_learn_tau")) c.iem_learn_tau = j.at("iem_learn_tau").template get<bool>();
      if (j.contains("iem_seed")) c.iem_seed = j.at("iem_seed").template get<std::uint64_t>();
      std::string got[4], want[4] = {SegmentT::kName, EncoderT::kName, BackboneT::kName, DecoderT::kName};
      if constexpr (kVariable) {
        c.delimiter = j.value("delimiter", c.delimiter);
        want[0] = SegmentT::name_of(c.delimiter);
        std::int64_t max_len = j.value("segment_max_len", kSegment);
        HSEQ_CHECK(max_len == kSegment, "Hierarchical: the configuration has segments of at most "
                                            << max_len << " bytes, this model type " << kSegment);
      }
      char const* keys[4] = {"segment", "encoder", "backbone", "decoder"};
      for (int i = 0; i < 4; ++i) got[i] = j.at(keys[i]).template get<std::string>();
      for (int i = 0; i < 4; ++i)
        HSEQ_CHECK(got[i] == want[i], "Hierarchical: the configuration uses " << keys[i] << " '" << got[i]
                                                                              << "', this model type is segment '"
                                                                              << want[0] << "', encoder '" << want[1]
                                                                              << "', backbone '" << want[2]
                                                                              << "', decoder '" << want[3] << "'");
    });
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
    if constexpr (kVariable) {  // a proposal over this model's delimited segments
      HSEQ_CHECK(p.variable() && p.delimiter() == cfg_.delimiter && p.max_length() == kSegment && p.size() > 0,
                 "Hierarchical::set_iem_proposal: a proposal over "
                     << p.size() << (p.variable() ? " delimited" : " fixed-size") << " segments of at most "
                     << p.max_length() << " bytes" << (p.variable() ? " ended by a delimiter of " : "")
                     << (p.variable() ? std::to_string(p.delimiter().size()) + " bytes" : "")
                     << " for a model of delimited segments (delimiter of " << cfg_.delimiter.size()
                     << " bytes, MaxLen " << kSegment << "): build it with SegmentProposal(bytes, model.segmenter())");
    } else {  // (else, not an early return: nvcc warns of the unreachable rest otherwise)
      HSEQ_CHECK(p.segment_size() == kSegment && p.size() > 0,
                 "Hierarchical::set_iem_proposal: a proposal over " << p.size() << " segments of " << p.segment_size()
                                                                    << " bytes for a model of segment size " << kSegment);
    }
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
    if constexpr (kVariable) return o == Objective::kIem ? variable_iem_forward_workspace(batch, t)
                                                         : variable_forward_workspace(batch, t);
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
    if constexpr (kVariable) return o == Objective::kIem ? variable_iem_backward_workspace(batch, t)
                                                         : variable_backward_workspace(batch, t);
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
    std::int64_t t = ids.size(1);
    HSEQ_CHECK(t <= cfg_.context, "Hierarchical: sequence length " << t << " exceeds the context " << cfg_.context);
    if constexpr (kVariable) {
      tr.objective = objective_;
      return objective_ == Objective::kIem ? forward_iem_variable(ctx, ids, targets, ws, tr)
                                           : forward_variable(ctx, ids, targets, ws, tr);
    } else {
      return forward_fixed(ctx, ids, targets, ws, tr);
    }
  }

  /// Gradients of the mean loss of the last forward, accumulated into the parameters' grads.
  /// Overwrites tr.logits with dlogits.
  void backward(Ctx& ctx, Trace& tr, Arena<Space>& ws) const {
    if constexpr (kVariable) return tr.objective == Objective::kIem ? backward_iem_variable(ctx, tr, ws)
                                                                    : backward_variable(ctx, tr, ws);
    else return backward_fixed(ctx, tr, ws);
  }

 private:
  double forward_fixed(Ctx& ctx, Ids ids, Ids targets, Arena<Space>& ws, Trace& tr) const {
    std::int64_t bsz = ids.size(0), t = ids.size(1), d = cfg_.dim;
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

  void backward_fixed(Ctx& ctx, Trace& tr, Arena<Space>& ws) const {
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

  /// The worst-case plans of a variable segmenter: S = max_segments(t) segments per row.
  /// variable_front carves: the indices, x, the grid, e, s.
  std::size_t variable_front_workspace(std::int64_t batch, std::int64_t t) const {
    std::int64_t n = segments_for(t), l = kSegment, d = cfg_.dim, cells = n * l;
    return aligned_bytes<std::int32_t>(batch * cells) + aligned_bytes<std::int32_t>(batch * t) +
           aligned_bytes<std::int32_t>(batch * n) /*grid_src, byte_cell, last_cell*/ +
           aligned_bytes<T>((batch * t + 1) * d) /*x_ext*/ + aligned_bytes<T>(batch * cells * d) /*xg*/ +
           2 * aligned_bytes<T>(batch * n * d) /*e, s*/ + encoder_.forward_workspace(batch, cells) +
           backbone_.forward_workspace(batch, n);
  }
  std::size_t variable_forward_workspace(std::int64_t batch, std::int64_t t) const {
    std::int64_t n = segments_for(t), cells = n * kSegment, d = cfg_.dim;
    return variable_front_workspace(batch, t) + aligned_bytes<T>(batch * cells * d) /*yg*/ +
           aligned_bytes<T>(batch * n * d) /*c*/ + aligned_bytes<T>(batch * t * d) /*y*/ +
           decoder_.forward_workspace(batch, cells) + head_.forward_workspace(batch, t);
  }
  std::size_t variable_iem_forward_workspace(std::int64_t batch, std::int64_t t) const {
    std::int64_t n = segments_for(t), l = kSegment, d = cfg_.dim, m = batch * std::max<std::int64_t>(n - 1, 1);
    std::int64_t kn = cfg_.iem_negatives;
    std::size_t b = variable_front_workspace(batch, t) + 3 * aligned_bytes<T>(m * d) /*iem_in, iem_pred, iem_pos*/;
    if (kn > 0)
      b += 2 * aligned_bytes<std::int32_t>(kn * l) + aligned_bytes<std::int32_t>(kn) /*neg_ids, neg_src, neg_last*/ +
           aligned_bytes<T>((kn * l + 1) * d) + aligned_bytes<T>(kn * l * d) /*neg_x (+ zero row), neg_xg*/ +
           aligned_bytes<T>(kn * d) /*neg_e*/ + encoder_.forward_workspace(1, kn * l);
    return b + aligned_bytes<T>(m * hier::IemLoss<B, T>::columns(m, kn, cfg_.iem_in_batch)) /*bias*/ +
           iem_.forward_workspace(m, kn, cfg_.iem_in_batch);
  }
  std::size_t variable_iem_backward_workspace(std::int64_t batch, std::int64_t t) const {
    std::int64_t n = segments_for(t), l = kSegment, d = cfg_.dim, cells = n * l, m = batch * std::max<std::int64_t>(n - 1, 1);
    std::int64_t kn = cfg_.iem_negatives;
    std::size_t inner = std::max({iem_.backward_workspace(m, kn, cfg_.iem_in_batch), backbone_.backward_workspace(batch, n),
                                  encoder_.backward_workspace(batch, cells),
                                  kn > 0 ? encoder_.backward_workspace(1, kn * l) : std::size_t(0)});
    std::size_t b = 3 * aligned_bytes<T>(m * d) /*dpred, dpos, din*/ + 2 * aligned_bytes<T>(batch * n * d) /*ds, de*/ +
                    aligned_bytes<T>(batch * cells * d) /*dxg*/ + aligned_bytes<T>(batch * t * d) /*dx*/;
    if (kn > 0)  // dneg, dneg_xg (+ zero row), dneg_x
      b += aligned_bytes<T>(kn * d) + aligned_bytes<T>((kn * l + 1) * d) + aligned_bytes<T>(kn * l * d);
    return b + inner;
  }
  std::size_t variable_backward_workspace(std::int64_t batch, std::int64_t t) const {
    std::int64_t n = segments_for(t), cells = n * kSegment, d = cfg_.dim;
    std::size_t inner = std::max({head_.backward_workspace(batch, t), decoder_.backward_workspace(batch, cells),
                                  backbone_.backward_workspace(batch, n), encoder_.backward_workspace(batch, cells)});
    return aligned_bytes<T>((batch * t + 1) * d) /*dy*/ + aligned_bytes<T>(batch * t * d) /*dx*/ +
           2 * aligned_bytes<T>(batch * cells * d) /*dyg, dxg*/ +
           2 * aligned_bytes<T>(batch * n * d) /*dc, ds*/ + inner;
  }

  /// What every objective over variable segments computes first: the layout, x, the grid X, the
  /// encoder's e and the backbone's s (the file comment's grid equations).
  void variable_front(Ctx& ctx, Ids ids, Ids targets, Arena<Space>& ws, Trace& tr) const {
    std::int64_t bsz = ids.size(0), t = ids.size(1), d = cfg_.dim, l = kSegment;
    // Host: the batch's layout (its vectors reserve the worst case once, then are reused).
    tr.host_ids.resize(std::size_t(bsz * t));
    B::template download<std::int32_t>(ctx, tr.host_ids.data(), ids.data, tr.host_ids.size());
    segmenter_.layout(tr.host_ids, bsz, t, tr.layout);
    hier::SegmentLayout const& lay = tr.layout;
    std::int64_t n = lay.segments, cells = n * l;
    tr.batch = bsz;
    tr.t = t;
    tr.segments = n;
    tr.ids = ids;
    tr.targets = targets;
    tr.grid_src = ws.template take<std::int32_t>(Shape{bsz * cells}, "hier.grid_src");
    tr.byte_cell = ws.template take<std::int32_t>(Shape{bsz * t}, "hier.byte_cell");
    tr.last_cell = ws.template take<std::int32_t>(Shape{bsz * n}, "hier.last_cell");
    B::template upload<std::int32_t>(ctx, tr.grid_src.data, lay.grid_src.data(), lay.grid_src.size());
    B::template upload<std::int32_t>(ctx, tr.byte_cell.data, lay.byte_cell.data(), lay.byte_cell.size());
    B::template upload<std::int32_t>(ctx, tr.last_cell.data, lay.last_cell.data(), lay.last_cell.size());
    tr.x_ext = ws.template take<T>(Shape{bsz * t + 1, d}, "hier.x_ext");
    tr.x = MView(tr.x_ext.data, Shape{bsz, t, d});
    tr.emb = tok_.forward(ctx, ids, tr.x, ws);                  // x = E[ids]                [B, T, d]
    ops::fill<T>(ctx, MView(tr.x_ext.data + bsz * t * d, Shape{d}), T(0));  // the padding's zero row
    tr.xg = ws.template take<T>(Shape{bsz, cells, d}, "hier.xg");
    ops::embedding_forward<T>(ctx, CView(tr.x_ext), tr.grid_src, tr.xg);  // X = gather(x)  [B, S L, d]
    tr.e = ws.template take<T>(Shape{bsz, n, d}, "hier.e");
    tr.enc = encoder_.forward(ctx, tr.xg, hier::SegmentLengths<Space>{lay.length, tr.last_cell}, tr.e, ws);  // [B, S, d]
    tr.s = ws.template take<T>(Shape{bsz, n, d}, "hier.s");
    backbone_.forward(ctx, tr.e, tr.s, tr.backbone, ws);        // s = Backbone(e)           [B, S, d]
  }

  /// The full (or decoder) objective over variable segments.
  double forward_variable(Ctx& ctx, Ids ids, Ids targets, Arena<Space>& ws, Trace& tr) const {
    variable_front(ctx, ids, targets, ws, tr);
    std::int64_t bsz = tr.batch, t = tr.t, n = tr.segments, d = cfg_.dim, cells = n * kSegment;
    tr.c = ws.template take<T>(Shape{bsz, n, d}, "hier.c");
    ops::shift_right<T>(ctx, tr.s, tr.c, 1);                    // c_i = s_{i-1}             [B, S, d]
    for (std::int64_t b = 0; b < bsz; ++b)                      // c_0 = c_start             [B, 1, d]
      ops::copy_mat<T>(ctx, {start_.value.data, 1, d, d}, {tr.c.data + b * n * d, 1, d, d});
    tr.yg = ws.template take<T>(Shape{bsz, cells, d}, "hier.yg");
    decoder_.forward(ctx, tr.c, tr.xg, tr.yg, tr.dec, ws);      // Y = Decoder(c, X)         [B, S L, d]
    tr.y = ws.template take<T>(Shape{bsz, t, d}, "hier.y");
    ops::embedding_forward<T>(ctx, CView(tr.yg).reshape(Shape{bsz * cells, d}), tr.byte_cell,
                              tr.y);                            // y = each byte's cell of Y [B, T, d]
    tr.head = head_.forward(ctx, tr.y, targets, ws);            // LN_f, E^T, loss           [B, T, V]
    tr.logits = tr.head.logits;
    tr.counted = tr.head.counted;
    tr.loss = tr.head.loss;
    tr.terms[0] = {"ce", tr.loss};
    return tr.loss;
  }

  /// Backward of forward_variable. The gathers' adjoints are gathers too (each byte has exactly one
  /// cell): dY = dy read at each cell's byte (padding cells read a zero row), dx = dX read at each
  /// byte's cell (padding cells dropped).
  void backward_variable(Ctx& ctx, Trace& tr, Arena<Space>& ws) const {
    HSEQ_CHECK(!tr.targets.empty() && tr.counted > 0, "Hierarchical::backward: the forward had no targets");
    ArenaScope<Space> scope(ws);
    std::int64_t bsz = tr.batch, n = tr.segments, d = cfg_.dim;
    MView dy_ext = ws.template take<T>(tr.x_ext.shape, "hier.dy_ext");  // [B T + 1, d] dy and a zero row
    MView dy(dy_ext.data, tr.y.shape), dx = ws.template take<T>(tr.y.shape, "hier.dx");
    MView dyg = ws.template take<T>(tr.xg.shape, "hier.dyg"), dxg = ws.template take<T>(tr.xg.shape, "hier.dxg");
    MView dc = ws.template take<T>(tr.e.shape, "hier.dc"), ds = ws.template take<T>(tr.e.shape, "hier.ds");
    MView dxg2 = dxg.reshape(Shape{dxg.size(0) * dxg.size(1), d});
    head_.backward(ctx, tr.head, dy, dx, ws);                   // dy = dL/dy (dx: scratch)   [B, T, d]
    ops::fill<T>(ctx, MView(dy_ext.data + bsz * tr.t * d, Shape{d}), T(0));
    ops::embedding_forward<T>(ctx, CView(dy_ext), tr.grid_src, dyg);  // dY (padding 0)        [B, S L, d]
    decoder_.backward(ctx, tr.dec, dyg, dc, dxg, ws);           // dc, dX (decoder path)      [B, S, d], [B, S L, d]
    if (!start_.frozen)                                         // d c_start = sum_b dc[b, 0]
      for (std::int64_t b = 0; b < bsz; ++b)
        ops::add_mat<T>(ctx, {dc.data + b * n * d, 1, d, d}, {start_.grad.data, 1, d, d});
    if (tr.objective != Objective::kDecoder) {                  // the conditions are not constants:
      ops::shift_right_backward<T>(ctx, dc, ds, 1);             // ds_j = dc_{j+1}            [B, S, d]
      backbone_.backward(ctx, tr.backbone, ds, dc, ws);         // dc = de                    [B, S, d]
      encoder_.backward(ctx, tr.enc, dc, dyg, ws);              // dyg = dX (encoder path)    [B, S L, d]
      ops::axpy<T>(ctx, T(1), CView(dyg), dxg);                 // dX = both paths            [B, S L, d]
    }
    ops::embedding_forward<T>(ctx, CView(dxg2), tr.byte_cell, dx);  // dx = dX at each byte  [B, T, d]
    tok_.backward(ctx, tr.emb, dx, ws);
  }

  /// The IEM objective over variable segments: as forward_iem, with M = sum_b (count_b - 1)
  /// predictions (segment i + 1 of row b from segment i, for the row's real segments only), the
  /// positives' and negatives' bytes of variable length (hits: equal length and bytes), and the
  /// negatives drawn from a proposal over delimited segments, encoded as a padded grid.
  double forward_iem_variable(Ctx& ctx, Ids ids, Ids targets, Arena<Space>& ws, Trace& tr) const {
    variable_front(ctx, ids, targets, ws, tr);
    hier::SegmentLayout const& lay = tr.layout;
    std::int64_t bsz = tr.batch, t = tr.t, n = tr.segments, d = cfg_.dim, l = kSegment;
    std::int64_t kn = cfg_.iem_negatives, m = 0;
    bool in_batch = cfg_.iem_in_batch;
    for (std::int64_t b = 0; b < bsz; ++b) m += lay.count[std::size_t(b)] - 1;
    HSEQ_CHECK(m >= 1, "Hierarchical(iem): no row of this batch holds 2 segments (rows of "
                           << t << " bytes, delimiter of " << cfg_.delimiter.size() << " bytes, MaxLen " << l
                           << "); the IEM objective predicts segment i + 1 from i");
    HSEQ_CHECK(kn == 0 || proposal_.size() > 0,
               "Hierarchical(iem): Config::iem_negatives = " << kn << " but no proposal was given (set_iem_proposal)");
    std::int64_t c = hier::IemLoss<B, T>::columns(m, kn, in_batch);
    tr.iem_in = ws.template take<T>(Shape{m, d}, "hier.iem_in");
    tr.iem_pred = ws.template take<T>(Shape{m, d}, "hier.iem_pred");
    tr.iem_pos = ws.template take<T>(Shape{m, d}, "hier.iem_pos");
    // Host: reserve the worst case once (M <= B (S_max - 1), positives <= B T bytes, negatives
    // <= Kn L bytes), so later steps do not allocate.
    std::int64_t m_cap = bsz * std::max<std::int64_t>(segments_for(t) - 1, 1);
    tr.pos_off.reserve(std::size_t(m_cap + 1));
    tr.pos_bytes.reserve(std::size_t(bsz * t));
    tr.neg_off.reserve(std::size_t(kn + 1));
    tr.neg_bytes.reserve(std::size_t(kn * l));
    tr.neg_len.reserve(std::size_t(kn));
    tr.neg_host.reserve(std::size_t(2 * kn * l + kn));
    tr.bias.reserve(std::size_t(m_cap * hier::IemLoss<B, T>::columns(m_cap, kn, in_batch)));
    tr.pos_off.assign(1, 0);
    tr.pos_bytes.clear();
    for (std::int64_t b = 0, row = 0; b < bsz; ++b) {  // rows row .. row + count_b - 2 of [M, d]
      std::int64_t cb = lay.count[std::size_t(b)];
      if (cb < 2) continue;
      ops::copy_mat<T>(ctx, {tr.s.data + b * n * d, cb - 1, d, d}, {tr.iem_in.data + row * d, cb - 1, d, d});
      ops::copy_mat<T>(ctx, {tr.e.data + (b * n + 1) * d, cb - 1, d, d}, {tr.iem_pos.data + row * d, cb - 1, d, d});
      for (std::int64_t i = 1; i < cb; ++i) {  // the positives' bytes: segment i of row b
        auto first = tr.host_ids.begin() + b * t + lay.start[std::size_t(b * n + i)];
        tr.pos_bytes.insert(tr.pos_bytes.end(), first, first + lay.length[std::size_t(b * n + i)]);
        tr.pos_off.push_back(std::int64_t(tr.pos_bytes.size()));
      }
      row += cb - 1;
    }
    tr.iem_head = iem_head_.forward(ctx, tr.iem_in, tr.iem_pred, ws);  // p_i = g(s_i)      [M, d]
    tr.neg_index.resize(std::size_t(kn));
    tr.log_q.resize(std::size_t(kn));
    tr.neg_off.assign(1, 0);
    tr.neg_bytes.clear();
    tr.neg_len.resize(std::size_t(kn));
    MView neg2;
    if (kn > 0) {
      proposal_.draw(cfg_.iem_seed, batch_stream(tr.host_ids), tr.neg_index);
      // Host staging of the negatives' grid [Kn, L]: ids (padding: id 0), the gather index (padding:
      // the zero row Kn L) and each one's last row.
      tr.neg_host.assign(std::size_t(2 * kn * l + kn), 0);
      std::int32_t* gids = tr.neg_host.data();
      std::int32_t* src = gids + kn * l;
      std::int32_t* last = src + kn * l;
      for (std::int64_t j = 0; j < kn; ++j) {
        auto seg = proposal_.segment(tr.neg_index[std::size_t(j)]);
        std::int64_t len = std::int64_t(seg.size());
        tr.neg_bytes.insert(tr.neg_bytes.end(), seg.begin(), seg.end());
        tr.neg_off.push_back(std::int64_t(tr.neg_bytes.size()));
        tr.neg_len[std::size_t(j)] = std::int32_t(len);
        for (std::int64_t r = 0; r < l; ++r) {
          gids[j * l + r] = r < len ? std::int32_t(seg[std::size_t(r)]) : 0;
          src[j * l + r] = std::int32_t(r < len ? j * l + r : kn * l);
        }
        last[j] = std::int32_t(j * l + len - 1);
        tr.log_q[std::size_t(j)] = std::log(double(kn)) + proposal_.log_prob(tr.neg_index[std::size_t(j)]);
      }
      tr.neg_ids = ws.template take<std::int32_t>(Shape{1, kn * l}, "hier.neg_ids");
      tr.neg_src = ws.template take<std::int32_t>(Shape{kn * l}, "hier.neg_src");
      tr.neg_last = ws.template take<std::int32_t>(Shape{kn}, "hier.neg_last");
      B::template upload<std::int32_t>(ctx, tr.neg_ids.data, gids, std::size_t(kn * l));
      B::template upload<std::int32_t>(ctx, tr.neg_src.data, src, std::size_t(kn * l));
      B::template upload<std::int32_t>(ctx, tr.neg_last.data, last, std::size_t(kn));
      tr.neg_x = ws.template take<T>(Shape{kn * l + 1, d}, "hier.neg_x");  // + the zero row
      tr.neg_emb = tok_.forward(ctx, tr.neg_ids, MView(tr.neg_x.data, Shape{kn * l, d}), ws);
      ops::fill<T>(ctx, MView(tr.neg_x.data + kn * l * d, Shape{d}), T(0));
      tr.neg_xg = ws.template take<T>(Shape{1, kn * l, d}, "hier.neg_xg");
      ops::embedding_forward<T>(ctx, CView(tr.neg_x), tr.neg_src, tr.neg_xg);  // padded grid   [1, Kn L, d]
      tr.neg_e = ws.template take<T>(Shape{1, kn, d}, "hier.neg_e");
      tr.neg_enc = encoder_.forward(ctx, tr.neg_xg, hier::SegmentLengths<Space>{tr.neg_len, tr.neg_last}, tr.neg_e,
                                    ws);                                      // en = Encoder(...) [1, Kn, d]
      neg2 = tr.neg_e.reshape(Shape{kn, d});
    }
    tr.bias.resize(std::size_t(m * c));
    tr.iem_hits = hier::IemLoss<B, T>::build_bias(tr.pos_bytes, tr.pos_off, tr.neg_bytes, tr.neg_off, tr.log_q,
                                                  in_batch, tr.bias);
    return iem_score(ctx, tr, neg2, in_batch, m, c, ws);
  }

  /// Backward of forward_iem_variable: as backward_iem, through the grid's gathers.
  void backward_iem_variable(Ctx& ctx, Trace& tr, Arena<Space>& ws) const {
    HSEQ_CHECK(tr.iem.rows > 0, "Hierarchical::backward: the IEM forward saved nothing");
    ArenaScope<Space> scope(ws);
    hier::SegmentLayout const& lay = tr.layout;
    std::int64_t bsz = tr.batch, n = tr.segments, d = cfg_.dim, l = kSegment, m = tr.iem.rows, kn = tr.iem.negs;
    MView dpred = ws.template take<T>(Shape{m, d}, "hier.dpred"), dpos = ws.template take<T>(Shape{m, d}, "hier.dpos");
    MView din = ws.template take<T>(Shape{m, d}, "hier.din");
    MView ds = ws.template take<T>(tr.e.shape, "hier.ds"), de = ws.template take<T>(tr.e.shape, "hier.de");
    MView dxg = ws.template take<T>(tr.xg.shape, "hier.dxg"), dx = ws.template take<T>(tr.x.shape, "hier.dx");
    MView dneg, dneg_xg, dneg_x;
    if (kn > 0) {
      dneg = ws.template take<T>(Shape{kn, d}, "hier.dneg");
      dneg_xg = ws.template take<T>(Shape{kn * l + 1, d}, "hier.dneg_xg");  // + the zero row
      dneg_x = ws.template take<T>(Shape{kn * l, d}, "hier.dneg_x");
    }
    iem_.backward(ctx, tr.iem, dpred, dpos, dneg, ws);          // dp, de_{i+1}, den          [M, d], [Kn, d]
    iem_head_.backward(ctx, tr.iem_head, dpred, din, ws);       // ds_i (i < count_b - 1)     [M, d]
    ops::fill<T>(ctx, ds, T(0));                                // last and padding segments: no prediction
    for (std::int64_t b = 0, row = 0; b < bsz; ++b) {
      std::int64_t cb = lay.count[std::size_t(b)];
      if (cb < 2) continue;
      ops::copy_mat<T>(ctx, {din.data + row * d, cb - 1, d, d}, {ds.data + b * n * d, cb - 1, d, d});
      row += cb - 1;
    }
    backbone_.backward(ctx, tr.backbone, ds, de, ws);           // de (input side)            [B, S, d]
    for (std::int64_t b = 0, row = 0; b < bsz; ++b) {           // + de_{i+1} (output side)
      std::int64_t cb = lay.count[std::size_t(b)];
      if (cb < 2) continue;
      ops::add_mat<T>(ctx, {dpos.data + row * d, cb - 1, d, d}, {de.data + (b * n + 1) * d, cb - 1, d, d});
      row += cb - 1;
    }
    encoder_.backward(ctx, tr.enc, de, dxg, ws);                // dX                         [B, S L, d]
    ops::embedding_forward<T>(ctx, CView(dxg).reshape(Shape{dxg.size(0) * dxg.size(1), d}), tr.byte_cell,
                              dx);                              // dx = dX at each byte       [B, T, d]
    tok_.backward(ctx, tr.emb, dx, ws);
    if (kn > 0) {                                               // the negatives' encoder pass
      encoder_.backward(ctx, tr.neg_enc, dneg.reshape(Shape{1, kn, d}), MView(dneg_xg.data, Shape{1, kn * l, d}), ws);
      ops::fill<T>(ctx, MView(dneg_xg.data + kn * l * d, Shape{d}), T(0));
      ops::embedding_forward<T>(ctx, CView(dneg_xg), tr.neg_src, dneg_x);  // real cells; padding 0
      tok_.backward(ctx, tr.neg_emb, dneg_x, ws);
    }
  }

 public:

  // ------------------------------------------------------------------------------------------
  // Cached generation

  Cache make_cache(std::int64_t batch, std::int64_t capacity) const {
    HSEQ_CHECK(batch > 0 && capacity > 0 && capacity <= cfg_.context,
               "Hierarchical::make_cache: batch " << batch << ", capacity " << capacity << " (context " << cfg_.context
                                                  << ")");
    Cache c;
    c.batch = batch;
    c.capacity = capacity;
    if constexpr (kVariable) {  // one batch-1 state per row: rows end their segments at different bytes
      c.rows.reserve(std::size_t(batch));
      for (std::int64_t b = 0; b < batch; ++b) {
        RowCache r;
        r.segment = Tensor<T, B>(Shape{1, kSegment, cfg_.dim});
        r.cond = Tensor<T, B>(Shape{1, 1, cfg_.dim});
        r.backbone = backbone_.make_step_state(1, segments_for(capacity));
        r.decoder = decoder_.make_step_state(1);
        r.bytes.reserve(std::size_t(kSegment));
        c.rows.push_back(std::move(r));
      }
      return c;
    }
    c.segment = Tensor<T, B>(Shape{batch, kSegment, cfg_.dim});
    c.cond = Tensor<T, B>(Shape{batch, 1, cfg_.dim});
    c.backbone = backbone_.make_step_state(batch, segments_for(capacity));
    c.decoder = decoder_.make_step_state(batch);
    return c;
  }
  /// Forgets everything the cache holds (position 0 again). Host bookkeeping only: the first
  /// forward_step after it starts from the start vector and restarts the backbone at segment 0.
  void reset_cache(Cache& c) const {
    c.pos = 0;
    for (RowCache& r : c.rows) {
      r.bytes.clear();
      r.index = 0;
    }
  }

  /// Scratch bytes of `forward_step` (per token; n does not matter).
  std::size_t step_workspace(std::int64_t batch, std::int64_t /*n*/, std::int64_t capacity) const {
    std::int64_t d = cfg_.dim;
    if constexpr (kVariable) {  // one row at a time (batch 1)
      std::size_t per_segment = aligned_bytes<T>(d) /*e*/ + aligned_bytes<std::int32_t>(1) /*last row*/ +
                                std::max(encoder_.forward_workspace(1, kSegment),
                                         backbone_.step_workspace(1, segments_for(capacity)));
      return 2 * aligned_bytes<T>(d) /*x, y*/ +
             std::max({decoder_.step_workspace(1), head_.predict_workspace(1), per_segment});
    }
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
    if constexpr (kVariable) {  // each row decides its own boundaries: host bytes, batch-1 steps
      cache.host_ids.resize(std::size_t(bsz * n));
      B::template download<std::int32_t>(ctx, cache.host_ids.data(), ids.data, cache.host_ids.size());
      for (std::int64_t i = 0; i < n; ++i) {
        for (std::int64_t b = 0; b < bsz; ++b)
          step_row(ctx, Ids(ids.data + b * n + i, Shape{1, 1}), cache.host_ids[std::size_t(b * n + i)],
                   cache.rows[std::size_t(b)], {logits.data + (b * n + i) * v, 1, v, v}, ws);
        ++cache.pos;
      }
    } else {  // (else, not an early return: nvcc warns of the unreachable rest otherwise)
      for (std::int64_t i = 0; i < n; ++i) {
        ArenaScope<Space> scope(ws);
        MIds col = ws.template take<std::int32_t>(Shape{bsz, 1}, "hier_step.ids");  // column i of [B, n]
        ops::copy_mat<std::int32_t>(ctx, {ids.data + i, bsz, 1, n}, ops::as_mat(col));
        step_byte(ctx, col, cache, logits, i, n, ws);
      }
    }
  }

  // ------------------------------------------------------------------------------------------
  // Cost

  /// Model FLOPs per token of a training step at sequence length t (a multiple of K: N = t / K
  /// segments) in the byte objective (models/flops.hpp):
  ///   - encoder: an MLP encoder runs once per segment (its K d -> hidden layer reads the K bytes
  ///     at once), rate 1/K; a recurrent encoder steps once per byte, rate 1;
  ///   - backbone: one position per segment, rate 1/K; a Transformer backbone's attention is
  ///     12 d N^2 / T = 12 d T / K^2 per layer (its position table is an embedding);
  ///   - decoder: a recurrent decoder steps once per byte (rate 1), its initial-state projections
  ///     once per segment (1/K); a Transformer decoder runs K + 1 positions per segment (the
  ///     condition, then the bytes), rate (K + 1) / K, and attends within the segment: N segments
  ///     of (K + 1)^2 query-key pairs over T tokens, 12 d (K + 1)^2 / K per layer and token (its
  ///     position table is an embedding);
  ///   - ln_f at rate 1; c_start is a vector read, not multiplied (counted like an embedding); the
  ///     IEM head and temperature, when present, are non-embedding parameters outside N_eff (the
  ///     byte objective does not run them).
  /// Other policies count as encoder and backbone at 1/K, decoder at 1, without attention. A
  /// variable segmenter's segments depend on the data: K is then its longest segment (kSegment),
  /// so the count is that of a batch whose segments all have K bytes.
  FlopCount flops(std::int64_t t) const {
    double k = double(kSegment), d = double(cfg_.dim), tt = double(t), seg = 1.0 / k;
    auto table_or = [](double rate) {  // a part whose "pos_emb." table is an embedding
      return [rate](std::string const& n) { return n.starts_with("pos_emb.") ? FlopCount::kEmbedding : rate; };
    };
    FlopCount f;
    f.add_embedding(tok_).add_count(double(start_.shape.numel()), FlopCount::kEmbedding).add(head_, 1.0);
    f.add(encoder_, std::is_same_v<EncoderT, hier::RnnEncoder> ? 1.0 : seg);
    if constexpr (std::is_same_v<BackboneT, hier::TransformerBackbone>) {
      f.add(backbone_, table_or(seg)).add_attention(double(cfg_.layers), d, tt * seg, tt * seg, tt);
    } else {
      f.add(backbone_, seg);
    }
    if constexpr (std::is_same_v<DecoderT, hier::RnnDecoder>) {  // "<layer>.init.*", "<layer>.rnn.*"
      f.add(decoder_, [seg](std::string const& n) { return n.find(".init.") != std::string::npos ? seg : 1.0; });
    } else if constexpr (std::is_same_v<DecoderT, hier::TransformerDecoder>) {
      f.add(decoder_, table_or((k + 1) / k)).add_attention(double(cfg_.decoder_layers), d, k + 1, k + 1, k);
    } else {
      f.add(decoder_, 1.0);
    }
    if (cfg_.iem_enabled()) f.add(iem_head_, 0.0).add(iem_, 0.0);
    return f;
  }

 private:
  static Config check(Config c) {
    HSEQ_CHECK(c.vocab > 0 && c.dim > 0 && c.heads > 0 && c.context > 0 && c.layers > 0 && c.decoder_layers > 0,
               "Hierarchical: vocab " << c.vocab << ", dim " << c.dim << ", heads " << c.heads << ", layers "
                                      << c.layers << ", decoder_layers " << c.decoder_layers << ", context "
                                      << c.context << " must all be positive");
    HSEQ_CHECK(c.dim % c.heads == 0, "Hierarchical: heads " << c.heads << " do not divide the width " << c.dim);
    if constexpr (!kVariable)
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

  /// The end of both IEM forwards (fixed and variable segments): the host bias tr.bias [M, C]
  /// uploaded, the sampled softmax of the predictions against the positives and the negatives
  /// `neg` [Kn, d], and the trace of an objective without byte logits.
  double iem_score(Ctx& ctx, Trace& tr, MView neg, bool in_batch, std::int64_t m, std::int64_t c,
                   Arena<Space>& ws) const {
    MView bias = ws.template take<T>(Shape{m, c}, "hier.iem_bias");
    B::template upload<T>(ctx, bias.data, tr.bias.data(), tr.bias.size());
    tr.loss = iem_.forward(ctx, tr.iem_pred, tr.iem_pos, neg, bias, in_batch, tr.iem, ws);
    tr.counted = 0;
    tr.logits = {};
    tr.terms[0] = {"iem", tr.loss};
    return tr.loss;
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
    return iem_score(ctx, tr, neg2, in_batch, m, c, ws);
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
  /// The most segments `bytes` bytes hold (a variable segmenter: its worst case).
  std::int64_t segments_for(std::int64_t bytes) const {
    if constexpr (kVariable) return segmenter_.max_segments(bytes);
    else return (bytes + kSegment - 1) / kSegment;
  }
  static SegmentT make_segmenter(Config const& c) {
    if constexpr (kVariable) return SegmentT(c.delimiter);
    else return SegmentT{};
  }
  /// The configuration of one part (encoder, backbone or decoder) with `layers` layers.
  hier::PartConfig part(std::int64_t layers) const {
    return hier::PartConfig{cfg_.dim,   kSegment,   cfg_.heads,          layers,    cfg_.mlp_hidden,
                            cfg_.cell,  segments_for(cfg_.context), cfg_.eps, cfg_.init_std};
  }

  /// Variable segmenters: byte `id` ([1, 1], host value `byte`) of one row, logits into `out`
  /// [1, V]. When the byte ends the row's segment (segmenter_.ends), the segment is encoded and
  /// the backbone steps once: its output is the next segment's condition.
  void step_row(Ctx& ctx, Ids id, std::int32_t byte, RowCache& row, ops::Mat<T, Space> out, Arena<Space>& ws) const {
    ArenaScope<Space> scope(ws);
    std::int64_t d = cfg_.dim, r = std::int64_t(row.bytes.size());
    Shape one{1, 1, d};
    MView x = ws.template take<T>(one, "hier_step.x"), y = ws.template take<T>(one, "hier_step.y");
    tok_.forward(ctx, id, x, ws);                                               // x_p = E[id]     [1, 1, d]
    if (r == 0) {  // a new segment: zero padding, the condition c_start or the last backbone output
      ops::fill<T>(ctx, row.segment.view(), T(0));
      if (row.index == 0) ops::copy<T>(ctx, CView(start_.value).reshape(one), row.cond.view());
      decoder_.step_begin(ctx, row.decoder, row.cond.cview(), ws);
    }
    ops::copy_mat<T>(ctx, ops::as_mat(CView(x).reshape(Shape{1, d})), {row.segment.data() + r * d, 1, d, d});
    decoder_.step(ctx, row.decoder, x, r, y, ws);                              // y_p            [1, 1, d]
    head_.predict(ctx, y, out, ws);
    row.bytes.push_back(byte);
    if (segmenter_.ends(row.bytes)) {  // complete: encode it, one backbone step -> next condition
      MView e = ws.template take<T>(one, "hier_step.e");
      MIds last = ws.template take<std::int32_t>(Shape{1}, "hier_step.last");
      std::int32_t len = std::int32_t(row.bytes.size()), last_row = len - 1;
      B::template upload<std::int32_t>(ctx, last.data, &last_row, 1);
      {
        ArenaScope<Space> enc_scope(ws);
        encoder_.forward(ctx, row.segment.cview(), hier::SegmentLengths<Space>{std::span(&len, 1), last}, e,
                         ws);                                                   // e_i            [1, 1, d]
      }
      backbone_.step(ctx, row.backbone, e, row.index, row.cond.view(), ws);    // s_i = c_{i+1}  [1, 1, d]
      ++row.index;
      row.bytes.clear();
    }
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
  SegmentT segmenter_;  // a variable segmenter's configuration (the delimiter); empty for fixed ones
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
