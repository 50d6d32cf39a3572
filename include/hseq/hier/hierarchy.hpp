// SPDX-License-Identifier: MIT
/// @file
/// @brief The shape of an Hourglass: layers before, nested shortening levels, layers after.
///
/// Compile-time form: `Hierarchy<Pre, Post, Level<Layers, Factor>...>` where each level's `Factor`
/// is its shortening relative to the enclosing level and `Layers` is the number of Transformer
/// layers on each side of the next level (or in total, for the innermost level). Run-time form:
/// `HierarchySpec`, also parsed from the authors' string notation (trax), where the factors are
/// cumulative: "2@1 4@4 2@1" is 2 layers, a level shortened 4x with 4 layers, 2 layers;
/// "2@1 2@2 3@6 2@2 2@1" nests a 3x level with 3 layers inside a 2x level with 2 + 2 layers.
/// A level may instead segment by a data-dependent rule (hier::ByteRule, issue 19): "2@1 4@space
/// 2@1" is a level whose segments close after SpaceByte's spacelike bytes; nested rules apply to
/// the enclosing level's segments ("2@1 2@word 4@fixed:2 2@word 2@1": words, then word pairs). A
/// hierarchy is either all numeric or all rules ("fixed:K" is the fixed factor K through the
/// data-dependent path); rule levels shorten by a length known only from the data, so their
/// `factor` is 1 and sequences are not padded for them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "hseq/core/error.hpp"
#include "hseq/hier/byte_rule.hpp"

namespace hseq::hier {

/// One shortening level: `layers` Transformer layers at this rate (on each side of a nested level),
/// `factor` the shortening relative to the enclosing level; or, with a `rule`, the data-dependent
/// segmentation of the enclosing level's positions (then `factor` is 1).
struct LevelSpec {
  std::int64_t layers = 0, factor = 2;
  std::optional<ByteRule> rule{};
  bool dynamic() const { return rule.has_value(); }
  friend bool operator==(LevelSpec const&, LevelSpec const&) = default;
};

struct HierarchySpec {
  std::int64_t pre = 0, post = 0;
  std::vector<LevelSpec> levels;
  friend bool operator==(HierarchySpec const&, HierarchySpec const&) = default;

  /// Whether the levels segment by data-dependent rules (validate: all levels or none).
  bool dynamic() const { return !levels.empty() && levels.front().dynamic(); }
  /// Product of the per-level factors: sequence lengths are padded to a multiple of it (1 for a
  /// hierarchy of rules, which take any length).
  std::int64_t total_factor() const {
    std::int64_t f = 1;
    for (auto const& l : levels) f *= l.factor;
    return f;
  }
  /// The product of `factors`, or 0 when it does not fit in int64 (or a factor is not positive):
  /// shared by validate() and the compile-time Hierarchy, so both refuse the same hierarchies.
  template <class Range>
  static constexpr std::int64_t checked_total_factor(Range const& factors) {
    std::int64_t f = 1;
    for (std::int64_t k : factors) {
      if (k <= 0 || f > std::numeric_limits<std::int64_t>::max() / k) return 0;
      f *= k;
    }
    return f;
  }
  /// Transformer layers in total (pre + post + both sides of every non-innermost level + innermost).
  std::int64_t total_layers() const {
    std::int64_t n = pre + post;
    for (std::size_t i = 0; i < levels.size(); ++i) n += (i + 1 < levels.size() ? 2 : 1) * levels[i].layers;
    return n;
  }

  void validate() const {
    HSEQ_CHECK(pre >= 0 && post >= 0, "hierarchy: negative layer counts (pre " << pre << ", post " << post << ")");
    HSEQ_CHECK(!levels.empty(), "hierarchy: at least one shortening level is needed");
    for (std::size_t i = 0; i < levels.size(); ++i) {
      HSEQ_CHECK(levels[i].dynamic() == levels[0].dynamic(),
                 "hierarchy: level " << i << (levels[i].dynamic() ? " segments by a rule" : " has a numeric factor")
                                     << " but level 0 does not; a hierarchy is all numeric factors or all rules "
                                        "(write a fixed factor K among rules as \"fixed:K\")");
      if (levels[i].dynamic()) {
        HSEQ_CHECK(i == 0 || !levels[i].rule->reads_entropy(),
                   "hierarchy: level " << i << " segments by \"" << levels[i].rule->to_string()
                                       << "\", which reads the bytes' next-byte entropies; only the outermost "
                                          "level can (nested levels see segments, not bytes)");
        HSEQ_CHECK(levels[i].factor == 1, "hierarchy: level " << i << " segments by \"" << levels[i].rule->to_string()
                                                              << "\" and has factor " << levels[i].factor
                                                              << "; a rule level's factor is 1");
      } else {
        HSEQ_CHECK(levels[i].factor >= 2, "hierarchy: level " << i << " has shortening factor " << levels[i].factor
                                                              << "; factors must be >= 2");
      }
      HSEQ_CHECK(levels[i].layers >= 1, "hierarchy: level " << i << " has " << levels[i].layers
                                                            << " layers; each level needs at least one");
    }
    std::vector<std::int64_t> factors;
    for (auto const& l : levels) factors.push_back(l.factor);
    HSEQ_CHECK(checked_total_factor(factors) > 0,
               "hierarchy: the total shortening factor overflows int64");  // (to_string would overflow too)
  }

  /// The authors' notation with cumulative factors: "2@1 4@4 2@1" (rules by name: "2@1 4@space 2@1").
  std::string to_string() const {
    std::vector<std::string> inner;  // the levels, outermost first, with cumulative factors
    std::int64_t f = 1;
    for (auto const& l : levels) {
      f *= l.factor;
      inner.push_back(std::to_string(l.layers) + "@" + (l.rule ? l.rule->to_string() : std::to_string(f)));
    }
    std::vector<std::string> items;
    bool outer = pre > 0 || post > 0;
    if (outer) items.push_back(std::to_string(pre) + "@1");
    items.insert(items.end(), inner.begin(), inner.end());
    for (std::size_t i = inner.size() - 1; i-- > 0;) items.push_back(inner[i]);
    if (outer) items.push_back(std::to_string(post) + "@1");
    std::string s;
    for (auto const& t : items) s += (s.empty() ? "" : " ") + t;
    return s;
  }

  /// Parses "N@F N@F ..." (cumulative factors, a palindrome in N and F around the innermost level,
  /// except that the outermost @1 entries may differ: pre and post layers). F may instead be a
  /// segmentation rule (ByteRule::parse: "space", "word:2/32", "fixed:4") for every level.
  /// Errors name the token.
  static HierarchySpec parse(std::string const& text) {
    struct Item {
      std::int64_t n = 0, f = 0;  // f = 0: a rule
      std::string rule;
      std::string show() const { return std::to_string(n) + "@" + (f ? std::to_string(f) : rule); }
      bool operator==(Item const&) const = default;
    };
    std::istringstream is(text);
    std::vector<Item> items;
    std::string tok;
    while (is >> tok) {
      auto at = tok.find('@');
      HSEQ_CHECK(at != std::string::npos && at > 0 && at + 1 < tok.size(),
                 "hierarchy \"" << text << "\": item '" << tok << "' is not of the form LAYERS@FACTOR or LAYERS@RULE");
      Item it;
      try {
        std::size_t p1 = 0;
        it.n = std::stoll(tok.substr(0, at), &p1);
        HSEQ_CHECK(p1 == at, "trailing characters");
      } catch (std::exception const&) {
        HSEQ_FAIL("hierarchy \"" << text << "\": item '" << tok << "' is not of the form LAYERS@FACTOR or LAYERS@RULE");
      }
      std::string rest = tok.substr(at + 1);
      bool numeric = rest.find_first_not_of("0123456789") == std::string::npos || rest[0] == '-' || rest[0] == '+';
      if (numeric) {
        try {
          std::size_t p2 = 0;
          it.f = std::stoll(rest, &p2);
          HSEQ_CHECK(p2 == rest.size(), "trailing characters");
        } catch (std::exception const&) {
          HSEQ_FAIL("hierarchy \"" << text << "\": item '" << tok << "' is not of the form LAYERS@FACTOR or LAYERS@RULE");
        }
        HSEQ_CHECK(it.f >= 1, "hierarchy \"" << text << "\": item '" << tok << "' needs LAYERS >= 0 and FACTOR >= 1");
      } else {
        try {
          it.rule = ByteRule::parse(rest).to_string();
        } catch (Error const& e) {
          HSEQ_FAIL("hierarchy \"" << text << "\": item '" << tok << "': " << e.what());
        }
      }
      HSEQ_CHECK(it.n >= 0, "hierarchy \"" << text << "\": item '" << tok << "' needs LAYERS >= 0 and FACTOR >= 1");
      items.push_back(it);
    }
    HSEQ_CHECK(items.size() % 2 == 1, "hierarchy \"" << text << "\": " << items.size()
                                                    << " items; a hierarchy is a palindrome with an odd count");
    std::size_t m = items.size() / 2;
    HierarchySpec spec;
    std::size_t first = 0;
    if (items.front().f == 1) {
      HSEQ_CHECK(items.back().f == 1 && items.size() >= 3,
                 "hierarchy \"" << text << "\": the first item is at factor 1 but the last is not");
      spec.pre = items.front().n;
      spec.post = items.back().n;
      first = 1;
    }
    std::int64_t prev = 1;
    for (std::size_t i = first; i <= m; ++i) {
      Item const& a = items[i];
      Item const& b = items[items.size() - 1 - i];
      HSEQ_CHECK(a == b, "hierarchy \"" << text << "\": not a palindrome ('" << a.show() << "' vs '" << b.show() << "')");
      if (a.f == 0) {
        spec.levels.push_back({a.n, 1, ByteRule::parse(a.rule)});
        continue;
      }
      HSEQ_CHECK(a.f > prev && a.f % prev == 0, "hierarchy \"" << text << "\": factor " << a.f
                                                               << " must be a multiple of " << prev
                                                               << " and larger (factors are cumulative)");
      spec.levels.push_back({a.n, a.f / prev});
      prev = a.f;
    }
    spec.validate();
    return spec;
  }
};

/// nlohmann::json serialisation (found by ADL) as the string notation, "2@1 4@4 2@1". Templates
/// over the JSON type so that this header needs no JSON include.
template <class Json>
void to_json(Json& j, HierarchySpec const& s) {
  j = s.to_string();
}
template <class Json>
void from_json(Json const& j, HierarchySpec& s) {
  s = HierarchySpec::parse(j.template get<std::string>());
}

/// A compile-time level: `Layers` layers at this rate, shortened `Factor` times relative to the
/// enclosing level. The rules of `HierarchySpec::validate` are checked here, at compile time, with
/// its messages, so a bad level fails where it is written instead of when a model is built.
template <int Layers, int Factor>
struct Level {
  static_assert(Layers >= 1, "hierarchy: a level has fewer than one layer; each level needs at least one");
  static_assert(Factor >= 2, "hierarchy: a level has a shortening factor below 2; factors must be >= 2");
  static constexpr std::int64_t kLayers = Layers;
  static constexpr std::int64_t kFactor = Factor;
  static constexpr LevelSpec spec() { return {Layers, Factor, std::nullopt}; }
};

template <class L>
inline constexpr bool is_level_v = false;
template <int Layers, int Factor>
inline constexpr bool is_level_v<Level<Layers, Factor>> = true;

/// A compile-time hierarchy: `Pre` layers, the nested levels (outermost first), `Post` layers.
/// Everything `HierarchySpec` computes at run time is a constant here (`kTotalFactor`, `kLevels`,
/// ...), and every rule `HierarchySpec::validate` checks is a static_assert with the same message.
/// Factors are relative to the enclosing level, so each level's cumulative factor is a multiple of
/// the one outside it by construction (what `HierarchySpec::parse` checks in the string form).
template <int Pre, int Post, class... Levels>
struct Hierarchy {
  static_assert(Pre >= 0 && Post >= 0, "hierarchy: negative layer counts (pre or post)");
  static_assert(sizeof...(Levels) >= 1, "hierarchy: at least one shortening level is needed");
  static_assert((is_level_v<Levels> && ...), "hierarchy: every level must be a hier::Level<Layers, Factor>");

  static constexpr bool kDynamic = false;
  static constexpr std::int64_t kPre = Pre;
  static constexpr std::int64_t kPost = Post;
  /// The levels, outermost first, with per-level (relative) factors.
  static constexpr std::array<LevelSpec, sizeof...(Levels)> kLevels{Levels::spec()...};
  /// Each level's factor relative to the sequence length (the trax string's numbers).
  /// (0 from the level where the product overflows; the kTotalFactor check below names that.)
  static constexpr std::array<std::int64_t, sizeof...(Levels)> kCumulativeFactors = [] {
    std::array<std::int64_t, sizeof...(Levels)> f{};
    std::int64_t acc = 1;
    for (std::size_t i = 0; i < f.size(); ++i)
      f[i] = acc = HierarchySpec::checked_total_factor(std::array<std::int64_t, 2>{acc, kLevels[i].factor});
    return f;
  }();
  /// Sequence lengths are padded to a multiple of this.
  static constexpr std::int64_t kTotalFactor =
      HierarchySpec::checked_total_factor(std::array<std::int64_t, sizeof...(Levels)>{Levels::kFactor...});
  static_assert(kTotalFactor > 0, "hierarchy: the total shortening factor overflows int64");
  /// Transformer layers in total (as HierarchySpec::total_layers).
  static constexpr std::int64_t kTotalLayers = [] {
    std::int64_t n = Pre + Post;
    for (std::size_t i = 0; i < kLevels.size(); ++i) n += (i + 1 < kLevels.size() ? 2 : 1) * kLevels[i].layers;
    return n;
  }();

  static HierarchySpec spec() { return {Pre, Post, {kLevels.begin(), kLevels.end()}}; }
};

/// The hierarchy is given at run time in the model's Config (for programs that parse strings).
struct DynamicHierarchy {
  static constexpr bool kDynamic = true;
};

namespace detail {
template <class H, class X, bool Dynamic = H::kDynamic>
struct PerLevel {  // run-time hierarchy: the level count is known when the model is built
  using type = std::vector<X>;
};
template <class H, class X>
struct PerLevel<H, X, false> {  // compile-time hierarchy: the level count is H::kLevels.size()
  using type = std::array<X, H::kLevels.size()>;
};
}  // namespace detail

/// Storage with one X per shortening level of a model whose hierarchy is H (`kDynamic` tells the
/// forms apart): `std::array<X, levels>` for a compile-time `Hierarchy<...>`, so its models hold
/// their levels, traces and caches in fixed-size storage; `std::vector<X>` for `DynamicHierarchy`.
template <class H, class X>
using PerLevel = typename detail::PerLevel<H, X>::type;

}  // namespace hseq::hier
