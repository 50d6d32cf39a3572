// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/workspace.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using hseq::Arena;
using hseq::ArenaScope;
using hseq::HostSpace;
using hseq::Shape;
using hseq::Workspace;

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

std::uintptr_t addr(void const* p) { return reinterpret_cast<std::uintptr_t>(p); }

/// The same carving sequence run on any arena (a real one and a measuring one must agree).
void carve(Arena<HostSpace>& a) {
  (void)a.take<float>(Shape{1}, "one float");
  (void)a.take<double>(Shape{3, 7}, "doubles");
  (void)a.take<std::int8_t>(Shape{257}, "bytes");
  {
    ArenaScope<HostSpace> scope(a);
    (void)a.take<float>(Shape{1000}, "scratch");
  }
  (void)a.take<std::int32_t>(Shape{64}, "ints");
  (void)a.take<float>(Shape{0}, "empty");
}
}  // namespace

TEST_CASE("workspace: aligned_bytes rounds up to 256") {
  static_assert(hseq::kWorkspaceAlignment == 256);
  static_assert(hseq::aligned_bytes<float>(0) == 0);
  CHECK(hseq::aligned_bytes<float>(1) == 256);
  CHECK(hseq::aligned_bytes<float>(64) == 256);
  CHECK(hseq::aligned_bytes<float>(65) == 512);
  CHECK(hseq::aligned_bytes<double>(32) == 256);
  CHECK(hseq::aligned_bytes<double>(33) == 512);
  CHECK(hseq::aligned_bytes<std::int8_t>(257) == 512);
}

TEST_CASE("workspace: every take is aligned to 256 bytes and takes do not overlap") {
  Workspace<hseq::cpu> ws(1 << 16);
  auto a = ws.arena();
  REQUIRE(addr(ws.arena().take<char>(Shape{1}).data) % 256 == 0);  // the base itself is aligned
  auto f1 = a.take<float>(Shape{1});
  auto d = a.take<double>(Shape{3, 5});
  auto b = a.take<std::int8_t>(Shape{300});
  auto f2 = a.take<float>(Shape{64});
  auto f3 = a.take<float>(Shape{65});
  auto i = a.take<std::int32_t>(Shape{2, 2, 2});
  for (std::uintptr_t p : {addr(f1.data), addr(d.data), addr(b.data), addr(f2.data), addr(f3.data), addr(i.data)})
    CHECK(p % 256 == 0);
  CHECK(addr(d.data) - addr(f1.data) == 256);
  CHECK(addr(b.data) - addr(d.data) == 256);   // 120 bytes -> 256
  CHECK(addr(f2.data) - addr(b.data) == 512);  // 300 bytes -> 512
  CHECK(addr(f3.data) - addr(f2.data) == 256);
  CHECK(addr(i.data) - addr(f3.data) == 512);
  CHECK(a.used() == 256 + 256 + 512 + 256 + 512 + 256);
  CHECK(f3.shape == Shape{65});
  CHECK(i.shape == Shape{2, 2, 2});
  // The memory is usable.
  for (std::int64_t k = 0; k < f3.numel(); ++k) f3[k] = float(k);
  CHECK(f3[64] == 64.0f);
}

TEST_CASE("workspace: exhaustion throws naming the buffer and leaves the arena unchanged") {
  Workspace<hseq::cpu> ws(1024);
  auto a = ws.arena();
  CHECK(a.capacity() == 1024);
  (void)a.take<float>(Shape{100});  // 400 -> 512 bytes
  std::size_t before = a.used();
  CHECK_THROWS_AS((void)a.take<float>(Shape{200}, "attention probs"), hseq::Error);
  std::string msg = error_of([&] { (void)a.take<float>(Shape{2, 100}, "attention probs"); });
  CHECK(msg.find("attention probs") != std::string::npos);
  CHECK(msg.find("[2, 100]") != std::string::npos);
  CHECK(a.used() == before);
  // Exactly filling the remainder is fine, one more byte is not.
  CHECK_NOTHROW((void)a.take<float>(Shape{128}, "rest"));
  CHECK(a.used() == 1024);
  CHECK_THROWS_AS((void)a.take<char>(Shape{1}, "one more"), hseq::Error);
  CHECK_NOTHROW((void)a.take<char>(Shape{0}, "nothing"));
}

TEST_CASE("workspace: a measuring arena counts the same bytes as a real one") {
  auto m = Arena<HostSpace>::measuring();
  CHECK(m.is_measuring());
  carve(m);
  Workspace<hseq::cpu> ws(m.high_water());
  auto r = ws.arena();
  CHECK_FALSE(r.is_measuring());
  CHECK_NOTHROW(carve(r));  // the plan suffices
  CHECK(r.used() == m.used());
  CHECK(r.high_water() == m.high_water());
  // Hand count: 256 + 256 + 512 + (scratch 4000 -> 4096, released) + 256 + 0.
  CHECK(m.used() == 256 + 256 + 512 + 256);
  CHECK(m.high_water() == 256 + 256 + 512 + 4096);
  // A measuring arena hands out null views of the right shape.
  auto v = m.take<double>(Shape{4, 4});
  CHECK(v.data == nullptr);
  CHECK(v.shape == Shape{4, 4});
  // A workspace one byte smaller than the plan is not enough.
  Workspace<hseq::cpu> small(m.high_water() - 1);
  auto s = small.arena();
  CHECK_THROWS_AS(carve(s), hseq::Error);
}

TEST_CASE("workspace: ArenaScope rewinds, high_water remembers the peak") {
  Workspace<hseq::cpu> ws(8192);
  auto a = ws.arena();
  (void)a.take<float>(Shape{10});
  std::size_t mark = a.mark();
  CHECK(mark == 256);
  void* first_scratch = nullptr;
  {
    ArenaScope<HostSpace> scope(a);
    first_scratch = a.take<float>(Shape{300}).data;  // 1200 -> 1280
    (void)a.take<float>(Shape{1});
    CHECK(a.used() == 256 + 1280 + 256);
    {
      ArenaScope<HostSpace> inner(a);
      (void)a.take<double>(Shape{100});  // 800 -> 1024
      CHECK(a.used() == 256 + 1280 + 256 + 1024);
    }
    CHECK(a.used() == 256 + 1280 + 256);
  }
  CHECK(a.used() == mark);
  CHECK(a.high_water() == 256 + 1280 + 256 + 1024);
  // Memory after the mark is handed out again.
  CHECK(a.take<float>(Shape{1}).data == first_scratch);
  a.reset_high_water();
  CHECK(a.high_water() == a.used());
  a.reset();
  CHECK(a.used() == 0);
  CHECK(a.high_water() == 512);  // reset() keeps the peak
}

TEST_CASE("workspace: rewind past the offset throws") {
  Workspace<hseq::cpu> ws(1024);
  auto a = ws.arena();
  (void)a.take<float>(Shape{1});
  CHECK_THROWS_AS(a.rewind(512), hseq::Error);
  CHECK(a.used() == 256);
  CHECK_NOTHROW(a.rewind(0));
  CHECK(a.used() == 0);
}

TEST_CASE("workspace: reserve grows and never shrinks") {
  Workspace<hseq::cpu> ws;
  CHECK(ws.capacity() == 0);
  auto empty = ws.arena();
  CHECK(empty.capacity() == 0);
  CHECK_THROWS_AS((void)empty.take<float>(Shape{1}, "x"), hseq::Error);
  ws.reserve(1000);
  CHECK(ws.capacity() == 1000);
  ws.reserve(10);
  CHECK(ws.capacity() == 1000);
  ws.reserve(5000);
  CHECK(ws.capacity() == 5000);
  auto a = ws.arena();
  CHECK(a.capacity() == 5000);
  auto v = a.take<float>(Shape{1000}, "big");
  CHECK(addr(v.data) % 256 == 0);
  v[999] = 1.0f;  // writable to the end
  CHECK(v[999] == 1.0f);
}

TEST_CASE("workspace: a failed reserve keeps the old buffer usable") {
  hseq::Workspace<hseq::cpu> ws(1024);
  CHECK_THROWS_AS(ws.reserve(SIZE_MAX - 8), hseq::Error);
  CHECK(ws.capacity() == 1024);
  auto a = ws.arena();
  auto v = a.take<float>(hseq::Shape{16});
  CHECK(v.data != nullptr);
  v[15] = 1.f;  // the memory is real
  CHECK(v[15] == 1.f);
}

#if defined(HSEQ_ASAN)
// The sanitizer build (scripts/test.sh --sanitize): the arena's poisoning, which turns an overrun
// of a workspace view or a read of released scratch into an ASan report.
TEST_CASE("workspace: under ASan only live views are addressable") {
  Workspace<hseq::cpu> ws(4096);
  auto arena = ws.arena();
  auto a = arena.take<float>(Shape{10}, "a");  // 40 bytes, then 216 bytes of slack
  auto addr = [](void const* p) { return const_cast<void*>(p); };
  CHECK(__asan_address_is_poisoned(addr(a.data)) == 0);
  CHECK(__asan_address_is_poisoned(addr(a.data + 9)) == 0);
  CHECK(__asan_address_is_poisoned(addr(a.data + 10)) != 0);  // one past the end
  CHECK(__asan_address_is_poisoned(addr(reinterpret_cast<char const*>(a.data) + 255)) != 0);
  std::size_t mark = arena.mark();
  {
    ArenaScope<HostSpace> scope(arena);
    auto b = arena.take<double>(Shape{32}, "b");  // exactly 256 bytes: no slack
    CHECK(__asan_address_is_poisoned(addr(b.data + 31)) == 0);
  }
  char* released = reinterpret_cast<char*>(a.data) + mark;  // a sits at offset 0
  CHECK(__asan_address_is_poisoned(released) != 0);  // b's memory after the scope
  auto c = arena.take<char>(Shape{300}, "c");       // taken again: addressable again
  CHECK(c.data == released);
  CHECK(__asan_address_is_poisoned(c.data + 299) == 0);
  CHECK(__asan_address_is_poisoned(c.data + 300) != 0);
}
#endif

}  // namespace HSEQ_TEST_UNIT
