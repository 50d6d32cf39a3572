// SPDX-License-Identifier: MIT
/// @file
/// @brief `Delimited<MaxLen>`: the variable segmenter (spec models.md §1.2): a segment ends right
/// after an occurrence of the delimiter byte sequence inside it (the delimiter's bytes belong to the
/// segment they end), or when it holds MaxLen bytes, or at the end of the sequence:
///
///   "ab\ncd\n\nef" with "\n"   -> "ab\n" | "cd\n" | "\n" | "ef"
///   "ab\n\ncd\n\n\n" with "\n\n" -> "ab\n\n" | "cd\n\n" | "\n"          (an occurrence must lie in the segment)
///   "abcdefg" with MaxLen 3    -> "abc" | "def" | "g"                 (the documented fallback)
///
/// The delimiter is run-time configuration: "\n" (lines, e.g. KJV verses) is named "line", "\n\n"
/// (blank-line separated speaker turns of tinyshakespeare) "turn", anything else "delimited".
/// Rules, all by construction:
///   - no empty segment: a segment ends after a byte, so it holds >= 1 byte;
///   - a longer run is split at MaxLen; a delimiter that never occurs gives MaxLen-byte chunks (the
///     last one of a row may be shorter);
///   - the decision to end after byte p depends on the bytes of p's segment up to p only, so the
///     layout is causal (changing byte p moves no boundary before p) and cached generation makes
///     the same decision byte by byte;
///   - every segment but a row's last holds at least |delimiter| bytes, so t bytes hold at most
///     ceil(t / |delimiter|) segments (`max_segments`, what workspace plans assume).
/// The delimiter must be non-empty and at most MaxLen bytes (a longer one could never complete
/// inside a segment); MaxLen >= 1.
///
/// Rule segments (issue 19: the segmentation rules the Hourglass uses, shared with HRED/HAED): a
/// configuration "@RULE" ends segments by a `hier::ByteRule` instead, "@space" (SpaceByte's
/// spacelike rule: a segment ends at the first spacelike byte after a non-spacelike one, so a word
/// and the space after it) or "@word" / "@word:N" (AU-Net: at the whitespace after every N-th
/// word), each with an optional "/MAXLEN" (<= MaxLen; the longest segment, MaxLen without it). The
/// rule is replayed over the segment's own bytes from its start state, so `ends` stays a function
/// of the segment (causal, and cached generation decides the same byte by byte); a segment of one
/// byte never ends by the rule (the rule's forced emit at a sequence's first byte is the Hourglass's
/// and has no meaning here), so every segment but a row's last holds at least 2 bytes. Named
/// "space" and "word". The fixed, entropy and learned (router, mlp) kinds are refused (use FixedChunks<K>; the
/// others read scores a segmenter of bytes does not have).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "hseq/core/error.hpp"
#include "hseq/hier/byte_rule.hpp"
#include "hseq/hier/segmenter_policy.hpp"

namespace hseq::hier {

template <std::int64_t MaxLen>
class Delimited {
 public:
  static_assert(MaxLen >= 1, "Delimited<MaxLen>: the longest segment MaxLen must be at least 1 byte");
  static constexpr char const* kName = "delimited";
  static constexpr bool kVariable = true;
  /// The most bytes per segment (the padded grid's width L).
  static constexpr std::int64_t kSize = MaxLen;

  explicit Delimited(std::string delimiter) : delim_(std::move(delimiter)) {
    if (delim_.size() > 1 && delim_[0] == '@') {  // rule segments
      rule_ = ByteRule::parse(std::string_view(delim_).substr(1));
      HSEQ_CHECK(rule_->kind == ByteRule::Kind::kSpace || rule_->kind == ByteRule::Kind::kWord,
                 "Delimited<" << MaxLen << ">: the rule \"" << rule_->to_string() << "\" cannot end segments of bytes "
                              << "(rules: @space, @word, @word:N, each with an optional /MAXLEN; fixed-size segments "
                                 "are the fixedK segmenter)");
      HSEQ_CHECK(rule_->max_len <= MaxLen, "Delimited<" << MaxLen << ">: the rule \"" << rule_->to_string()
                                                        << "\" allows segments of " << rule_->max_len
                                                        << " bytes, more than the longest segment (" << MaxLen << ")");
      cap_ = rule_->max_len > 0 ? rule_->max_len : MaxLen;
      rule_->max_len = 0;  // (the cap is applied by `ends`)
      return;
    }
    HSEQ_CHECK(!delim_.empty(), "Delimited<" << MaxLen
                                             << ">: the delimiter is empty (give the byte sequence that "
                                                "ends a segment, e.g. \"\\n\")");
    HSEQ_CHECK(std::int64_t(delim_.size()) <= MaxLen, "Delimited<" << MaxLen << ">: the delimiter of " << delim_.size()
                                                                   << " bytes is longer than the longest segment ("
                                                                   << MaxLen << " bytes), so it could never end one");
  }

  /// The name of a configuration: "line" ("\n"), "turn" ("\n\n"), otherwise "delimited".
  static char const* name_of(std::string_view delimiter) {
    if (delimiter == "\n") return "line";
    if (delimiter == "\n\n") return "turn";
    if (delimiter.starts_with("@space")) return "space";
    if (delimiter.starts_with("@word")) return "word";
    return "delimited";
  }
  /// The rule of rule segments ("@space"; its max_len is `cap`), none for a delimiter.
  std::optional<ByteRule> const& rule() const { return rule_; }
  char const* name() const { return name_of(delim_); }
  std::string const& delimiter() const { return delim_; }

  /// Whether a segment whose bytes so far are `seg` (1..MaxLen of them) ends after its last byte.
  bool ends(std::span<std::int32_t const> seg) const {
    if (rule_) {
      std::int64_t n = std::int64_t(seg.size());
      if (n >= cap_) return true;
      if (n < 2) return false;
      ByteRule::State st = rule_->start();
      bool e = false;
      for (std::int32_t b : seg) e = rule_->step(st, b);
      return e;
    }
    std::size_t n = seg.size(), k = delim_.size();
    if (std::int64_t(n) >= MaxLen) return true;
    if (n < k) return false;
    for (std::size_t j = 0; j < k; ++j)
      if (seg[n - k + j] != std::int32_t(static_cast<unsigned char>(delim_[j]))) return false;
    return true;
  }

  /// The most segments t bytes can hold: ceil(t / |delimiter|) (every segment but the last holds
  /// at least |delimiter| bytes); for rule segments ceil(t / 2) (t with /1).
  std::int64_t max_segments(std::int64_t t) const {
    if (rule_) return cap_ == 1 ? std::max<std::int64_t>(1, t) : std::max<std::int64_t>(1, (t + 1) / 2);
    std::int64_t k = std::int64_t(delim_.size());
    return std::max<std::int64_t>(1, (t + k - 1) / k);
  }

  /// The layout of `batch` rows of t bytes, ids [B, t] (host, row-major). Reserves the worst case
  /// on first use: later calls allocate nothing.
  void layout(std::span<std::int32_t const> ids, std::int64_t batch, std::int64_t t, SegmentLayout& out) const {
    HSEQ_CHECK(batch >= 1 && t >= 1 && std::int64_t(ids.size()) == batch * t,
               "Delimited::layout: " << ids.size() << " ids for a batch of " << batch << " rows of " << t << " bytes");
    constexpr std::int64_t l = MaxLen;
    out.reserve(batch, t, max_segments(t), l);
    out.batch = batch;
    out.t = t;
    out.width = l;
    out.count.assign(std::size_t(batch), 0);
    // Pass 1: segment counts (the grid's S is the largest).
    std::int64_t s_max = 0;
    for (std::int64_t b = 0; b < batch; ++b) {
      std::int64_t n = 0, begin = 0;
      for (std::int64_t p = 0; p < t; ++p)
        if (p + 1 == t || ends(ids.subspan(std::size_t(b * t + begin), std::size_t(p - begin + 1)))) {
          ++n;
          begin = p + 1;
        }
      out.count[std::size_t(b)] = std::int32_t(n);
      s_max = std::max(s_max, n);
    }
    out.segments = s_max;
    // Pass 2: starts, lengths and the two gather indices.
    std::size_t bs = std::size_t(batch * s_max);
    std::int32_t const zero_row = std::int32_t(batch * t);
    out.start.assign(bs, std::int32_t(t));
    out.length.assign(bs, 0);
    out.grid_src.assign(bs * std::size_t(l), zero_row);
    out.byte_cell.assign(std::size_t(batch * t), 0);
    out.last_cell.assign(bs, 0);
    for (std::int64_t b = 0; b < batch; ++b) {
      std::int64_t i = 0, begin = 0;
      for (std::int64_t p = 0; p < t; ++p) {
        std::int64_t r = p - begin;
        std::int64_t cell = ((b * s_max + i) * l + r);
        out.grid_src[std::size_t(cell)] = std::int32_t(b * t + p);
        out.byte_cell[std::size_t(b * t + p)] = std::int32_t(cell);
        if (p + 1 == t || ends(ids.subspan(std::size_t(b * t + begin), std::size_t(r + 1)))) {
          out.start[std::size_t(b * s_max + i)] = std::int32_t(begin);
          out.length[std::size_t(b * s_max + i)] = std::int32_t(r + 1);
          ++i;
          begin = p + 1;
        }
      }
      for (std::int64_t j = 0; j < s_max; ++j) {
        std::int64_t len = out.length[std::size_t(b * s_max + j)];
        out.last_cell[std::size_t(b * s_max + j)] =
            std::int32_t((b * s_max + j) * l + std::max<std::int64_t>(len, 1) - 1);
      }
    }
  }

 private:
  std::string delim_;
  std::optional<ByteRule> rule_;  // rule segments ("@space"), with its max_len moved to cap_
  std::int64_t cap_ = MaxLen;
};

}  // namespace hseq::hier
