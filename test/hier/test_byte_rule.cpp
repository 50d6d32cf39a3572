// SPDX-License-Identifier: MIT
// hier::ByteRule: the emits of hand-made strings for every kind (SpaceByte's spacelike rule with
// UTF-8, AU-Net's word pooling, fixed factors, forced emits at position 0 and at max_len), the
// streaming properties (a prefix is segmented as the prefix of the whole; a change at t moves no
// emit before t, and does move later ones), spec strings and their errors.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "hseq/core/error.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/hier/byte_rule.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using hier::ByteRule;

namespace {
using Positions = std::vector<std::int64_t>;

/// The emit positions of a rule over a byte string (as bytes 0..255).
Positions emits(ByteRule const& r, std::string const& s) {
  ByteRule::State st = r.start();
  Positions out;
  for (std::size_t t = 0; t < s.size(); ++t)
    if (r.step(st, std::int32_t(static_cast<unsigned char>(s[t])))) out.push_back(std::int64_t(t));
  return out;
}
Positions emits(std::string const& spec, std::string const& s) { return emits(ByteRule::parse(spec), s); }

/// The emits of a score-reading rule over the scores p (the bytes are all 'a').
Positions scored_emits(std::string const& spec, std::vector<double> const& p) {
  ByteRule const r = ByteRule::parse(spec);
  ByteRule::State st = r.start();
  Positions out;
  for (std::size_t t = 0; t < p.size(); ++t)
    if (r.step(st, 'a', p[t])) out.push_back(std::int64_t(t));
  return out;
}

/// A random string over an alphabet that exercises every rule (letters, digits, spaces, newlines,
/// punctuation, UTF-8 lead and continuation bytes).
std::string random_text(Rng& rng, std::size_t n) {
  static std::string const alphabet = std::string("abcXYZ019  \n\t.,;:'-") + "\xC3\xA9\xE2\x80\x94";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s += alphabet[std::size_t(rng.below(alphabet.size()))];
  return s;
}
}  // namespace

TEST_CASE("byte_rule: spacelike (SpaceByte): the first spacelike byte after a non-spacelike one emits") {
  // H e l l o ,   w o r l d .   H i
  // 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
  CHECK(emits("space", "Hello, world. Hi") == Positions{0, 5, 12});
  CHECK(emits("space", "  a b") == Positions{0, 3});  // position 0 always emits; a leading run emits nothing more
  CHECK(emits("space", "abc") == Positions{0});
  CHECK(emits("space", "a1_b2") == Positions{0, 2});  // '_' is spacelike, digits are not
  // UTF-8: a lead byte (0xC3) is spacelike, a continuation byte (0xA9) is not: "café bar".
  CHECK(emits("space", "caf\xC3\xA9 bar") == Positions{0, 3, 5});
  CHECK(hier::spacelike_byte(' '));
  CHECK(hier::spacelike_byte('\n'));
  CHECK(hier::spacelike_byte(0xE2));
  CHECK(!hier::spacelike_byte('q'));
  CHECK(!hier::spacelike_byte('7'));
  CHECK(!hier::spacelike_byte(0x80));
  CHECK(!hier::spacelike_byte(300));  // ids outside a byte vocabulary
}

TEST_CASE("byte_rule: word pooling (AU-Net): the whitespace after every N-th word emits") {
  // i n   t h e   b e g i n n i n g ,   G o d
  // 0 1 2 3 4 5 6 7 ...             16 17
  std::string const s = "in the beginning, God";
  CHECK(emits("word", s) == Positions{0, 2, 6, 17});
  CHECK(emits("word:2", s) == Positions{0, 6});
  CHECK(emits("word:3", s) == Positions{0, 17});
  CHECK(emits("word", "a  b\n\nc") == Positions{0, 1, 4});  // a run of whitespace ends one word once
  CHECK(emits("word", " a") == Positions{0});              // leading whitespace ends no word
}

TEST_CASE("byte_rule: fixed factors and forced emits at max_len") {
  CHECK(emits("fixed:3", "abcdefgh") == Positions{0, 3, 6});
  CHECK(emits("fixed:1", "abc") == Positions{0, 1, 2});
  CHECK(emits("space/4", "abcdefghij") == Positions{0, 4, 8});    // segments (e_{j-1}, e_j] of 4 positions
  CHECK(emits("space/4", "ab cdefghij") == Positions{0, 2, 6, 10});  // a natural emit restarts the count
  CHECK(emits("word/3", "abcdefg h") == Positions{0, 3, 6, 7});  // forced at 3 and 6, then a word end
  CHECK(emits("fixed:3/2", "abcdefg") == Positions{0, 2, 3, 5, 6});    // max_len below the factor cuts it
  CHECK(emits("space/1", "abc") == Positions{0, 1, 2});
}

TEST_CASE("byte_rule: streaming: prefixes, causality by perturbation, information flows forward") {
  Rng rng(2024);
  for (std::string spec : {"space", "space/6", "word", "word:2", "word:3/9", "fixed:4", "fixed:3/2"}) {
    CAPTURE(spec);
    ByteRule r = ByteRule::parse(spec);
    bool moved_later = false;
    for (int trial = 0; trial < 40; ++trial) {
      std::string s = random_text(rng, 64);
      Positions all = emits(r, s);
      // A prefix's emits are the whole string's emits inside the prefix.
      for (std::size_t n = 0; n <= s.size(); n += 7) {
        Positions want;
        for (auto e : all)
          if (e < std::int64_t(n)) want.push_back(e);
        CHECK(emits(r, s.substr(0, n)) == want);
      }
      // Changing the suffix from t on leaves every emit before t as it was.
      std::size_t t = 1 + std::size_t(rng.below(s.size() - 1));
      std::string u = s.substr(0, t) + random_text(rng, s.size() - t);
      Positions other = emits(r, u);
      Positions a, b;
      for (auto e : all)
        if (e < std::int64_t(t)) a.push_back(e);
      for (auto e : other)
        if (e < std::int64_t(t)) b.push_back(e);
      CHECK(a == b);
      if (other != all) moved_later = true;
      CHECK(r.max_emits(std::int64_t(s.size())) >= std::int64_t(all.size()));
    }
    // The rule does read the bytes: some perturbation moved a later emit (fixed factors never do).
    CHECK(moved_later == (r.kind != ByteRule::Kind::kFixed));
  }
}

TEST_CASE("byte_rule: spec strings round-trip; bad ones are refused with the reason") {
  for (std::string spec : {"fixed:4", "space", "space/16", "word", "word:2", "word:2/32", "fixed:2/3"})
    CHECK(ByteRule::parse(spec).to_string() == spec);
  CHECK(ByteRule::parse("word:1").to_string() == "word");
  CHECK(ByteRule::parse("space/8") == ByteRule{ByteRule::Kind::kSpace, 1, 8});
  CHECK_THROWS_WITH_AS(ByteRule::parse("spaces"), doctest::Contains("unknown kind 'spaces'"), Error);
  CHECK_THROWS_WITH_AS(ByteRule::parse("fixed"), doctest::Contains("fixed needs its factor"), Error);
  CHECK_THROWS_WITH_AS(ByteRule::parse("fixed:0"), doctest::Contains("the factor must be at least 1"), Error);
  CHECK_THROWS_WITH_AS(ByteRule::parse("fixed:x"), doctest::Contains("the factor 'x' is not an integer"), Error);
  CHECK_THROWS_WITH_AS(ByteRule::parse("space:2"), doctest::Contains("space takes no argument"), Error);
  CHECK_THROWS_WITH_AS(ByteRule::parse("word:0"), doctest::Contains("at least 1"), Error);
  CHECK_THROWS_WITH_AS(ByteRule::parse("space/0"), doctest::Contains("the longest segment must be"), Error);
  CHECK_THROWS_WITH_AS(ByteRule::parse("space/"), doctest::Contains("is not an integer"), Error);
  CHECK(ByteRule::parse("fixed:4").max_emits(9) == 3);
  CHECK(ByteRule::parse("space").max_emits(9) == 9);
  CHECK(ByteRule::parse("space").max_emits(0) == 0);
}

TEST_CASE("byte_rule: entropy (BLT): the global threshold and the monotonic rise, on scores per position") {
  // Scores H_t of a made-up LM; t emits when H_t > 1.5 (global) / H_t - H_{t-1} > 0.5 (rise), and at 0.
  std::vector<double> h{2.0, 0.5, 0.7, 1.6, 1.4, 2.5, 0.1, 0.2, 3.0};
  CHECK(scored_emits("entropy:1.5", h) == Positions{0, 3, 5, 8});
  CHECK(scored_emits("entropy_rise:0.5", h) == Positions{0, 3, 5, 8});
  CHECK(scored_emits("entropy_rise:1", h) == Positions{0, 5, 8});
  CHECK(scored_emits("entropy:1.5/2", h) == Positions{0, 2, 3, 5, 7, 8});  // forced at 2 and 7
  CHECK(scored_emits("entropy:-1", h) == Positions{0, 1, 2, 3, 4, 5, 6, 7, 8});
  // The bytes do not matter to them; the scores do not matter to the byte rules.
  CHECK(ByteRule::parse("entropy:1").needs_scores());
  CHECK(ByteRule::parse("entropy_rise:0").needs_scores());
  CHECK_FALSE(ByteRule::parse("space").needs_scores());
  CHECK(scored_emits("fixed:3", h) == Positions{0, 3, 6});
  CHECK(ByteRule::parse("entropy:1").max_emits(9) == 9);
  // Thresholds round-trip exactly (BLT's default θ among them); bad ones are refused.
  for (std::string spec : {"entropy:1.335442066192627", "entropy_rise:0.25/16", "entropy:-0.5", "entropy:3"})
    CHECK(ByteRule::parse(spec).to_string() == spec);
  CHECK(ByteRule::parse("entropy:1.335442066192627").threshold == 1.335442066192627);
  CHECK_THROWS_WITH_AS(ByteRule::parse("entropy"), doctest::Contains("needs its threshold"), Error);
  CHECK_THROWS_WITH_AS(ByteRule::parse("entropy:x"), doctest::Contains("not a finite number"), Error);
  CHECK_THROWS_WITH_AS(ByteRule::parse("entropy:inf"), doctest::Contains("not a finite number"), Error);
}

TEST_CASE("byte_rule: router (H-Net): t emits when its boundary probability p_t > 1/2; N is the ratio target") {
  std::vector<double> p{0.2, 0.7, 0.5, 0.51, 0.1, 0.3, 0.9, 0.4};
  CHECK(scored_emits("router:6", p) == Positions{0, 1, 3, 6});  // 0.5 itself does not emit
  CHECK(scored_emits("router:6/2", p) == Positions{0, 1, 3, 5, 6});  // forced at 5
  ByteRule r = ByteRule::parse("router:5.4/32");
  CHECK(r.learned());
  CHECK(r.needs_scores());
  CHECK_FALSE(r.reads_entropy());
  CHECK(r.ratio == 5.4);
  CHECK(r.to_string() == "router:5.4/32");
  CHECK(ByteRule::parse("entropy:1").reads_entropy());
  CHECK_FALSE(ByteRule::parse("entropy:1").learned());
  CHECK(r.max_emits(9) == 9);
  CHECK_THROWS_WITH_AS(ByteRule::parse("router"), doctest::Contains("router needs its target"), Error);
  CHECK_THROWS_WITH_AS(ByteRule::parse("router:0.5"), doctest::Contains("must exceed 1"), Error);
  CHECK_THROWS_WITH_AS(ByteRule::parse("router:nan"), doctest::Contains("not a finite number"), Error);
  CHECK_THROWS_WITH_AS(ByteRule::parse("routr:3"), doctest::Contains("router:N"), Error);
}

TEST_CASE("byte_rule: mlp (Dynamic Token Pooling's predictor) thresholds its p_t at 1/2 as router does") {
  std::vector<double> p{0.2, 0.7, 0.5, 0.51, 0.1, 0.3, 0.9, 0.4};
  CHECK(scored_emits("mlp:6", p) == Positions{0, 1, 3, 6});
  CHECK(scored_emits("mlp:6/2", p) == Positions{0, 1, 3, 5, 6});
  ByteRule r = ByteRule::parse("mlp:4.5/16");
  CHECK(r.kind == ByteRule::Kind::kMlp);
  CHECK(r.learned());
  CHECK(r.needs_scores());
  CHECK_FALSE(r.reads_entropy());
  CHECK(r.ratio == 4.5);
  CHECK(r.to_string() == "mlp:4.5/16");
  CHECK(ByteRule::parse(r.to_string()) == r);
  CHECK(r != ByteRule::parse("router:4.5/16"));
  CHECK_THROWS_WITH_AS(ByteRule::parse("mlp"), doctest::Contains("mlp needs its target"), Error);
  CHECK_THROWS_WITH_AS(ByteRule::parse("mlp:1"), doctest::Contains("must exceed 1"), Error);
}

}  // namespace HSEQ_TEST_UNIT
