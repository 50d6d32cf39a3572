// SPDX-License-Identifier: MIT
/// @file
/// @brief `ByteRule`: the rule-based, data-dependent boundaries of a shortening level (issue 19,
/// spec segmentation.md §1–§3): which positions of a sequence *emit*, i.e. close a segment whose
/// summary the inner level then reads from that position on (the inclusive rule: position t reads
/// segment J(t) = max{j : e_j <= t}). Kinds, all streaming (the decision at t reads x_{<=t} only,
/// through a small `State`, so a prefix is segmented as the prefix of the whole and cached
/// generation makes the same decisions byte by byte):
///
///   "fixed:K"  e_j = j K (the Hourglass's fixed factor through the data-dependent path)
///   "space"    SpaceByte's rule: t emits when x_t is spacelike and x_{t-1} is not; spacelike means
///              not [0-9A-Za-z] and not a UTF-8 continuation byte (0x80-0xBF)
///   "word:N"   AU-Net's word pooling `(\S+?\s){N}`: the whitespace byte right after every N-th word
///              (a whitespace byte whose predecessor is not whitespace); "word" is "word:1"
///   "entropy:θ"       BLT's global threshold: t emits when the score H_t > θ, H_t the entropy (nats)
///                     of a byte LM's prediction of x_{t+1} from x_{<=t} (the next patch starts at t + 1)
///   "entropy_rise:θ"  BLT's monotonic rule: t emits when H_t - H_{t-1} > θ
///   "router:N"        H-Net's learned router (hier/cosine_router.hpp): t emits when the score
///                     p_t > 1/2, p_t the router's boundary probability from the level's hidden
///                     states at t - 1 and t; N (> 1) is the target positions per segment of its
///                     ratio loss
///   "mlp:N"           Dynamic Token Pooling's boundary predictor (hier/mlp_router.hpp): t emits
///                     when p_t = σ(MLP(x_t)) > 1/2; N as for router
///
/// The entropy and router kinds read a score per position (`needs_scores()`), which the caller
/// computes: from a frozen byte LM (`reads_entropy()`), or from the level's own router
/// (`learned()`: router and mlp), models/hourglass.hpp; the other kinds ignore it.
/// Every kind also emits at t = 0 (so J(t) >= 0 everywhere and no null summary is needed, as BOS in
/// AU-Net and SpaceByte, p_0 = 1 in H-Net) and, with `max_len` > 0, whenever a segment would
/// otherwise grow past max_len positions (a forced emit that bounds the segments: "space/16").
/// A nested level applies its rule to the enclosing level's emits: position j of that sequence
/// stands for the token at the enclosing emit e_j (see emit_layout.hpp), so "fixed:2" inside a
/// "word" level pools word pairs.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "hseq/core/error.hpp"

namespace hseq::hier {

/// Whether a byte is spacelike in SpaceByte's sense (not a letter or digit, not a UTF-8
/// continuation byte). Values outside 0..255 (ids of a larger vocabulary) count as not spacelike.
constexpr bool spacelike_byte(std::int32_t b) {
  if (b < 0 || b > 255) return false;
  bool alnum = (b >= '0' && b <= '9') || (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z');
  bool continuation = b >= 0x80 && b <= 0xBF;
  return !alnum && !continuation;
}
/// Whether a byte is ASCII whitespace (`\s` of the regex engines: space, \t, \n, \v, \f, \r).
constexpr bool whitespace_byte(std::int32_t b) { return b == ' ' || (b >= '\t' && b <= '\r'); }

struct ByteRule {
  enum class Kind { kFixed, kSpace, kWord, kEntropy, kEntropyRise, kRouter, kMlp };
  Kind kind = Kind::kFixed;
  std::int64_t n = 2;        ///< fixed: the factor K; word: words per segment N; others: unused (1)
  std::int64_t max_len = 0;  ///< the longest segment in positions (0: unbounded)
  double threshold = 0.0;    ///< entropy kinds: θ (nats); router, mlp: 1/2 (p_t > 1/2 emits)
  double ratio = 0.0;        ///< router, mlp: N, the target positions per segment of the ratio loss

  /// Whether `step` reads a score per position (the entropy and router kinds).
  constexpr bool needs_scores() const { return reads_entropy() || learned(); }
  /// Whether the scores are a byte LM's next-byte entropies (the entropy kinds).
  constexpr bool reads_entropy() const { return kind == Kind::kEntropy || kind == Kind::kEntropyRise; }
  /// Whether the scores are a learned router's boundary probabilities (kinds router and mlp).
  constexpr bool learned() const { return kind == Kind::kRouter || kind == Kind::kMlp; }

  /// The decision's memory of the positions before t.
  struct State {
    std::int64_t pos = 0;    ///< positions consumed
    std::int64_t since = 0;  ///< positions since the newest emit (1 right after it)
    std::int64_t words = 0;  ///< word ends since the newest emit (kind word)
    bool prev_class = true;  ///< whether x_{t-1} was spacelike / whitespace (true before position 0)
    double prev_score = 0;   ///< the score of position t - 1 (entropy_rise)
  };

  State start() const { return {}; }

  /// Consumes token x_t (t = s.pos), and for the entropy kinds its score H_t, and says whether t emits.
  bool step(State& s, std::int32_t x, double score = 0.0) const {
    bool emit = false;
    bool cls = false;
    switch (kind) {
      case Kind::kFixed:
        emit = s.pos % n == 0;
        break;
      case Kind::kSpace:
        cls = spacelike_byte(x);
        emit = cls && !s.prev_class;
        break;
      case Kind::kWord:
        cls = whitespace_byte(x);
        if (cls && !s.prev_class && ++s.words == n) emit = true;
        break;
      case Kind::kEntropy:
      case Kind::kRouter:
      case Kind::kMlp:
        emit = score > threshold;
        break;
      case Kind::kEntropyRise:
        emit = score - s.prev_score > threshold;
        break;
    }
    s.prev_score = score;
    if (s.pos == 0 || (max_len > 0 && s.since >= max_len)) emit = true;
    s.prev_class = cls;
    ++s.pos;
    if (emit) {
      s.since = 1;
      s.words = 0;
    } else {
      ++s.since;
    }
    return emit;
  }

  /// The fewest positions between two emits (what bounds the emit count of n positions; see
  /// `max_emits`): K for a fixed factor that max_len does not cut; otherwise 1 is possible (a
  /// spacelike byte right after position 0, a natural emit right after a forced one).
  std::int64_t min_gap() const { return kind == Kind::kFixed && (max_len == 0 || max_len >= n) ? n : 1; }
  /// The most emits `len` positions can hold (workspace plans use it).
  std::int64_t max_emits(std::int64_t len) const { return len <= 0 ? 0 : 1 + (len - 1) / min_gap(); }

  /// The spec string: "fixed:4", "space", "space/16", "word", "word:2/32", "entropy:1.3", "router:5.5",
  /// "mlp:5.5".
  std::string to_string() const {
    std::string s;
    switch (kind) {
      case Kind::kFixed: s = "fixed:" + std::to_string(n); break;
      case Kind::kSpace: s = "space"; break;
      case Kind::kWord: s = n == 1 ? "word" : "word:" + std::to_string(n); break;
      case Kind::kEntropy: s = "entropy:" + shortest(threshold); break;
      case Kind::kEntropyRise: s = "entropy_rise:" + shortest(threshold); break;
      case Kind::kRouter: s = "router:" + shortest(ratio); break;
      case Kind::kMlp: s = "mlp:" + shortest(ratio); break;
    }
    if (max_len > 0) s += "/" + std::to_string(max_len);
    return s;
  }

  /// Parses `to_string`'s forms; errors name the text and what is wrong with it.
  static ByteRule parse(std::string_view text) {
    auto real = [&](std::string_view part, char const* what) {
      double v = 0;
      auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
      HSEQ_CHECK(ec == std::errc{} && end == part.data() + part.size() && !part.empty() && std::isfinite(v),
                 "segmenter \"" << text << "\": " << what << " '" << part << "' is not a finite number");
      return v;
    };
    auto number = [&](std::string_view part, char const* what) {
      std::int64_t v = 0;
      auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
      HSEQ_CHECK(ec == std::errc{} && end == part.data() + part.size() && !part.empty(),
                 "segmenter \"" << text << "\": " << what << " '" << part << "' is not an integer");
      return v;
    };
    ByteRule r;
    std::string_view body = text;
    if (auto slash = text.find('/'); slash != std::string_view::npos) {
      body = text.substr(0, slash);
      r.max_len = number(text.substr(slash + 1), "the longest segment");
      HSEQ_CHECK(r.max_len >= 1, "segmenter \"" << text << "\": the longest segment must be at least 1 position");
    }
    std::string_view name = body, arg;
    bool has_arg = false;
    if (auto colon = body.find(':'); colon != std::string_view::npos) {
      name = body.substr(0, colon);
      arg = body.substr(colon + 1);
      has_arg = true;
    }
    if (name == "fixed") {
      HSEQ_CHECK(has_arg, "segmenter \"" << text << "\": fixed needs its factor (\"fixed:4\")");
      r.kind = Kind::kFixed;
      r.n = number(arg, "the factor");
      HSEQ_CHECK(r.n >= 1, "segmenter \"" << text << "\": the factor must be at least 1");
    } else if (name == "space") {
      HSEQ_CHECK(!has_arg, "segmenter \"" << text << "\": space takes no argument (\"space\" or \"space/16\")");
      r.kind = Kind::kSpace;
      r.n = 1;
    } else if (name == "word") {
      r.kind = Kind::kWord;
      r.n = has_arg ? number(arg, "the words per segment") : 1;
      HSEQ_CHECK(r.n >= 1, "segmenter \"" << text << "\": the words per segment must be at least 1");
    } else if (name == "entropy" || name == "entropy_rise") {
      HSEQ_CHECK(has_arg, "segmenter \"" << text << "\": " << name << " needs its threshold in nats (\"" << name
                                         << ":1.3\")");
      r.kind = name == "entropy" ? Kind::kEntropy : Kind::kEntropyRise;
      r.n = 1;
      r.threshold = real(arg, "the threshold");
    } else if (name == "router" || name == "mlp") {
      HSEQ_CHECK(has_arg, "segmenter \"" << text << "\": " << name << " needs its target positions per segment (\""
                                         << name << ":6\")");
      r.kind = name == "router" ? Kind::kRouter : Kind::kMlp;
      r.n = 1;
      r.threshold = 0.5;
      r.ratio = real(arg, "the target positions per segment");
      HSEQ_CHECK(r.ratio > 1.0, "segmenter \"" << text << "\": the target positions per segment must exceed 1 (the "
                                               "ratio loss divides by N - 1)");
    } else {
      HSEQ_FAIL("segmenter \"" << text << "\": unknown kind '" << name
                               << "' (known: fixed:K, space, word, word:N, entropy:θ, entropy_rise:θ, router:N, mlp:N, each "
                                  "optionally /MAXLEN)");
    }
    return r;
  }

  /// The shortest decimal that reads back as v (so spec strings round-trip exactly).
  static std::string shortest(double v) {
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, end);
  }

  friend bool operator==(ByteRule const&, ByteRule const&) = default;
};

}  // namespace hseq::hier
