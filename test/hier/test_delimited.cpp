// SPDX-License-Identifier: MIT
// hier::Delimited: the layout of hand-made strings (segments, lengths, the grid's gather indices),
// the MaxLen fallback, the streaming end-of-segment rule, worst-case segment counts and
// configuration errors.
#include <doctest/doctest.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "hseq/hier/delimited.hpp"
#include "hseq/hier/fixed_chunks.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

static_assert(hier::SegmenterPolicy<hier::Delimited<8>>);
static_assert(hier::VariableSegmenter<hier::Delimited<8>>);
static_assert(!hier::FixedSegmenter<hier::Delimited<8>>);
static_assert(hier::FixedSegmenter<hier::FixedChunks<4>>);
static_assert(!hier::VariableSegmenter<hier::FixedChunks<4>>);
static_assert(hier::Delimited<16>::kSize == 16);

namespace {
std::vector<std::int32_t> bytes_of(std::string const& s) {
  std::vector<std::int32_t> v;
  for (char c : s) v.push_back(std::int32_t(static_cast<unsigned char>(c)));
  return v;
}

/// The segments of one row as strings, from the layout's starts and lengths.
template <std::int64_t L>
std::vector<std::string> split(std::string const& text, std::string const& delim) {
  hier::Delimited<L> seg(delim);
  auto ids = bytes_of(text);
  hier::SegmentLayout lay;
  seg.layout(ids, 1, std::int64_t(text.size()), lay);
  std::vector<std::string> out;
  REQUIRE(lay.count.size() == 1);
  REQUIRE(lay.segments == lay.count[0]);
  for (std::int64_t i = 0; i < lay.segments; ++i)
    out.push_back(text.substr(std::size_t(lay.start[std::size_t(i)]), std::size_t(lay.length[std::size_t(i)])));
  return out;
}
using Strings = std::vector<std::string>;
}  // namespace

TEST_CASE("delimited: a segment ends right after its delimiter, which belongs to it") {
  CHECK(split<16>("ab\ncd\n", "\n") == Strings{"ab\n", "cd\n"});          // delimiter at the end
  CHECK(split<16>("\nab\ncd", "\n") == Strings{"\n", "ab\n", "cd"});      // at the start; a partial last segment
  CHECK(split<16>("a\n\n\nb", "\n") == Strings{"a\n", "\n", "\n", "b"});  // consecutive delimiters
  CHECK(split<16>("\n\n\n", "\n") == Strings{"\n", "\n", "\n"});          // only delimiters: one byte each
}

TEST_CASE("delimited: two-byte delimiters (speaker turns) must lie inside the segment they end") {
  CHECK(split<32>("A:\nhi\n\nB:\nho\n\nA:", "\n\n") == Strings{"A:\nhi\n\n", "B:\nho\n\n", "A:"});
  // Three newlines: the first two end a turn; the third starts the next one (an occurrence that
  // straddles the boundary does not count, so no segment is shorter than the delimiter but the last).
  CHECK(split<32>("a\n\n\nb\n\n", "\n\n") == Strings{"a\n\n", "\nb\n\n"});
  CHECK(split<32>("\n\n\n\n\n", "\n\n") == Strings{"\n\n", "\n\n", "\n"});
  CHECK(split<32>("a\nb\nc", "\n\n") == Strings{"a\nb\nc"});  // single newlines are ordinary bytes
}

TEST_CASE("delimited: a run longer than MaxLen is split at MaxLen; no delimiter gives MaxLen chunks") {
  CHECK(split<4>("abcdefghij\nxy", "\n") == Strings{"abcd", "efgh", "ij\n", "xy"});
  CHECK(split<3>("abcdefg", "\n") == Strings{"abc", "def", "g"});  // never occurs: MaxLen chunks
  CHECK(split<3>("abc\n", "\n") == Strings{"abc", "\n"});          // the fallback ends before the delimiter
  CHECK(split<1>("ab\n", "\n") == Strings{"a", "b", "\n"});        // MaxLen 1: one byte each
  CHECK(split<2>("a\n\nb", "\n\n") == Strings{"a\n", "\nb"});      // the fallback wins over a straddling match
}

TEST_CASE("delimited: sequences shorter than one segment are one (partial) segment") {
  CHECK(split<16>("abc", "\n") == Strings{"abc"});
  CHECK(split<16>("a", "\n") == Strings{"a"});
  CHECK(split<16>("\n", "\n") == Strings{"\n"});
  CHECK(split<16>("a\n", "\n\n") == Strings{"a\n"});
}

TEST_CASE("delimited: the batch layout pads to the largest segment count; gather indices invert each other") {
  hier::Delimited<4> seg("\n");
  std::string const r0 = "a\nbc\nd", r1 = "abcdefgh";  // segments: {a\n, bc\n, d} and {abcd, efgh}
  std::vector<std::int32_t> ids = bytes_of(r0 + r1);
  hier::SegmentLayout lay;
  std::int64_t const t = 6;
  ids.resize(2 * t);
  for (std::int64_t p = 0; p < t; ++p) ids[std::size_t(t + p)] = std::int32_t(r1[std::size_t(p)]);  // "abcdef"
  seg.layout(ids, 2, t, lay);
  CHECK(lay.segments == 3);
  CHECK(lay.width == 4);
  CHECK(lay.count == std::vector<std::int32_t>{3, 2});
  CHECK(lay.start == std::vector<std::int32_t>{0, 2, 5, 0, 4, 6});  // row 1's third segment: padding (start t)
  CHECK(lay.length == std::vector<std::int32_t>{2, 3, 1, 4, 2, 0});
  std::int32_t const z = 2 * t;                                                            // the zero row
  CHECK(lay.grid_src == std::vector<std::int32_t>{0, 1, z, z, 2,  3,  4, z, 5, z, z, z,    // row 0
                                                  6, 7, 8, 9, 10, 11, z, z, z, z, z, z});  // row 1
  CHECK(lay.byte_cell == std::vector<std::int32_t>{0, 1, 4, 5, 6, 8, 12, 13, 14, 15, 16, 17});
  CHECK(lay.last_cell == std::vector<std::int32_t>{1, 6, 8, 15, 17, 20});  // padding: the segment's first cell
  for (std::size_t p = 0; p < lay.byte_cell.size(); ++p)                   // each byte's cell reads that byte back
    CHECK(lay.grid_src[std::size_t(lay.byte_cell[p])] == std::int32_t(p));
  // A second, smaller batch reuses the reserved vectors (the worst case was reserved on first use).
  auto const* data = lay.grid_src.data();
  std::vector<std::int32_t> small = bytes_of("xy\n");
  seg.layout(small, 1, 3, lay);
  CHECK(lay.segments == 1);
  CHECK(lay.grid_src.data() == data);
  CHECK(lay.grid_src == std::vector<std::int32_t>{0, 1, 2, 3});
}

TEST_CASE("delimited: the streaming rule is the layout's rule; worst-case segment counts") {
  hier::Delimited<5> seg("\n\n");
  auto ends = [&](std::string const& s) {
    auto b = bytes_of(s);
    return seg.ends(std::span<std::int32_t const>(b));
  };
  CHECK(!ends("a"));
  CHECK(!ends("\n"));
  CHECK(ends("\n\n"));
  CHECK(ends("ab\n\n"));
  CHECK(!ends("ab\n"));
  CHECK(ends("abcde"));  // MaxLen
  CHECK(seg.max_segments(10) == 5);
  CHECK(seg.max_segments(11) == 6);
  CHECK(seg.max_segments(1) == 1);
  CHECK(hier::Delimited<5>("\n").max_segments(7) == 7);
  // Every row's actual count is within the worst case, here for all 2^8 strings over {a, \n}.
  for (int mask = 0; mask < 256; ++mask) {
    std::string s;
    for (int i = 0; i < 8; ++i) s += (mask >> i & 1) ? '\n' : 'a';
    hier::SegmentLayout lay;
    auto b = bytes_of(s);
    seg.layout(b, 1, 8, lay);
    CHECK(lay.segments <= seg.max_segments(8));
    std::int64_t total = 0;
    for (std::int64_t i = 0; i < lay.segments; ++i) total += lay.length[std::size_t(i)];
    CHECK(total == 8);
  }
}

TEST_CASE("delimited: names follow the delimiter; bad configurations say what is wrong") {
  CHECK(std::string(hier::Delimited<8>("\n").name()) == "line");
  CHECK(std::string(hier::Delimited<8>("\n\n").name()) == "turn");
  CHECK(std::string(hier::Delimited<8>(". ").name()) == "delimited");
  CHECK(hier::Delimited<8>(". ").delimiter() == ". ");
  CHECK_THROWS_WITH_AS(hier::Delimited<8>(""), doctest::Contains("Delimited<8>: the delimiter is empty"), Error);
  CHECK_THROWS_WITH_AS(hier::Delimited<2>("abc"),
                       doctest::Contains("the delimiter of 3 bytes is longer than the longest segment (2 bytes)"),
                       Error);
  hier::Delimited<4> seg("\n");
  hier::SegmentLayout lay;
  std::vector<std::int32_t> ids{1, 2, 3};
  CHECK_THROWS_WITH_AS(seg.layout(ids, 2, 3, lay), doctest::Contains("3 ids for a batch of 2 rows of 3 bytes"), Error);
  // MaxLen < 1 is a compile-time error: static_assert "the longest segment MaxLen must be at least 1 byte".
}

TEST_CASE("delimited: rule segments (\"@space\", \"@word\"): the Hourglass's rules over a segment's own bytes") {
  // SpaceByte's rule: a word and the spacelike byte after it; a segment starting with a spacelike
  // byte keeps it (the rule needs a non-spacelike byte before the one that ends).
  CHECK(split<16>("In the beginning God", "@space") == Strings{"In ", "the ", "beginning ", "God"});
  CHECK(split<16>("Hi, you  there.", "@space") == Strings{"Hi,", " you ", " there."});
  CHECK(split<16>("Hi, you  there.", "@word") == Strings{"Hi, ", "you ", " there."});
  CHECK(split<16>("a b c d e", "@word:2") == Strings{"a b ", "c d ", "e"});
  CHECK(split<16>("abcdefgh ij", "@space/3") == Strings{"abc", "def", "gh ", "ij"});  // the cap
  CHECK(split<4>("abcdefgh ij", "@space") == Strings{"abcd", "efgh", " ij"});         // MaxLen
  hier::Delimited<8> seg("@space");
  CHECK(std::string(seg.name()) == "space");
  CHECK(std::string(hier::Delimited<8>("@word:2/6").name()) == "word");
  CHECK(seg.delimiter() == "@space");
  REQUIRE(seg.rule().has_value());
  CHECK(seg.rule()->kind == hier::ByteRule::Kind::kSpace);
  auto ends = [&](std::string const& s) {
    auto b = bytes_of(s);
    return seg.ends(std::span<std::int32_t const>(b));
  };
  CHECK(!ends(" "));  // one byte never ends by the rule
  CHECK(ends("a "));
  CHECK(!ends("  "));
  CHECK(ends("abcdefgh"));  // MaxLen
  // Every string over {a, ' ', ','} of 7 bytes: segments within the worst case, covering the row,
  // and a prefix's segments are the whole's (the decision reads the segment's own bytes only).
  CHECK(seg.max_segments(7) == 4);
  CHECK(hier::Delimited<8>("@space/1").max_segments(7) == 7);
  char const alphabet[3] = {'a', ' ', ','};
  for (int code = 0; code < 3 * 3 * 3 * 3 * 3 * 3 * 3; ++code) {
    std::string s;
    for (int i = 0, c = code; i < 7; ++i, c /= 3) s += alphabet[c % 3];
    hier::SegmentLayout lay, pre;
    auto b = bytes_of(s);
    seg.layout(b, 1, 7, lay);
    CHECK(lay.segments <= seg.max_segments(7));
    std::int64_t total = 0;
    for (std::int64_t i = 0; i < lay.segments; ++i) total += lay.length[std::size_t(i)];
    CHECK(total == 7);
    seg.layout(std::span<std::int32_t const>(b).first(4), 1, 4, pre);
    for (std::int64_t i = 0; i + 1 < pre.segments; ++i) {  // the prefix's closed segments
      CHECK(pre.start[std::size_t(i)] == lay.start[std::size_t(i)]);
      CHECK(pre.length[std::size_t(i)] == lay.length[std::size_t(i)]);
    }
  }
  CHECK_THROWS_WITH_AS(hier::Delimited<8>("@fixed:2"), doctest::Contains("cannot end segments of bytes"), Error);
  CHECK_THROWS_WITH_AS(hier::Delimited<8>("@entropy:1"), doctest::Contains("cannot end segments of bytes"), Error);
  CHECK_THROWS_WITH_AS(hier::Delimited<8>("@router:3"), doctest::Contains("cannot end segments of bytes"), Error);
  CHECK_THROWS_WITH_AS(hier::Delimited<8>("@mlp:3"), doctest::Contains("cannot end segments of bytes"), Error);
  CHECK_THROWS_WITH_AS(hier::Delimited<8>("@space/9"), doctest::Contains("more than the longest segment (8)"), Error);
  CHECK_THROWS_WITH_AS(hier::Delimited<8>("@spaces"), doctest::Contains("unknown kind 'spaces'"), Error);
}

}  // namespace HSEQ_TEST_UNIT
