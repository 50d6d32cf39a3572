// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cstdint>
#include <sstream>
#include <string>

#include "hseq/ops/attention_mask.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::ops::AttentionMask;

namespace {
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (hseq::Error const& e) {
    return e.what();
  }
  return "<no exception>";
}

/// The definition, key by key: prefix keys always; key j >= prefix (position j - prefix of the
/// keyed sequence) iff its newest token (j - prefix) * k_rate + k_offset is not after the query's
/// i * q_rate + q_offset. For `none` every key.
bool allowed_def(AttentionMask const& m, std::int64_t i, std::int64_t j, std::int64_t prefix) {
  if (m.kind == AttentionMask::Kind::kNone || j < prefix) return true;
  return (j - prefix) * m.k_rate + m.k_offset <= i * m.q_rate + m.q_offset;
}

std::string str(AttentionMask const& m) {
  std::ostringstream os;
  os << m;
  return os.str();
}
}  // namespace

TEST_CASE("attention_mask: none sees every key") {
  auto m = AttentionMask::none();
  CHECK(m.kind == AttentionMask::Kind::kNone);
  for (std::int64_t i : {0, 1, 5, 1000}) {
    CHECK(m.visible(i, 7, 0) == 7);
    CHECK(m.visible(i, 7, 3) == 7);
    CHECK(m.allowed(i, 6, 7, 0));
    CHECK_FALSE(m.allowed(i, 7, 7, 0));  // beyond Tk
  }
  CHECK(m.visible(0, 0, 0) == 0);
}

TEST_CASE("attention_mask: causal sees keys up to and including the query") {
  auto m = AttentionMask::causal();
  CHECK(m.kind == AttentionMask::Kind::kCausal);
  for (std::int64_t i = 0; i < 10; ++i) CHECK(m.visible(i, 10, 0) == i + 1);
  CHECK(m.allowed(3, 3, 10, 0));
  CHECK_FALSE(m.allowed(3, 4, 10, 0));
  // Clamped to Tk when there are more queries than keys.
  CHECK(m.visible(12, 10, 0) == 10);
  // A prefix of 4 memory keys is always visible: query i sees 4 + i + 1 keys.
  CHECK(m.visible(0, 10, 4) == 5);
  CHECK(m.visible(2, 10, 4) == 7);
  CHECK(m.visible(9, 10, 4) == 10);
  CHECK(m.allowed(0, 3, 10, 4));
  CHECK(m.allowed(0, 4, 10, 4));
  CHECK_FALSE(m.allowed(0, 5, 10, 4));
  // Causal is rates(1, 0, 1, 0).
  auto r = AttentionMask::rates(1, 0, 1, 0);
  for (std::int64_t i = 0; i < 12; ++i)
    for (std::int64_t p : {0, 2}) CHECK(r.visible(i, 10, p) == m.visible(i, 10, p));
}

TEST_CASE("attention_mask: upsampling rates(1, 0, k, 0) sees short keys j <= floor(p / k)") {
  auto m = AttentionMask::rates(1, 0, 4, 0);
  // p = 0..3 -> key 0 only; p = 4..7 -> keys 0, 1; p = 8 -> keys 0..2.
  std::int64_t const want[] = {1, 1, 1, 1, 2, 2, 2, 2, 3};
  for (std::int64_t p = 0; p < 9; ++p) CHECK(m.visible(p, 100, 0) == want[p]);
  CHECK(m.allowed(7, 1, 100, 0));
  CHECK_FALSE(m.allowed(7, 2, 100, 0));
  CHECK(m.visible(100, 5, 0) == 5);  // clamped
  auto three = AttentionMask::rates(1, 0, 3, 0);
  for (std::int64_t p = 0; p < 30; ++p) CHECK(three.visible(p, 100, 0) == p / 3 + 1);
}

TEST_CASE("attention_mask: pooling rates(k, k-1, 1, 0) sees keys up to j k + k - 1") {
  auto m = AttentionMask::rates(4, 3, 1, 0);
  CHECK(m.visible(0, 100, 0) == 4);  // keys 0..3
  CHECK(m.visible(1, 100, 0) == 8);  // keys 0..7
  CHECK(m.visible(2, 100, 0) == 12);
  CHECK(m.visible(3, 10, 0) == 10);  // clamped
  CHECK(m.allowed(1, 7, 100, 0));
  CHECK_FALSE(m.allowed(1, 8, 100, 0));
}

TEST_CASE("attention_mask: offsets that put keys after every query leave only the prefix") {
  auto m = AttentionMask::rates(1, 0, 1, 3);  // key j's newest token is j + 3
  CHECK(m.visible(0, 10, 0) == 0);
  CHECK(m.visible(2, 10, 0) == 0);
  CHECK(m.visible(3, 10, 0) == 1);
  CHECK(m.visible(0, 10, 2) == 2);
  CHECK(m.visible(3, 10, 2) == 3);
  // Negative query offsets: num = 2 i - 5, key rate 2: i = 0, 1, 2 see nothing (num < 0), i = 3 sees
  // j <= 0, i = 4 sees j <= 1 (num = 3).
  auto n = AttentionMask::rates(2, -5, 2, 0);
  std::int64_t const want[] = {0, 0, 0, 1, 2, 3};
  for (std::int64_t i = 0; i < 6; ++i) CHECK(n.visible(i, 20, 0) == want[i]);
  // num = -1 must not round toward zero into "key 0 visible".
  auto o = AttentionMask::rates(1, -1, 3, 0);
  CHECK(o.visible(0, 10, 0) == 0);
  CHECK(o.visible(1, 10, 0) == 1);
}

TEST_CASE("attention_mask: visible agrees with the definition and is non-decreasing") {
  AttentionMask masks[] = {AttentionMask::none(),
                           AttentionMask::causal(),
                           AttentionMask::rates(1, 0, 2, 0),
                           AttentionMask::rates(1, 0, 5, 0),
                           AttentionMask::rates(3, 2, 1, 0),
                           AttentionMask::rates(2, -3, 3, 1),
                           AttentionMask::rates(5, 0, 3, -4),
                           AttentionMask::rates(1, 7, 1, 0)};
  std::int64_t disagreements = 0, decreases = 0, holes = 0;
  for (auto const& m : masks)
    for (std::int64_t tk : {0, 1, 6, 17})
      for (std::int64_t prefix = 0; prefix <= std::min<std::int64_t>(tk, 3); ++prefix) {
        std::int64_t prev = -1;
        for (std::int64_t i = 0; i < 25; ++i) {
          std::int64_t v = m.visible(i, tk, prefix), count = 0;
          for (std::int64_t j = 0; j < tk; ++j) {
            bool def = allowed_def(m, i, j, prefix);
            count += def;
            disagreements += def != m.allowed(i, j, tk, prefix);
            if (j > 0 && def && !allowed_def(m, i, j - 1, prefix)) ++holes;  // visible keys form a prefix
          }
          disagreements += v != count;
          decreases += v < prev;
          prev = v;
          disagreements += v < std::min(prefix, tk) || v > tk;
        }
      }
  CHECK(disagreements == 0);
  CHECK(decreases == 0);
  CHECK(holes == 0);
}

TEST_CASE("attention_mask: rates below 1 throw naming them") {
  CHECK_THROWS_AS(AttentionMask::rates(0, 0, 1, 0), hseq::Error);
  CHECK_THROWS_AS(AttentionMask::rates(1, 0, -2, 0), hseq::Error);
  std::string msg = error_of([] { (void)AttentionMask::rates(1, 0, 0, 0); });
  CHECK(msg.find("k_rate 0") != std::string::npos);
  msg = error_of([] { (void)AttentionMask::rates(-3, 0, 1, 0); });
  CHECK(msg.find("q_rate -3") != std::string::npos);
}

TEST_CASE("attention_mask: printing") {
  CHECK(str(AttentionMask::none()) == "none");
  CHECK(str(AttentionMask::causal()) == "causal");
  CHECK(str(AttentionMask::rates(1, 0, 4, 0)) == "rates(q 1i+0, k 4j+0)");
  CHECK(str(AttentionMask::rates(4, 3, 1, 0)) == "rates(q 4i+3, k 1j+0)");
}

}  // namespace HSEQ_TEST_UNIT
