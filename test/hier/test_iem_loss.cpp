// SPDX-License-Identifier: MIT
// hier::IemLoss (the IEM sampled softmax) and hier::SegmentProposal (its unigram proposal):
// gradients against finite differences, the loss against a naive formula (log-Q correction,
// in-batch block, temperature), exact accidental-hit masking, and the proposal's counts and draws.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "hseq/hier/delimited.hpp"
#include "hseq/hier/iem_loss.hpp"
#include "hseq/hier/segment_proposal.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

namespace {
using Loss = hier::IemLoss<cpu, double>;

/// M = 5 rows of segments of 2 bytes; row 3 repeats row 1's positive, negative 1 equals row 0's
/// positive and negative 3 equals rows 1 and 3's, so every kind of accidental hit occurs.
struct Case {
  std::int64_t m = 5, kn = 4, k = 2, d = 3;
  std::vector<std::int32_t> pos_bytes{1, 2, 3, 4, 5, 6, 3, 4, 7, 8};
  std::vector<std::int32_t> neg_bytes{9, 9, 1, 2, 6, 5, 3, 4};
  std::vector<double> log_q{std::log(0.2), std::log(0.5), std::log(0.05), std::log(1.5)};
};

/// The loss by the textbook formula, in long double, skipping masked candidates entirely.
double naive_loss(Case const& cs, Tensor<double, cpu> const& p, Tensor<double, cpu> const& pos,
                  Tensor<double, cpu> const& neg, double tau, bool in_batch) {
  auto dot = [&](double const* a, double const* b) {
    long double r = 0;
    for (std::int64_t i = 0; i < cs.d; ++i) r += (long double)a[i] * b[i];
    return r;
  };
  auto same = [&](std::int32_t const* a, std::int32_t const* b) { return a[0] == b[0] && a[1] == b[1]; };
  long double total = 0;
  for (std::int64_t i = 0; i < cs.m; ++i) {
    long double z0 = dot(p.data() + i * cs.d, pos.data() + i * cs.d) / tau;
    long double sum = std::exp(z0);
    for (std::int64_t j = 0; j < cs.kn; ++j)
      if (!same(cs.pos_bytes.data() + i * cs.k, cs.neg_bytes.data() + j * cs.k))
        sum += std::exp(dot(p.data() + i * cs.d, neg.data() + j * cs.d) / tau - cs.log_q[std::size_t(j)]);
    if (in_batch)
      for (std::int64_t j = 0; j < cs.m; ++j)
        if (!same(cs.pos_bytes.data() + i * cs.k, cs.pos_bytes.data() + j * cs.k))
          sum += std::exp(dot(p.data() + i * cs.d, pos.data() + j * cs.d) / tau);
    total += std::log(sum) - z0;
  }
  return double(total / cs.m);
}
}  // namespace

TEST_CASE("iem loss: accidental hits are masked exactly (byte-identical candidates, the own positive in-batch)") {
  Case cs;
  for (bool in_batch : {false, true}) {
    CAPTURE(in_batch);
    std::int64_t c = Loss::columns(cs.m, cs.kn, in_batch);
    std::vector<double> bias(std::size_t(cs.m * c), 123.0);
    std::int64_t hits = Loss::build_bias(cs.pos_bytes, cs.neg_bytes, cs.k, cs.log_q, in_batch, bias);
    double const inf = std::numeric_limits<double>::infinity();
    // Sampled block: row 0 hits negative 1; rows 1 and 3 hit negative 3; everything else is -log Q.
    for (std::int64_t i = 0; i < cs.m; ++i) {
      CHECK(bias[std::size_t(i * c)] == 0.0);
      for (std::int64_t j = 0; j < cs.kn; ++j) {
        bool hit = (i == 0 && j == 1) || ((i == 1 || i == 3) && j == 3);
        CHECK(bias[std::size_t(i * c + 1 + j)] == (hit ? -inf : -cs.log_q[std::size_t(j)]));
      }
      if (in_batch)
        for (std::int64_t j = 0; j < cs.m; ++j) {
          bool hit = i == j || ((i == 1 || i == 3) && (j == 1 || j == 3));
          CHECK(bias[std::size_t(i * c + 1 + cs.kn + j)] == (hit ? -inf : 0.0));
        }
    }
    CHECK(hits == (in_batch ? 3 + 5 + 2 : 3));
  }
  // A masked negative gets exactly zero gradient when it is masked for every row.
  Case one;
  one.m = 2;
  one.pos_bytes = {1, 2, 1, 2};
  one.kn = 2;
  one.neg_bytes = {1, 2, 7, 7};
  one.log_q = {0.1, 0.2};
  Tensor<double, cpu> p = test::random_tensor<double>(Shape{2, 3}, 1), pos = test::random_tensor<double>(Shape{2, 3}, 2),
                      neg = test::random_tensor<double>(Shape{2, 3}, 3);
  Tensor<double, cpu> bias(Shape{2, 3});
  Loss::build_bias(one.pos_bytes, one.neg_bytes, 2, one.log_q, false, {bias.data(), 6});
  Loss loss({1.0, false});
  cpu::Context ctx;
  Workspace<cpu> ws(loss.forward_workspace(2, 2, false));
  auto a = ws.arena();
  Loss::Saved sv;
  double l = loss.forward(ctx, p.cview(), pos.cview(), neg.cview(), bias.cview(), false, sv, a);
  CHECK(std::isfinite(l));
  CHECK(a.used() == loss.forward_workspace(2, 2, false));
  Tensor<double, cpu> dp(Shape{2, 3}), dpos(Shape{2, 3}), dneg(Shape{2, 3});
  loss.backward(ctx, sv, dp.view(), dpos.view(), dneg.view(), a);
  for (std::int64_t i = 0; i < 3; ++i) CHECK(dneg.data()[i] == 0.0);  // negative 0 equals both positives
  double norm1 = 0;
  for (std::int64_t i = 3; i < 6; ++i) norm1 += std::abs(dneg.data()[i]);
  CHECK(norm1 > 0);
}

TEST_CASE("iem loss: the value equals the naive sampled-softmax formula (log-Q correction, in-batch, tau)") {
  Case cs;
  cpu::Context ctx;
  auto p = test::random_tensor<double>(Shape{cs.m, cs.d}, 11), pos = test::random_tensor<double>(Shape{cs.m, cs.d}, 12),
       neg = test::random_tensor<double>(Shape{cs.kn, cs.d}, 13);
  for (bool in_batch : {false, true})
    for (bool learn : {false, true}) {
      CAPTURE(in_batch);
      CAPTURE(learn);
      Loss loss({0.5, learn});
      nn::ParamStore<cpu, double> ps(loss);
      double tau = 0.5;
      if (learn) {
        ps.find("log_tau_ratio").value[0] = 0.3;  // tau = 0.5 e^0.3
        tau = 0.5 * std::exp(0.3);
      }
      CHECK(loss.tau(ctx) == doctest::Approx(tau).epsilon(1e-15));
      std::int64_t c = Loss::columns(cs.m, cs.kn, in_batch);
      Tensor<double, cpu> bias(Shape{cs.m, c});
      Loss::build_bias(cs.pos_bytes, cs.neg_bytes, cs.k, cs.log_q, in_batch, {bias.data(), std::size_t(cs.m * c)});
      Workspace<cpu> ws(loss.forward_workspace(cs.m, cs.kn, in_batch));
      auto a = ws.arena();
      Loss::Saved sv;
      double got = loss.forward(ctx, p.cview(), pos.cview(), neg.cview(), bias.cview(), in_batch, sv, a);
      CHECK(got == doctest::Approx(naive_loss(cs, p, pos, neg, tau, in_batch)).epsilon(1e-13));
      // Without the correction the value differs (the test would notice a dropped log Q).
      std::vector<double> zero_q(cs.log_q.size(), 0.0);
      Loss::build_bias(cs.pos_bytes, cs.neg_bytes, cs.k, zero_q, in_batch, {bias.data(), std::size_t(cs.m * c)});
      auto a2 = ws.arena();
      double uncorrected = loss.forward(ctx, p.cview(), pos.cview(), neg.cview(), bias.cview(), in_batch, sv, a2);
      CHECK(std::abs(uncorrected - got) > 1e-3);
    }
  // In-batch only (no sampled negatives) works; no negatives at all is refused.
  Loss loss({1.0, false});
  Tensor<double, cpu> bias(Shape{cs.m, 1 + cs.m});
  std::vector<double> no_q;
  std::vector<std::int32_t> no_bytes;
  Loss::build_bias(cs.pos_bytes, no_bytes, cs.k, no_q, true, {bias.data(), std::size_t(cs.m * (1 + cs.m))});
  Workspace<cpu> ws(loss.forward_workspace(cs.m, 0, true));
  auto a = ws.arena();
  Loss::Saved sv;
  Case none = cs;
  none.kn = 0;
  none.neg_bytes.clear();
  none.log_q.clear();
  CHECK(loss.forward(ctx, p.cview(), pos.cview(), {}, bias.cview(), true, sv, a) ==
        doctest::Approx(naive_loss(none, p, pos, neg, 1.0, true)).epsilon(1e-13));
  auto a2 = ws.arena();
  CHECK_THROWS_WITH_AS(loss.forward(ctx, p.cview(), pos.cview(), {}, bias.cview(), false, sv, a2),
                       doctest::Contains("no negatives"), Error);
}

TEST_CASE("gradcheck: iem loss (p, positives, negatives, learned temperature; sampled and in-batch)") {
  Case cs;
  for (bool in_batch : {false, true}) {
    CAPTURE(in_batch);
    cpu::Context ctx;
    Loss loss({0.8, true});
    nn::ParamStore<cpu, double> ps(loss);
    test::randomize_params(ps, 3, 0.3);
    auto p = test::random_tensor<double>(Shape{cs.m, cs.d}, 21), pos = test::random_tensor<double>(Shape{cs.m, cs.d}, 22),
         neg = test::random_tensor<double>(Shape{cs.kn, cs.d}, 23);
    Tensor<double, cpu> dp(p.shape()), dpos(pos.shape()), dneg(neg.shape());
    std::int64_t c = Loss::columns(cs.m, cs.kn, in_batch);
    Tensor<double, cpu> bias(Shape{cs.m, c});
    Loss::build_bias(cs.pos_bytes, cs.neg_bytes, cs.k, cs.log_q, in_batch, {bias.data(), std::size_t(cs.m * c)});
    std::size_t plan = loss.forward_workspace(cs.m, cs.kn, in_batch) + loss.backward_workspace(cs.m, cs.kn, in_batch);
    Workspace<cpu> ws(plan);
    Loss::Saved sv;
    auto fwd = [&] {
      auto a = ws.arena();
      return loss.forward(ctx, p.cview(), pos.cview(), neg.cview(), bias.cview(), in_batch, sv, a);
    };
    auto grads = [&] {
      auto a = ws.arena();
      loss.forward(ctx, p.cview(), pos.cview(), neg.cview(), bias.cview(), in_batch, sv, a);
      loss.backward(ctx, sv, dp.view(), dpos.view(), dneg.view(), a);
      CHECK(a.high_water() <= plan);
    };
    test::GradCheck(ps)
        .input("p", p.view(), dp.view())
        .input("pos", pos.view(), dpos.view())
        .input("neg", neg.view(), dneg.view())
        .run(fwd, grads);
  }
}

TEST_CASE("segment proposal: counts every window, sorted segments, log-probabilities, seeded draws") {
  std::string text = "abcabcabd";  // windows of 3: abc bca cab abc bca cab abd  (7)
  hier::SegmentProposal q(text, 3);
  CHECK(q.segment_size() == 3);
  CHECK(q.total() == 7);
  REQUIRE(q.size() == 4);  // abc abd bca cab, sorted
  std::vector<std::string> segs;
  for (std::int64_t i = 0; i < q.size(); ++i) {
    auto s = q.segment(i);
    segs.emplace_back(s.begin(), s.end());
  }
  CHECK(segs == std::vector<std::string>{"abc", "abd", "bca", "cab"});
  CHECK(q.count(0) == 2);
  CHECK(q.count(1) == 1);
  CHECK(q.log_prob(1) == doctest::Approx(std::log(1.0 / 7.0)).epsilon(1e-15));
  std::vector<std::int32_t> cab{'c', 'a', 'b'}, zzz{'z', 'z', 'z'};
  CHECK(q.find(cab) == 3);
  CHECK(q.find(zzz) == -1);
  // Draw frequencies follow q; the same (seed, stream) draws the same, another stream differs.
  std::vector<std::int64_t> draws(70000), again(70000), other(70000);
  q.draw(5, 9, draws);
  q.draw(5, 9, again);
  q.draw(5, 10, other);
  CHECK(draws == again);
  CHECK(draws != other);
  std::map<std::int64_t, double> freq;
  for (auto i : draws) freq[i] += 1.0 / 70000;
  for (std::int64_t i = 0; i < 4; ++i) CHECK(freq[i] == doctest::Approx(double(q.count(i)) / 7).epsilon(0.03));
  CHECK_THROWS_WITH_AS(hier::SegmentProposal("ab", 3), doctest::Contains("hold no segment of 3"), Error);
}

TEST_CASE("segment proposal over delimited segments: counts the segments, variable lengths, find, draws") {
  // Lines (MaxLen 4): "ab\n" "c\n" "ab\n" "abcd" "e\n" "c\n" "x" (the last one cut by the end)
  std::string text = "ab\nc\nab\nabcde\nc\nx";
  hier::SegmentProposal q(text, hier::Delimited<4>("\n"));
  CHECK(q.variable());
  CHECK(q.segment_size() == 0);
  CHECK(q.max_length() == 4);
  CHECK(q.delimiter() == "\n");
  CHECK(q.total() == 7);
  REQUIRE(q.size() == 5);
  std::vector<std::string> segs;
  for (std::int64_t i = 0; i < q.size(); ++i) {
    auto s = q.segment(i);
    segs.emplace_back(s.begin(), s.end());
  }
  CHECK(segs == std::vector<std::string>{"ab\n", "abcd", "c\n", "e\n", "x"});  // sorted ("\n" < letters)
  CHECK(q.count(0) == 2);
  CHECK(q.count(2) == 2);
  CHECK(q.log_prob(3) == doctest::Approx(std::log(1.0 / 7.0)).epsilon(1e-15));
  std::vector<std::int32_t> c_nl{'c', '\n'}, ab{'a', 'b'}, abcd{'a', 'b', 'c', 'd'}, abcde{'a', 'b', 'c', 'd', 'e'};
  CHECK(q.find(c_nl) == 2);
  CHECK(q.find(abcd) == 1);
  CHECK(q.find(ab) == -1);     // a prefix of "ab\n" is another segment
  CHECK(q.find(abcde) == -1);  // longer than every segment
  std::vector<std::int64_t> draws(70000);
  q.draw(5, 9, draws);
  std::map<std::int64_t, double> freq;
  for (auto i : draws) freq[i] += 1.0 / 70000;
  for (std::int64_t i = 0; i < 5; ++i) CHECK(freq[i] == doctest::Approx(double(q.count(i)) / 7).epsilon(0.03));
  // A fixed-size proposal is not variable.
  CHECK(!hier::SegmentProposal("abcd", 2).variable());
  CHECK(hier::SegmentProposal("abcd", 2).max_length() == 2);
  CHECK_THROWS_WITH_AS(hier::SegmentProposal("", hier::Delimited<4>("\n")), doctest::Contains("no bytes"), Error);
}

TEST_CASE("iem loss: the bias of variable-length segments (hits: equal length and bytes)") {
  // Positives: "ab", "a", "ab"; negatives: "a" (log q -1), "abc" (-2), "ab" (-3).
  std::vector<std::int32_t> pos{1, 2, 1, 1, 2}, neg{1, 1, 2, 3, 1, 2};
  std::vector<std::int64_t> pos_off{0, 2, 3, 5}, neg_off{0, 1, 4, 6};
  std::vector<double> log_q{-1, -2, -3};
  std::vector<double> bias(3 * (1 + 3 + 3));
  using Loss = hier::IemLoss<cpu, double>;
  std::int64_t hits = Loss::build_bias(pos, pos_off, neg, neg_off, log_q, true, bias);
  double const x = -std::numeric_limits<double>::infinity();
  CHECK(bias == std::vector<double>{0, 1, 2, x, x, 0, x,    // "ab": hits "ab" (negative 2, positives 0 and 2)
                                    0, x, 2, 3, 0, x, 0,    // "a": hits "a" (negative 0, itself)
                                    0, 1, 2, x, x, 0, x});  // "ab"
  CHECK(hits == 8);
  std::vector<double> small(3 * 4);
  CHECK_THROWS_WITH_AS(Loss::build_bias(pos, pos_off, neg, neg_off, log_q, true, small),
                       doctest::Contains("[3, 7] needed"), Error);
}

}  // namespace HSEQ_TEST_UNIT
