// SPDX-License-Identifier: MIT
/// @file
/// @brief `SeqAutoencoder`: the attention-based sequence-length reduction autoencoder (Biermann et
/// al. 2023, docs/autoencoder.md). A bidirectional Transformer encoder, a length-changing attention
/// from n to m = n / R^S positions (S `steps` of factor R, each `hier::LengthReducer`; each step
/// rounds up, n_s = ceil(n_{s-1} / R), when R does not divide the length), the latent
/// [B, m, d], the inverse expansion (`hier::LengthExpander`), a bidirectional decoder and byte logits:
///
///   x0 = E[ids] + P_enc[0:n]                              [B, n, d]
///   h  = Enc(x0)        (enc_layers pre-LN blocks, no mask)  [B, n, d]
///   z_0 = LN_e(h);  z_s = Reduce_s(z_{s-1}), s = 1..S     [B, n_s, d]   latent z_S [B, m = n_S, d]
///   u_S = z_S;      u_{s-1} = Expand_s(u_s), s = S..1     [B, n_{s-1}, d]
/// where Reduce_s / Expand_s are `hier::LengthResampler`s, with the query stream's residual
/// (y = q + Attn(q, x), `Config::residual`, default on: see hier/length_resampler.hpp for why).
///   y  = Dec(u_0 + P_dec[0:n])  (dec_layers pre-LN blocks, no mask)
///   logits = LN_f(y) W_out^T    (W_out = E when tied)     [B, n, V]
///
/// Training minimises the mean cross-entropy of the logits against the targets, which for an
/// autoencoder are the input bytes themselves: `kReconstructsInput` tells the trainer's task
/// (`train::Reconstruction`) and the evaluator to pass targets = ids (targets < 0 are ignored as
/// everywhere). The output depends on the ids only through the latent: nothing bypasses the
/// reduction (tested). The reduction factor R and the query source (`hier::QueryBank`,
/// `hier::LengthMix`, `hier::PooledQueries`) are compile-time; S, the sizes and the window n are
/// run-time (any n <= window; exactly the window with `LengthMix`). A length that R does not
/// divide is padded with a mask inside each resampler (hier/length_resampler.hpp: the partial
/// group's pooled query averages its valid rows only, no padding row is ever a key, and the
/// expansion's rows past the length are cut), so no padding byte is scored or reconstructed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/backend/backend.hpp"
#include "hseq/core/error.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/length_resampler.hpp"
#include "hseq/models/config_json.hpp"
#include "hseq/models/flops.hpp"
#include "hseq/nn/block_stack.hpp"
#include "hseq/nn/embedding.hpp"
#include "hseq/nn/layer_norm.hpp"
#include "hseq/nn/lm_head.hpp"
#include "hseq/nn/position_embedding.hpp"
#include "hseq/nn/transformer_block.hpp"
#include "hseq/ops/mat.hpp"

namespace hseq::models {

template <Backend B, class T, std::int64_t R = 2, class Query = hier::PooledQueries>
  requires hier::QueryPolicy<Query, B, T, R, hier::LengthDirection::kReduce> &&
           hier::QueryPolicy<Query, B, T, R, hier::LengthDirection::kExpand>
class SeqAutoencoder {
 public:
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Ids = View<std::int32_t const, Space>;
  using Stack = nn::BlockStack<B, T>;
  using Head = nn::LmHead<B, T>;
  using Reducer = hier::LengthReducer<B, T, R, Query>;
  using Expander = hier::LengthExpander<B, T, R, Query>;
  static constexpr std::int64_t kFactor = R;
  /// The targets of this model are its inputs (see the file comment).
  static constexpr bool kReconstructsInput = true;

  struct Config {
    std::int64_t vocab = 256;
    std::int64_t dim = 256, heads = 4;
    std::int64_t enc_layers = 2, dec_layers = 2;
    std::int64_t window = 64;     ///< longest sequence n (position tables; query bank and mix sizes)
    std::int64_t steps = 1;       ///< reductions of factor R: m = n / R^steps
    std::int64_t mlp_hidden = 0;  ///< 0 means 4 * dim
    bool residual = true;         ///< the resamplers add their query input to their output
    bool tied = true;
    double eps = 1e-5;
    double init_std = 0.02;
    NLOHMANN_DEFINE_TYPE_INTRUSIVE(Config, vocab, dim, heads, enc_layers, dec_layers, window, steps, mlp_hidden,
                                   residual, tied, eps, init_std)
  };

  struct Trace {
    std::int64_t batch = 0, t = 0, counted = 0;
    double loss = std::numeric_limits<double>::quiet_NaN();
    Ids ids, targets;
    typename nn::Embedding<B, T>::Saved emb;
    typename nn::PositionEmbedding<B, T>::Saved pos_enc, pos_dec;
    MView x0, dec_in;  // [B, n, d] the encoder's and the decoder's inputs
    typename Stack::Saved enc, dec;
    typename nn::LayerNorm<B, T>::Saved ln_e;
    std::vector<MView> z;  // z[s] [B, n / R^s, d], s = 0..S (z[S]: the latent)
    std::vector<MView> u;  // u[s] [B, n / R^s, d], s = 0..S-1 (u[S] is z[S])
    std::vector<typename Reducer::Saved> red;
    std::vector<typename Expander::Saved> exp;
    typename Head::Saved head;
    MView logits;  // [B, n, V] (overwritten by dlogits in backward)
    /// The latent of the last forward [B, m, d].
    CView latent() const { return z.empty() ? CView{} : CView(z.back()); }
  };

  static constexpr char const* kKind = "seq_autoencoder";

  explicit SeqAutoencoder(Config c)
      : cfg_(check(c)),
        tok_({c.vocab, c.dim, c.init_std}),
        pos_enc_({nn::PositionKind::kLearned, c.window, c.dim, c.init_std}),
        pos_dec_({nn::PositionKind::kLearned, c.window, c.dim, c.init_std}),
        enc_({c.enc_layers, block_config(c)}),
        ln_e_({c.dim, c.eps}),
        dec_({c.dec_layers, block_config(c)}),
        head_({c.dim, c.vocab, c.tied, c.eps, c.init_std}, c.tied ? &tok_.table() : nullptr) {
    std::int64_t n = c.window;
    for (std::int64_t s = 0; s < c.steps; ++s, n = down(n)) {  // step s maps n -> ceil(n / R) and back
      hier::LengthResamplerConfig rc{
          .dim = c.dim, .heads = c.heads, .window = n, .bias = true, .residual = c.residual, .init_std = c.init_std};
      red_.emplace_back(rc);
      exp_.emplace_back(rc);
    }
  }
  SeqAutoencoder(SeqAutoencoder const&) = delete;
  SeqAutoencoder& operator=(SeqAutoencoder const&) = delete;

  Config const& config() const { return cfg_; }
  /// The reduction of the whole model, R^steps.
  std::int64_t reduction() const { return ipow(R, cfg_.steps); }
  /// The latent's length m for a window of t bytes: t / R^steps, rounded up at every step.
  std::int64_t latent_length(std::int64_t t) const { return length_at(t, cfg_.steps); }
  /// The configuration as JSON with the compile-time choices "reduce" (R, a string) and "queries"
  /// (the query source's name); checkpoints store it and compare it on load.
  std::string config_json() const {
    nlohmann::json j = cfg_;
    j["reduce"] = std::to_string(R);
    j["queries"] = Query::kName;
    return j.dump();
  }
  static Config config_from_json(std::string const& text) {
    return parse_config_json<Config>(text, "SeqAutoencoder", [](nlohmann::json const& j, Config&) {
      auto r = j.at("reduce").get<std::string>(), q = j.at("queries").get<std::string>();
      HSEQ_CHECK(r == std::to_string(R) && q == Query::kName,
                 "SeqAutoencoder: the configuration reduces by " << r << " with queries '" << q
                                                                 << "', this model type by " << R << " with '"
                                                                 << Query::kName << "'");
    });
  }

  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    tok_.visit_params(f, prefix + "tok_emb.");
    pos_enc_.visit_params(f, prefix + "pos_enc.");
    enc_.visit_params(f, prefix + "enc.");
    ln_e_.visit_params(f, prefix + "ln_e.");
    for (std::size_t s = 0; s < red_.size(); ++s) red_[s].visit_params(f, prefix + "reduce." + std::to_string(s) + ".");
    for (std::size_t s = 0; s < exp_.size(); ++s) exp_[s].visit_params(f, prefix + "expand." + std::to_string(s) + ".");
    pos_dec_.visit_params(f, prefix + "pos_dec.");
    dec_.visit_params(f, prefix + "dec.");
    head_.visit_params(f, prefix);  // ln_f., then head. when untied
  }

  // ------------------------------------------------------------------------------------------
  // Training

  /// Bytes forward carves: x0, z_0, the reductions' and expansions' outputs and plans, the
  /// decoder's input, the stacks', LN_e's and the head's plans.
  std::size_t forward_workspace(std::int64_t batch, std::int64_t t) const {
    std::size_t const full = aligned_bytes<T>(batch * t * cfg_.dim);
    std::size_t b = 3 * full /*x0, z0, dec_in*/ + enc_.forward_workspace(batch, t) + ln_e_.forward_workspace(batch * t) +
                    dec_.forward_workspace(batch, t) + head_.forward_workspace(batch, t);
    std::int64_t n = t;  // the full-rate length of step s
    for (std::size_t s = 0; s < red_.size(); ++s, n = down(n))
      b += aligned_bytes<T>(batch * down(n) * cfg_.dim) /*z[s+1]*/ + aligned_bytes<T>(batch * n * cfg_.dim) /*u[s]*/ +
           red_[s].forward_workspace(batch, n) + exp_[s].forward_workspace(batch, n);
    return b;
  }
  /// Peak bytes of backward, in the order it carves them (see backward).
  std::size_t backward_workspace(std::int64_t batch, std::int64_t t) const {
    std::size_t const full = aligned_bytes<T>(batch * t * cfg_.dim);
    std::size_t run = 2 * full;  // da, db
    std::size_t peak = run + std::max(head_.backward_workspace(batch, t), dec_.backward_workspace(batch, t));
    std::int64_t n = t;
    for (std::size_t s = 0; s < exp_.size(); ++s, n = down(n)) {  // du_{s+1}
      run += aligned_bytes<T>(batch * down(n) * cfg_.dim);
      peak = std::max(peak, run + exp_[s].backward_workspace(batch, n));
    }
    for (std::size_t s = red_.size(); s-- > 0;) {  // dz_s (s > 0; dz_0 is da)
      n = length_at(t, std::int64_t(s));
      if (s > 0) run += aligned_bytes<T>(batch * n * cfg_.dim);
      peak = std::max(peak, run + red_[s].backward_workspace(batch, n));
    }
    run += full;  // tmp
    return std::max(peak, run + enc_.backward_workspace(batch, t));
  }
  /// Bytes `decode` carves for a latent of a window of t bytes.
  std::size_t decode_workspace(std::int64_t batch, std::int64_t t) const {
    std::size_t b = aligned_bytes<T>(batch * t * cfg_.dim) /*dec_in*/ + dec_.forward_workspace(batch, t) +
                    head_.predict_workspace(batch * t);
    std::int64_t n = t;
    for (std::size_t s = 0; s < exp_.size(); ++s, n = down(n))
      b += aligned_bytes<T>(batch * n * cfg_.dim) + exp_[s].forward_workspace(batch, n);
    return b;
  }

  /// Logits [B, n, V] from a latent [B, m, d] alone (the expansions, the decoder and the head of
  /// `forward`; n is the logits' length, m must be `latent_length(n)`): what the autoencoder reconstructs from a latent it did not make
  /// (the latents `hseq-eval --export-latents` writes, or edited ones). Not for training (no
  /// trace); its scratch is released on return.
  void decode(Ctx& ctx, CView latent, MView logits, Arena<Space>& ws) const {
    HSEQ_CHECK(latent.rank() == 3 && latent.size(0) > 0 && latent.size(1) > 0 && latent.size(2) == cfg_.dim,
               "SeqAutoencoder::decode: latent " << latent.shape << " must be [B, m, dim " << cfg_.dim << "]");
    std::int64_t const bsz = latent.size(0), d = cfg_.dim;
    std::int64_t const t = logits.rank() == 3 ? logits.size(1) : 0;
    HSEQ_CHECK(t > 0 && t <= cfg_.window && logits.shape == (Shape{bsz, t, cfg_.vocab}) &&
                   latent_length(t) == latent.size(1),
               "SeqAutoencoder::decode: logits " << logits.shape << " for latent " << latent.shape
                                                 << ": expected [" << bsz << ", n, " << cfg_.vocab
                                                 << "] with n <= window " << cfg_.window << " and latent_length(n) = "
                                                 << latent.size(1));
    ArenaScope<Space> scope(ws);
    CView u = latent;
    for (std::size_t s = exp_.size(); s-- > 0;) {
      std::int64_t const n = length_at(t, std::int64_t(s));
      MView next = ws.template take<T>(Shape{bsz, n, d}, "ae.u");
      exp_[s].forward(ctx, u, next, ws);
      u = next;
    }
    MView dec_in = ws.template take<T>(Shape{bsz, t, d}, "ae.dec_in");
    pos_dec_.forward(ctx, u, dec_in, 0, ws);
    typename Stack::Saved saved;  // (allocates its small vectors: decode is not a training step)
    CView y = dec_.forward(ctx, dec_in, saved, ws);
    head_.predict(ctx, y, ops::as_mat(logits), ws);
  }

  /// Forward over ids [B, n]; with targets [B, n] (for this model: the ids, entries < 0 ignored)
  /// returns the mean cross-entropy in nats (NaN without targets). Logits in `tr.logits`, the
  /// latent in `tr.latent()`.
  double forward(Ctx& ctx, Ids ids, Ids targets, Arena<Space>& ws, Trace& tr) const {
    std::int64_t const bsz = check_ids(ids), t = ids.size(1), d = cfg_.dim;
    HSEQ_CHECK(targets.empty() || targets.shape == ids.shape,
               "SeqAutoencoder: targets " << targets.shape << " differ from ids " << ids.shape);
    tr.batch = bsz, tr.t = t, tr.ids = ids, tr.targets = targets, tr.counted = 0;
    tr.loss = std::numeric_limits<double>::quiet_NaN();
    // x0 = E[ids] + P_enc[0:n]; h = Enc(x0); z0 = LN_e(h)                      [B, n, d]
    tr.x0 = ws.template take<T>(Shape{bsz, t, d}, "ae.x0");
    tr.emb = tok_.forward(ctx, ids, tr.x0, ws);
    tr.pos_enc = pos_enc_.forward(ctx, tr.x0, tr.x0, 0, ws);
    CView h = enc_.forward(ctx, tr.x0, tr.enc, ws);
    std::size_t const S = red_.size();
    tr.z.resize(S + 1);
    tr.u.resize(S);
    tr.red.resize(S);
    tr.exp.resize(S);
    tr.z[0] = ws.template take<T>(Shape{bsz, t, d}, "ae.z0");
    tr.ln_e = ln_e_.forward(ctx, h, tr.z[0], ws);
    // z_{s+1} = Reduce_s(z_s)                                                 [B, n_{s+1}, d]
    std::int64_t n = t;
    for (std::size_t s = 0; s < S; ++s, n = down(n)) {
      tr.z[s + 1] = ws.template take<T>(Shape{bsz, down(n), d}, "ae.z");
      tr.red[s] = red_[s].forward(ctx, tr.z[s], tr.z[s + 1], ws);
    }
    // u_s = Expand_s(u_{s+1}), u_S = z_S                                      [B, n_s, d]
    for (std::size_t s = S; s-- > 0;) {
      n = length_at(t, std::int64_t(s));
      tr.u[s] = ws.template take<T>(Shape{bsz, n, d}, "ae.u");
      tr.exp[s] = exp_[s].forward(ctx, s + 1 == S ? CView(tr.z[S]) : CView(tr.u[s + 1]), tr.u[s], ws);
    }
    // y = Dec(u_0 + P_dec[0:n]); logits = LN_f(y) W_out^T                      [B, n, V]
    tr.dec_in = ws.template take<T>(Shape{bsz, t, d}, "ae.dec_in");
    tr.pos_dec = pos_dec_.forward(ctx, tr.u[0], tr.dec_in, 0, ws);
    CView y = dec_.forward(ctx, tr.dec_in, tr.dec, ws);
    tr.head = head_.forward(ctx, y, targets, ws);
    tr.logits = tr.head.logits;
    tr.counted = tr.head.counted;
    tr.loss = tr.head.loss;
    return tr.loss;
  }

  /// Gradients of the mean loss of the last forward, accumulated into the parameters' grads.
  void backward(Ctx& ctx, Trace& tr, Arena<Space>& ws) const {
    HSEQ_CHECK(!tr.targets.empty() && tr.counted > 0, "SeqAutoencoder::backward: the forward had no targets");
    ArenaScope<Space> scope(ws);
    std::int64_t const bsz = tr.batch, t = tr.t, d = cfg_.dim;
    std::size_t const S = red_.size();
    Shape hs{bsz, t, d};
    MView da = ws.template take<T>(hs, "ae.da"), db = ws.template take<T>(hs, "ae.db");
    head_.backward(ctx, tr.head, db, da, ws);    // db = dy
    dec_.backward(ctx, tr.dec, db, da, ws);      // db = d dec_in
    pos_dec_.backward(ctx, tr.pos_dec, db, db, ws);  // db = d u_0
    // Down the expansions: du_{s+1} from du_s, then up the reductions: dz_s from dz_{s+1}.
    MView du = db;
    std::int64_t n = t;
    for (std::size_t s = 0; s < S; ++s, n = down(n)) {
      MView next = ws.template take<T>(Shape{bsz, down(n), d}, "ae.du");
      exp_[s].backward(ctx, tr.exp[s], du, next, ws);
      du = next;
    }
    MView dz = du;  // d z_S
    for (std::size_t s = S; s-- > 0;) {
      n = length_at(t, std::int64_t(s));
      MView prev = s == 0 ? da : ws.template take<T>(Shape{bsz, n, d}, "ae.dz");
      red_[s].backward(ctx, tr.red[s], dz, prev, ws);
      dz = prev;
    }
    // dz = d z_0 (in da) -> d h (in db) -> d x0
    MView dh = db, tmp = ws.template take<T>(hs, "ae.tmp");
    ln_e_.backward(ctx, tr.ln_e, dz, dh, ws);
    enc_.backward(ctx, tr.enc, dh, tmp, ws);  // dh = d x0 (the views may swap)
    pos_enc_.backward(ctx, tr.pos_enc, dh, dh, ws);
    tok_.backward(ctx, tr.emb, dh, ws);
  }

  /// Model FLOPs per token of a training step over windows of t bytes (models/flops.hpp): the
  /// encoder and decoder at full rate; each resampler's key/value projection at its input's rate
  /// and its query and output projections at its output's rate; a length mix A [n_out, n_in] costs
  /// 2 n_out n_in d per window, i.e. its parameters at rate d / t; the query bank is an addition
  /// (not counted).
  FlopCount flops(std::int64_t t) const {
    FlopCount f;
    f.add_embedding(tok_).add_embedding(pos_enc_).add_embedding(pos_dec_);
    f.add(enc_, 1.0).add(ln_e_, 1.0).add(dec_, 1.0).add(head_, 1.0);
    double const tt = double(t), d = double(cfg_.dim);
    double n = tt;
    for (std::size_t s = 0; s < red_.size(); ++s, n = double(down(std::int64_t(n)))) {
      double const m = double(down(std::int64_t(n)));
      auto rates = [&](double in, double out) {
        return [=](std::string const& name) {
          if (name.rfind("query.mix", 0) == 0) return d / tt;
          if (name.rfind("query.bank", 0) == 0) return 0.0;
          return name.rfind("attn.kv.", 0) == 0 ? in / tt : out / tt;
        };
      };
      f.add(red_[s], rates(n, m)).add(exp_[s], rates(m, n));
      f.add_attention(1.0, d, m, n, tt).add_attention(1.0, d, n, m, tt);
    }
    return f.add_attention(double(cfg_.enc_layers + cfg_.dec_layers), d, tt, tt, tt);
  }

 private:
  /// One reduction step's length: ceil(n / R).
  static std::int64_t down(std::int64_t n) { return hier::reduced_length<R>(n); }
  /// n_s: the length after s reduction steps of a window of t bytes.
  static std::int64_t length_at(std::int64_t t, std::int64_t s) {
    while (s-- > 0) t = down(t);
    return t;
  }
  static std::int64_t ipow(std::int64_t b, std::int64_t e) {
    std::int64_t r = 1;
    while (e-- > 0) r *= b;
    return r;
  }
  static typename nn::TransformerBlock<B, T>::Config block_config(Config const& c) {
    // Bidirectional (no mask); GPT-2's smaller residual-output initialisation over both stacks.
    return {c.dim, c.heads, c.mlp_hidden, nn::AttentionMask::none(), true, c.eps, c.init_std,
            c.init_std / std::sqrt(2.0 * double(std::max<std::int64_t>(c.enc_layers + c.dec_layers, 1)))};
  }
  static Config check(Config c) {
    HSEQ_CHECK(c.vocab > 0 && c.dim > 0 && c.heads > 0 && c.dim % c.heads == 0,
               "SeqAutoencoder: vocab " << c.vocab << ", dim " << c.dim << " and heads " << c.heads
                                        << " must be positive, heads dividing dim");
    HSEQ_CHECK(c.enc_layers >= 0 && c.dec_layers >= 0 && c.steps >= 1,
               "SeqAutoencoder: enc_layers " << c.enc_layers << ", dec_layers " << c.dec_layers
                                             << " must be >= 0 and steps " << c.steps << " >= 1");
    HSEQ_CHECK(c.window > 0, "SeqAutoencoder: window " << c.window << " must be positive");
    return c;
  }
  std::int64_t check_ids(Ids ids) const {
    HSEQ_CHECK(ids.rank() == 2 && ids.size(0) > 0 && ids.size(1) > 0,
               "SeqAutoencoder: ids " << ids.shape << " must be [B, n] with B, n >= 1");
    std::int64_t const n = ids.size(1);
    HSEQ_CHECK(n <= cfg_.window, "SeqAutoencoder: length " << n << " exceeds the window " << cfg_.window);
    if constexpr (Query::kWindow == hier::WindowUse::kExact)
      HSEQ_CHECK(n == cfg_.window, "SeqAutoencoder: length " << n << " differs from the window " << cfg_.window
                                                             << " that the '" << Query::kName
                                                             << "' query source is fixed to");
    return ids.size(0);
  }

  Config cfg_;
  nn::Embedding<B, T> tok_;
  nn::PositionEmbedding<B, T> pos_enc_, pos_dec_;
  Stack enc_;
  nn::LayerNorm<B, T> ln_e_;
  std::vector<Reducer> red_;
  std::vector<Expander> exp_;
  Stack dec_;
  Head head_;
};

}  // namespace hseq::models
