// SPDX-License-Identifier: MIT
// Model FLOPs per token (models/flops.hpp): each model's flops(t) against the count written out by
// hand from its layers' parameter shapes, on small configurations and on the two Hourglass
// configurations of the GPU benchmark, whose figures must not change with the move of the count
// from bench/cuda into the models.
#include <doctest/doctest.h>

#include <cstdint>

#include "hseq/models/flops.hpp"
#include "hseq/models/hierarchical.hpp"
#include "hseq/models/hourglass.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "hseq/nn/parameter.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

namespace {

/// Parameters of one pre-LN Transformer block of width d with a 4 d MLP, biases everywhere:
/// ln1, ln2 (2 d each), attention q, kv, out (4 d^2 + 4 d), MLP (d x 4d + 4d, 4d x d + d).
double block(double d) { return 12 * d * d + 13 * d; }
/// A GRU layer (w_ih [3h, in], w_hh [3h, h], two biases [3h]) and an LSTM layer (4h).
double gru(double in, double h) { return 3 * h * (in + h + 2); }
double lstm(double in, double h) { return 4 * h * (in + h + 2); }

/// Parameter elements of a model, from its store (what n_total must equal).
template <class M>
double stored(M& m) {
  nn::ParamStore<cpu, float> ps(m);
  return double(ps.count());
}

void check_equal(models::FlopCount const& got, models::FlopCount const& want) {
  CHECK(got.n_total == doctest::Approx(want.n_total).epsilon(1e-12));
  CHECK(got.n_nonemb == doctest::Approx(want.n_nonemb).epsilon(1e-12));
  CHECK(got.n_eff == doctest::Approx(want.n_eff).epsilon(1e-12));
  CHECK(got.attn_palm == doctest::Approx(want.attn_palm).epsilon(1e-12));
}

using HierT = hier::Hierarchy<2, 2, hier::Level<4, 4>>;  // "2@1 4@4 2@1"

}  // namespace

TEST_CASE("flops: FlopCount's definitions") {
  models::FlopCount f;
  f.add_count(100, models::FlopCount::kEmbedding).add_count(40, 1.0).add_count(80, 0.25);
  CHECK(f.n_total == 220);
  CHECK(f.n_nonemb == 120);
  CHECK(f.n_eff == 60);
  f.add_attention(2, 8, 16, 16, 16);  // 2 layers x 12 d T
  CHECK(f.attn_palm == 2 * 12 * 8 * 16);
  CHECK(f.palm() == 6 * 60 + 3072);
  CHECK(f.causal() == 6 * 60 + 1536);
}

TEST_CASE("flops: TransformerLm is 6 N + 12 L d T, embeddings excluded") {
  for (bool tied : {true, false}) {
    double d = 32, layers = 3, t = 64, v = 256, ctx = 128;
    models::TransformerLm<cpu, float> lm({.vocab = 256, .dim = 32, .heads = 4, .layers = 3, .context = 128, .tied = tied});
    models::FlopCount want;
    want.n_nonemb = layers * block(d) + 2 * d + (tied ? 0 : v * d);  // blocks, ln_f, untied head
    want.n_eff = want.n_nonemb;
    want.n_total = want.n_nonemb + v * d + ctx * d;  // + token and position tables
    want.attn_palm = 12 * layers * d * t;
    check_equal(lm.flops(64), want);
    CHECK(lm.flops(64).n_total == stored(lm));
  }
}

TEST_CASE("flops: Hourglass 2@1 4@4 2@1, the GPU benchmark's configurations (d 512, T 2048)") {
  // 4 full-rate blocks (pre, post), 4 blocks at 1/4 of the positions, ln_f, ln_up (full rate);
  // version-1 models (no closing norms) but for the subcase that counts them.
  double d = 512, t = 2048, v = 256;
  double n_blocks = 8 * block(d) + 2 * d + 2 * d;
  double emb = v * d + t * d;
  SUBCASE("average pooling, repetition: no resampling parameters") {
    models::Hourglass<cpu, float, HierT, hier::AvgPool, hier::Repeat> hg(
        {.vocab = 256, .dim = 512, .heads = 8, .context = 2048, .closing_norm = false});
    models::FlopCount f = hg.flops(2048);
    // Computed by hand from the formula: N_eff = 4 B + 4 B / 4 + 4 d, attention 12 d T (4 + 4 / 16).
    CHECK(f.n_total == 26400768);
    CHECK(f.n_nonemb == 25221120);
    CHECK(f.n_eff == 15763968);
    CHECK(f.attn_palm == 53477376);
    models::FlopCount want{n_blocks + emb, n_blocks, 5 * block(d) + 4 * d, 12 * d * t * (4 + 4.0 / 16)};
    check_equal(f, want);
    CHECK(f.n_total == stored(hg));
    CHECK(f.palm() == 6 * 15763968.0 + 53477376);
  }
  SUBCASE("closing norms (the default): the pre stack's at full rate, the level's at 1/4") {
    models::Hourglass<cpu, float, HierT, hier::AvgPool, hier::Repeat> hg({.vocab = 256, .dim = 512, .heads = 8, .context = 2048});
    models::FlopCount f = hg.flops(2048);
    models::FlopCount want{n_blocks + 4 * d + emb, n_blocks + 4 * d, 5 * block(d) + 4 * d + 2 * d + 2 * d / 4,
                           12 * d * t * (4 + 4.0 / 16)};
    check_equal(f, want);
    CHECK(f.n_total == stored(hg));
  }
  SUBCASE("attention pooling and upsampling: each at both rates, plus two cross-attentions") {
    models::Hourglass<cpu, float, HierT, hier::AttentionPool, hier::AttentionUp> hg(
        {.vocab = 256, .dim = 512, .heads = 8, .context = 2048, .closing_norm = false});
    models::FlopCount f = hg.flops(2048);
    // Pool: ln_in + kv (2 d^2 + 4 d) at full rate; ln_q, q, out, ln_ff, MLP (10 d^2 + 11 d) at 1/4.
    // Upsampling: ln_s + kv at 1/4; ln_u, q, out, ln_ff, MLP at full rate. Cross-attention:
    // 12 d T / 4 each.
    double kv = 2 * d * d + 4 * d, rest = 10 * d * d + 11 * d;
    CHECK(f.n_total == 32707584);
    CHECK(f.n_nonemb == 31527936);
    CHECK(f.n_eff == 19705728);
    CHECK(f.attn_palm == 59768832);
    models::FlopCount want{n_blocks + 2 * (kv + rest) + emb, n_blocks + 2 * (kv + rest),
                           5 * block(d) + 4 * d + (kv + rest) + (kv + rest) / 4,
                           12 * d * t * (4 + 4.0 / 16 + 2.0 / 4)};
    check_equal(f, want);
    CHECK(f.n_total == stored(hg));
  }
}

TEST_CASE("flops: Hourglass, nested levels and linear resampling at the short rate") {
  // "1@1 1@2 1@4 1@2 1@1": rates 1, 2, 4; level 0 has pre and post blocks at 1/2, level 1 one
  // block at 1/4. Linear pool (2 d -> d) and linear upsampling (d -> 2 d) run once per short
  // position: level 0's at 1/2, level 1's at 1/4.
  using Hg = models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::LinearPool, hier::LinearUp>;
  Hg::Config c{.vocab = 256, .dim = 16, .heads = 2, .context = 64};
  c.hierarchy = hier::HierarchySpec::parse("1@1 1@2 1@4 1@2 1@1");
  Hg hg(c);
  double d = 16, t = 64;
  double lin = 2 * d * d + d /*pool*/ + 2 * d * d + 2 * d /*up*/;
  models::FlopCount want;
  // The closing norms: the pre stack's (full rate), level 0's pre and post (1/2), level 1's (1/4).
  want.n_nonemb = 5 * block(d) + 2 * d /*ln_f*/ + 2 * 2 * d /*ln_up*/ + 2 * lin + 4 * 2 * d /*closing*/;
  want.n_total = want.n_nonemb + 256 * d + 64 * d;
  want.n_eff = 2 * block(d) + 2 * d + 2 * block(d) / 2 + block(d) / 4 + 2 * d /*ln_up 0*/ + 2 * d / 2 /*ln_up 1*/ +
               lin / 2 + lin / 4 + 2 * d + 2 * (2 * d) / 2 + 2 * d / 4 /*closing*/;
  want.attn_palm = 12 * d * t * (2 + 2.0 / 4 + 1.0 / 16);
  check_equal(hg.flops(64), want);
  CHECK(hg.flops(64).n_total == stored(hg));
}

TEST_CASE("flops: Hierarchical, encoder and backbone per segment, decoder per byte") {
  // d 16, K 4, hidden 64, T 32: N = 8 segments, context 64 (16 backbone positions).
  double d = 16, k = 4, h = 64, t = 32, v = 256, lb = 2, ld = 2;
  auto config = [](auto& c) {
    c.dim = 16;
    c.heads = 2;
    c.layers = 2;
    c.decoder_layers = 2;
    c.context = 64;
  };
  double emb = v * d + d;  // byte table, c_start
  double mlp_enc = k * d * h + h + h * d + d + 2 * d;
  double rnn_dec_init = ld * (d * d + d);
  SUBCASE("HAED: MLP encoder, Transformer backbone, GRU decoder") {
    using M = models::Haed<cpu, float, 4>;
    M::Config c;
    config(c);
    M m(c);
    double backbone = lb * block(d) + 2 * d, dec_rnn = gru(2 * d, d) + gru(d, d);
    models::FlopCount want;
    want.n_nonemb = mlp_enc + backbone + rnn_dec_init + dec_rnn + 2 * d /*ln_f*/;
    want.n_total = want.n_nonemb + emb + 16 * d /*backbone positions*/;
    want.n_eff = (mlp_enc + backbone + rnn_dec_init) / k + dec_rnn + 2 * d;
    want.attn_palm = lb * 12 * d * t / (k * k);
    check_equal(m.flops(32), want);
    CHECK(m.flops(32).n_total == stored(m));
  }
  SUBCASE("HRED with LSTM cells: the recurrent encoder steps per byte") {
    using M = models::Hred<cpu, float, 4>;
    M::Config c;
    config(c);
    c.cell = nn::RnnKind::kLstm;
    M m(c);
    double enc = lstm(d, d), backbone = lb * lstm(d, d), dec_rnn = lstm(2 * d, d) + lstm(d, d);
    models::FlopCount want;
    want.n_nonemb = enc + backbone + rnn_dec_init + dec_rnn + 2 * d;
    want.n_total = want.n_nonemb + emb;
    want.n_eff = enc + (backbone + rnn_dec_init) / k + dec_rnn + 2 * d;
    want.attn_palm = 0;
    check_equal(m.flops(32), want);
    CHECK(m.flops(32).n_total == stored(m));
  }
  SUBCASE("Transformer decoder: K + 1 positions per segment, attention within it; IEM outside N_eff") {
    using M = models::Haed<cpu, float, 4, hier::TransformerDecoder>;
    M::Config c;
    config(c);
    c.iem_in_batch = true;  // the IEM head (d x d + d) and the temperature (1) exist
    M m(c);
    double backbone = lb * block(d) + 2 * d, dec = ld * block(d), iem = d * d + d + 1;
    models::FlopCount want;
    want.n_nonemb = mlp_enc + backbone + dec + 2 * d + iem;
    want.n_total = want.n_nonemb + emb + 16 * d + (k + 1) * d /*decoder positions*/;
    want.n_eff = (mlp_enc + backbone) / k + dec * (k + 1) / k + 2 * d;
    want.attn_palm = lb * 12 * d * t / (k * k) + ld * 12 * d * (k + 1) * (k + 1) / k;
    check_equal(m.flops(32), want);
    CHECK(m.flops(32).n_total == stored(m));
  }
}

}  // namespace HSEQ_TEST_UNIT
