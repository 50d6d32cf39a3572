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
#pragma once

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "hseq/core/error.hpp"

namespace hseq::hier {

/// One shortening level: `layers` Transformer layers at this rate (on each side of a nested level),
/// `factor` the shortening relative to the enclosing level.
struct LevelSpec {
  std::int64_t layers = 0, factor = 2;
  friend bool operator==(LevelSpec const&, LevelSpec const&) = default;
};

struct HierarchySpec {
  std::int64_t pre = 0, post = 0;
  std::vector<LevelSpec> levels;
  friend bool operator==(HierarchySpec const&, HierarchySpec const&) = default;

  /// Product of the per-level factors: sequence lengths are padded to a multiple of it.
  std::int64_t total_factor() const {
    std::int64_t f = 1;
    for (auto const& l : levels) f *= l.factor;
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
      HSEQ_CHECK(levels[i].factor >= 2, "hierarchy: level " << i << " has shortening factor " << levels[i].factor
                                                            << "; factors must be >= 2");
      HSEQ_CHECK(levels[i].layers >= 1, "hierarchy: level " << i << " has " << levels[i].layers
                                                            << " layers; each level needs at least one");
    }
  }

  /// The authors' notation with cumulative factors: "2@1 4@4 2@1".
  std::string to_string() const {
    std::vector<std::string> inner;  // the levels, outermost first, with cumulative factors
    std::int64_t f = 1;
    for (auto const& l : levels) {
      f *= l.factor;
      inner.push_back(std::to_string(l.layers) + "@" + std::to_string(f));
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
  /// except that the outermost @1 entries may differ: pre and post layers). Errors name the token.
  static HierarchySpec parse(std::string const& text) {
    std::istringstream is(text);
    std::vector<std::pair<std::int64_t, std::int64_t>> items;
    std::string tok;
    while (is >> tok) {
      auto at = tok.find('@');
      HSEQ_CHECK(at != std::string::npos && at > 0 && at + 1 < tok.size(),
                 "hierarchy \"" << text << "\": item '" << tok << "' is not of the form LAYERS@FACTOR");
      std::int64_t n = 0, f = 0;
      try {
        std::size_t p1 = 0, p2 = 0;
        n = std::stoll(tok.substr(0, at), &p1);
        f = std::stoll(tok.substr(at + 1), &p2);
        HSEQ_CHECK(p1 == at && p2 == tok.size() - at - 1, "trailing characters");
      } catch (std::exception const&) {
        HSEQ_FAIL("hierarchy \"" << text << "\": item '" << tok << "' is not of the form LAYERS@FACTOR");
      }
      HSEQ_CHECK(n >= 0 && f >= 1, "hierarchy \"" << text << "\": item '" << tok << "' needs LAYERS >= 0 and FACTOR >= 1");
      items.emplace_back(n, f);
    }
    HSEQ_CHECK(items.size() % 2 == 1, "hierarchy \"" << text << "\": " << items.size()
                                                    << " items; a hierarchy is a palindrome with an odd count");
    std::size_t m = items.size() / 2;
    HierarchySpec spec;
    std::size_t first = 0;
    if (items.front().second == 1) {
      HSEQ_CHECK(items.back().second == 1 && items.size() >= 3,
                 "hierarchy \"" << text << "\": the first item is at factor 1 but the last is not");
      spec.pre = items.front().first;
      spec.post = items.back().first;
      first = 1;
    }
    std::int64_t prev = 1;
    for (std::size_t i = first; i <= m; ++i) {
      auto [n, f] = items[i];
      auto [n2, f2] = items[items.size() - 1 - i];
      HSEQ_CHECK(n == n2 && f == f2, "hierarchy \"" << text << "\": not a palindrome ('" << n << "@" << f << "' vs '"
                                                    << n2 << "@" << f2 << "')");
      HSEQ_CHECK(f > prev && f % prev == 0, "hierarchy \"" << text << "\": factor " << f << " must be a multiple of "
                                                           << prev << " and larger (factors are cumulative)");
      spec.levels.push_back({n, f / prev});
      prev = f;
    }
    spec.validate();
    return spec;
  }
};

/// A compile-time level: `Layers` layers at this rate, shortened `Factor` times relative to the
/// enclosing level.
template <int Layers, int Factor>
struct Level {
  static_assert(Layers >= 1, "hseq::hier::Level: a level needs at least one layer");
  static_assert(Factor >= 2, "hseq::hier::Level: a shortening factor must be >= 2");
  static constexpr LevelSpec spec() { return {Layers, Factor}; }
};

/// A compile-time hierarchy: `Pre` layers, the nested levels (outermost first), `Post` layers.
template <int Pre, int Post, class... Levels>
struct Hierarchy {
  static_assert(sizeof...(Levels) >= 1, "hseq::hier::Hierarchy: at least one level is needed");
  static_assert(Pre >= 0 && Post >= 0, "hseq::hier::Hierarchy: layer counts must be >= 0");
  static constexpr bool kDynamic = false;
  static HierarchySpec spec() { return {Pre, Post, {Levels::spec()...}}; }
};

/// The hierarchy is given at run time in the model's Config (for programs that parse strings).
struct DynamicHierarchy {
  static constexpr bool kDynamic = true;
};

}  // namespace hseq::hier
