// SPDX-License-Identifier: MIT
// hier::SegmentProposal's construction (sorted window offsets and their runs) against a
// straightforward std::map count: the same distinct segments in the same sorted order, the same
// counts, and therefore the same seeded draws, for fixed K (1 .. 8 packed, > 8 the generic path)
// and for delimited segments, over random bytes, a small alphabet and text; edge cases (too short,
// all-equal bytes, K == the data's length, every byte value). The hand-made cases, find and the
// draws' frequencies are in test_iem_loss.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "hseq/core/rng.hpp"
#include "hseq/hier/delimited.hpp"
#include "hseq/hier/segment_proposal.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

namespace {
/// A proposal as plain values: the distinct segments in sorted order and their running counts.
struct Reference {
  std::vector<std::string> segments;
  std::vector<std::int64_t> cumulative;
};

Reference from_counts(std::map<std::string, std::int64_t> const& counts) {  // std::string: unsigned bytes order
  Reference r;
  std::int64_t total = 0;
  for (auto const& [s, c] : counts) {
    r.segments.push_back(s);
    total += c;
    r.cumulative.push_back(total);
  }
  return r;
}

/// Every window of k bytes at every offset.
Reference windows_reference(std::string const& data, std::size_t k) {
  std::map<std::string, std::int64_t> counts;
  for (std::size_t i = 0; i + k <= data.size(); ++i) ++counts[data.substr(i, k)];
  return from_counts(counts);
}

/// The segments of Delimited<max_len>(delim), cut by its rule written out again: a segment ends
/// after a delimiter that lies inside it, at max_len bytes, or at the end of the data.
Reference delimited_reference(std::string const& data, std::string const& delim, std::size_t max_len) {
  std::map<std::string, std::int64_t> counts;
  std::string cur;
  for (char c : data) {
    cur.push_back(c);
    bool ends = cur.size() >= max_len ||
                (cur.size() >= delim.size() && cur.compare(cur.size() - delim.size(), delim.size(), delim) == 0);
    if (ends) {
      ++counts[cur];
      cur.clear();
    }
  }
  if (!cur.empty()) ++counts[cur];
  return from_counts(counts);
}

/// The proposal holds exactly the reference: segments, order, counts, find, and the draws (a
/// function of the cumulative counts only: segment upper_bound(cumulative, philox mod W)).
void check_matches(hier::SegmentProposal const& q, Reference const& ref) {
  REQUIRE(q.size() == std::int64_t(ref.segments.size()));
  CHECK(q.total() == ref.cumulative.back());
  std::vector<std::string> segments;
  std::vector<std::int64_t> cumulative;
  for (std::int64_t i = 0; i < q.size(); ++i) {
    auto s = q.segment(i);
    segments.emplace_back(s.begin(), s.end());
    cumulative.push_back((i == 0 ? 0 : cumulative.back()) + q.count(i));
  }
  CHECK(segments == ref.segments);
  CHECK(cumulative == ref.cumulative);
  for (std::int64_t i = 0; i < q.size(); i += std::max<std::int64_t>(1, q.size() / 50)) {
    auto s = q.segment(i);
    std::vector<std::int32_t> ids(s.begin(), s.end());
    CHECK(q.find(ids) == i);
  }
  std::vector<std::int64_t> draws(512), want(512);
  q.draw(11, 3, draws);
  auto w = std::uint64_t(ref.cumulative.back());
  for (std::size_t j = 0; j < want.size(); ++j) {
    Philox4 b = philox_block(11, 3, j);
    auto r = std::int64_t(((std::uint64_t(b.v[0]) << 32) | b.v[1]) % w);
    want[j] = std::upper_bound(ref.cumulative.begin(), ref.cumulative.end(), r) - ref.cumulative.begin();
  }
  CHECK(draws == want);
}

std::string random_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = char(gen() & 0xff);
  return s;
}

/// Bytes from a small alphabet (a high byte among them, so the order must compare unsigned bytes).
std::string alphabet_bytes(std::size_t n, std::uint64_t seed) {
  static constexpr char kAlphabet[] = {'a', 'b', '\n', char(0xc3), ' '};
  std::mt19937_64 gen(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = kAlphabet[gen() % sizeof(kAlphabet)];
  return s;
}

std::string text() {
  std::string verse =
      "In the beginning God created the heaven and the earth.\n"
      "And the earth was without form, and void; and darkness was upon the face of the deep.\n"
      "And the Spirit of God moved upon the face of the waters.\n\n"
      "And God said, Let there be light: and there was light.\n"
      "And God saw the light, that it was good: and God divided the light from the darkness.\n\n";
  std::string s;
  for (int r = 0; r < 6; ++r) s += verse + std::to_string(r) + " \xc3\xa9t\xc3\xa9\n";
  return s;
}
}  // namespace

TEST_CASE("segment proposal: fixed K equals a std::map count (random bytes, a small alphabet, text)") {
  std::vector<std::string> datas{random_bytes(3000, 1), alphabet_bytes(5000, 2), text()};
  for (std::size_t d = 0; d < datas.size(); ++d)
    for (std::int64_t k : {1, 2, 3, 5, 7, 8, 9, 12, 20}) {
      CAPTURE(d);
      CAPTURE(k);
      hier::SegmentProposal q(datas[d], k);
      CHECK(q.segment_size() == k);
      CHECK(!q.variable());
      check_matches(q, windows_reference(datas[d], std::size_t(k)));
    }
}

TEST_CASE("segment proposal: more windows than the sort's scratch (byte-by-byte passes) equal a std::map count") {
  // 32768 pairs of scratch: larger ranges are split by one byte at a time first.
  std::string big_text;
  while (big_text.size() < 150000) big_text += text();
  std::vector<std::string> datas{alphabet_bytes(120000, 5), big_text, random_bytes(100000, 6),
                                 std::string(70000, 'z') + "y" + std::string(1000, 'z')};
  for (std::size_t d = 0; d < datas.size(); ++d)
    for (std::int64_t k : {1, 3, 8, 9, 20}) {
      CAPTURE(d);
      CAPTURE(k);
      check_matches(hier::SegmentProposal(datas[d], k), windows_reference(datas[d], std::size_t(k)));
    }
}

TEST_CASE("segment proposal: delimited segments equal a std::map count") {
  std::vector<std::string> datas{alphabet_bytes(5000, 3), text(), random_bytes(2000, 4)};
  for (std::size_t d = 0; d < datas.size(); ++d) {
    CAPTURE(d);
    check_matches(hier::SegmentProposal(datas[d], hier::Delimited<4>("\n")), delimited_reference(datas[d], "\n", 4));
    check_matches(hier::SegmentProposal(datas[d], hier::Delimited<8>("\n\n")),
                  delimited_reference(datas[d], "\n\n", 8));
    check_matches(hier::SegmentProposal(datas[d], hier::Delimited<3>("ab")), delimited_reference(datas[d], "ab", 3));
    check_matches(hier::SegmentProposal(datas[d], hier::Delimited<64>("\n")),
                  delimited_reference(datas[d], "\n", 64));
  }
}

TEST_CASE("segment proposal: edge cases (too short, all-equal bytes, K == the data's length, every byte value)") {
  // Too short for one window: a clear error.
  CHECK_THROWS_WITH_AS(hier::SegmentProposal("abcdefgh", 9), doctest::Contains("8 bytes hold no segment of 9"), Error);
  CHECK_THROWS_WITH_AS(hier::SegmentProposal("", 1), doctest::Contains("hold no segment of 1"), Error);
  CHECK_THROWS_WITH_AS(hier::SegmentProposal("abc", 0), doctest::Contains("hold no segment of 0"), Error);
  // All-equal bytes: one segment that every window is.
  std::string same(100, 'a');
  for (std::int64_t k : {1, 8, 9, 100}) {
    CAPTURE(k);
    hier::SegmentProposal q(same, k);
    REQUIRE(q.size() == 1);
    CHECK(q.total() == 100 - k + 1);
    auto s = q.segment(0);
    CHECK(std::string(s.begin(), s.end()) == std::string(std::size_t(k), 'a'));
  }
  // Without a delimiter: MaxLen chunks and a shorter last one, the shorter first.
  hier::SegmentProposal chunks(std::string(10, 'a'), hier::Delimited<4>("\n"));
  REQUIRE(chunks.size() == 2);
  CHECK(chunks.count(0) == 1);
  CHECK(chunks.segment(0).size() == 2);
  CHECK(chunks.count(1) == 2);
  CHECK(chunks.segment(1).size() == 4);
  // K == the data's length: the data is the only segment.
  for (std::string data : {std::string("abcdefgh"), std::string("abcdefghi"), std::string("x")}) {
    hier::SegmentProposal q(data, std::int64_t(data.size()));
    REQUIRE(q.size() == 1);
    CHECK(q.total() == 1);
    auto s = q.segment(0);
    CHECK(std::string(s.begin(), s.end()) == data);
  }
  hier::SegmentProposal one("x", hier::Delimited<4>("\n"));
  REQUIRE(one.size() == 1);
  CHECK(one.total() == 1);
  // Every byte value once (shuffled): K = 1 gives 0 .. 255 in unsigned order.
  std::string all(256, '\0');
  for (int v = 0; v < 256; ++v) all[std::size_t(v)] = char((v * 97 + 13) % 256);
  hier::SegmentProposal bytes(all, 1);
  REQUIRE(bytes.size() == 256);
  for (std::int64_t i = 0; i < 256; ++i) {
    CHECK(bytes.segment(i)[0] == std::uint8_t(i));
    CHECK(bytes.count(i) == 1);
  }
}

}  // namespace HSEQ_TEST_UNIT
