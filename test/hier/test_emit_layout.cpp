// SPDX-License-Identifier: MIT
// hier::EmitLayout / compute_emits: emits and J(t) against a brute-force definition, rows of a
// batch independent of each other (batch-composition invariance), short rows and padding, the
// capacity (dropped emits keep the layout causal), nested levels over the enclosing emits (word
// pairs = "fixed:2" over words), and no reallocation after the first call.
#include <doctest/doctest.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "hseq/core/error.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/hier/emit_layout.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using hier::ByteRule;
using hier::EmitLayout;

namespace {
using Ints = std::vector<std::int32_t>;

Ints bytes_of(std::string const& s) {
  Ints v;
  for (char c : s) v.push_back(std::int32_t(static_cast<unsigned char>(c)));
  return v;
}
std::string random_text(Rng& rng, std::size_t n) {
  static std::string const alphabet = "abcdefXY01   \n.,";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s += alphabet[std::size_t(rng.below(alphabet.size()))];
  return s;
}
/// A row's emits straight from the rule (the definition the layout must follow).
Ints rule_emits(ByteRule const& r, std::span<std::int32_t const> row) {
  ByteRule::State s = r.start();
  Ints e;
  for (std::size_t t = 0; t < row.size(); ++t)
    if (r.step(s, row[t])) e.push_back(std::int32_t(t));
  return e;
}
Ints row_emits(EmitLayout const& lay, std::int64_t b) {
  Ints e;
  for (std::int64_t j = 0; j < lay.count[std::size_t(b)]; ++j) e.push_back(lay.emit_at(b, j));
  return e;
}
Ints row_seg_of(EmitLayout const& lay, std::int64_t b, std::int64_t len) {
  Ints s;
  for (std::int64_t t = 0; t < len; ++t) s.push_back(lay.segment_of(b, t));
  return s;
}
}  // namespace

TEST_CASE("emit_layout: a hand-made batch (spacelike): emits, J(t), counts and padding") {
  std::string const r0 = "ab cd. ef", r1 = "abcdefghi";  // emits {0, 2, 5} and {0}
  Ints ids = bytes_of(r0 + r1);
  EmitLayout lay;
  hier::compute_emits(ByteRule::parse("space"), ids, 2, 9, {}, 0, lay);
  CHECK(lay.count == Ints{3, 1});
  CHECK(lay.segments == 3);
  CHECK(lay.capacity == 9);  // the worst case of "space": every position
  CHECK(lay.dropped == 0);
  CHECK(lay.emit == Ints{0, 2, 5, /*row 1*/ 0, 8, 8});  // padding emits: the row's last position
  CHECK(lay.seg_of == Ints{0, 0, 1, 1, 1, 2, 2, 2, 2, /*row 1*/ 0, 0, 0, 0, 0, 0, 0, 0, 0});
}

TEST_CASE("emit_layout: J(t) = max{j : e_j <= t} for every rule; rows do not depend on their batch") {
  Rng rng(7);
  std::int64_t const n = 48, batch = 3;
  for (std::string spec : {"space", "space/5", "word", "word:2", "fixed:4", "fixed:3/2"}) {
    CAPTURE(spec);
    ByteRule r = ByteRule::parse(spec);
    std::string text;
    for (std::int64_t b = 0; b < batch; ++b) text += random_text(rng, std::size_t(n));
    Ints ids = bytes_of(text);
    EmitLayout lay;
    hier::compute_emits(r, ids, batch, n, {}, 0, lay);
    for (std::int64_t b = 0; b < batch; ++b) {
      std::span<std::int32_t const> row(ids.data() + b * n, std::size_t(n));
      Ints e = rule_emits(r, row);
      CHECK(row_emits(lay, b) == e);
      for (std::int64_t t = 0; t < n; ++t) {
        std::int32_t want = -1;
        for (std::size_t j = 0; j < e.size(); ++j)
          if (e[j] <= t) want = std::int32_t(j);
        CHECK(lay.segment_of(b, t) == want);
      }
      // The same row alone gives the same layout.
      EmitLayout alone;
      hier::compute_emits(r, row, 1, n, {}, 0, alone);
      CHECK(row_emits(alone, 0) == e);
      CHECK(row_seg_of(alone, 0, n) == row_seg_of(lay, b, n));
    }
  }
}

TEST_CASE("emit_layout: short rows: padding positions read the row's last segment, never past it") {
  Ints ids = bytes_of("a b c d " "xy zw    ");  // two rows of 8 (the second one's last byte unused)
  ids.resize(16);
  Ints len{8, 5};
  EmitLayout lay;
  hier::compute_emits(ByteRule::parse("word"), ids, 2, 8, len, 0, lay);
  CHECK(row_emits(lay, 0) == Ints{0, 1, 3, 5, 7});
  CHECK(row_emits(lay, 1) == Ints{0, 2});
  CHECK(row_seg_of(lay, 1, 8) == Ints{0, 0, 1, 1, 1, 1, 1, 1});
  for (std::int64_t j = 2; j < lay.segments; ++j) CHECK(lay.emit_at(1, j) == 4);  // the last real position
  Ints bad{9, 1};
  CHECK_THROWS_WITH_AS(hier::compute_emits(ByteRule::parse("word"), ids, 2, 8, bad, 0, lay),
                       doctest::Contains("row 0 has length 9 of 8"), Error);
  CHECK_THROWS_WITH_AS(hier::compute_emits(ByteRule::parse("word"), ids, 3, 8, {}, 0, lay),
                       doctest::Contains("16 tokens for a batch of 3 rows of 8"), Error);
}

TEST_CASE("emit_layout: a full row drops later emits; its last segment grows and earlier ones stay") {
  Ints ids = bytes_of("a b c d e f");
  EmitLayout full, capped;
  hier::compute_emits(ByteRule::parse("word"), ids, 1, 11, {}, 0, full);
  hier::compute_emits(ByteRule::parse("word"), ids, 1, 11, {}, 3, capped);
  CHECK(row_emits(full, 0) == Ints{0, 1, 3, 5, 7, 9});
  CHECK(row_emits(capped, 0) == Ints{0, 1, 3});
  CHECK(capped.dropped == 3);
  CHECK(capped.segments == 3);
  CHECK(row_seg_of(capped, 0, 11) == Ints{0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2});
}

TEST_CASE("emit_layout: a nested level reads the enclosing emits: fixed:2 over words is word:2") {
  Rng rng(11);
  std::int64_t const n = 64, batch = 4;
  std::string text;
  for (std::int64_t b = 0; b < batch; ++b) text += random_text(rng, std::size_t(n));
  Ints ids = bytes_of(text);
  EmitLayout words, pairs, direct;
  hier::compute_emits(ByteRule::parse("word"), ids, batch, n, {}, 0, words);
  Ints at_emits;
  hier::gather_emitted(ids, words, at_emits);
  hier::compute_emits(ByteRule::parse("fixed:2"), at_emits, batch, words.segments, words.count, 0, pairs);
  hier::compute_emits(ByteRule::parse("word:2"), ids, batch, n, {}, 0, direct);
  for (std::int64_t b = 0; b < batch; ++b) {
    CAPTURE(b);
    Ints mapped;  // the pair level's emits as byte positions
    for (std::int32_t j : row_emits(pairs, b)) mapped.push_back(words.emit_at(b, j));
    CHECK(mapped == row_emits(direct, b));
  }
}

TEST_CASE("emit_layout: later calls of the same or smaller size reuse the storage") {
  Ints ids = bytes_of("one two three four five six seven eight");
  std::int64_t n = std::int64_t(ids.size());
  EmitLayout lay;
  hier::compute_emits(ByteRule::parse("space"), ids, 1, n, {}, 0, lay);
  auto const* seg = lay.seg_of.data();
  auto const* em = lay.emit.data();
  hier::compute_emits(ByteRule::parse("word:3"), std::span<std::int32_t const>(ids).first(20), 1, 20, {}, 0, lay);
  CHECK(lay.seg_of.data() == seg);
  CHECK(lay.emit.data() == em);
  CHECK(row_emits(lay, 0) == Ints{0, 13});
}

TEST_CASE("emit_layout: entropy rules read a score per position, row by row") {
  hier::ByteRule r = hier::ByteRule::parse("entropy:1");
  std::vector<std::int32_t> tokens(8, 'a');
  std::vector<double> scores{0, 2, 0, 0, 0, 0, 3, 0};  // row 0: 0 1 | row 1: 0 2
  hier::EmitLayout lay;
  hier::compute_emits(r, tokens, 2, 4, {}, 0, lay, scores);
  CHECK(lay.count == std::vector<std::int32_t>{2, 2});
  CHECK(lay.emit_at(0, 1) == 1);
  CHECK(lay.emit_at(1, 1) == 2);
  CHECK_THROWS_WITH_AS(hier::compute_emits(r, tokens, 2, 4, {}, 0, lay), doctest::Contains("needs a score per position"),
                       Error);
}

}  // namespace HSEQ_TEST_UNIT
