// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "hseq/backend/cpu.hpp"

#if defined(_OPENMP)
#include <omp.h>
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

#endif

using hseq::cpu;

static_assert(hseq::Backend<cpu>);
static_assert(std::is_same_v<cpu::Space, hseq::HostSpace>);
static_assert(std::is_same_v<hseq::ContextOf<cpu>, cpu::Context>);
static_assert(std::is_default_constructible_v<cpu::Context>);
static_assert(cpu::kAlignment == 256);

TEST_CASE("cpu: satisfies the Backend concept and is available") {
  CHECK(hseq::Backend<cpu>);
  CHECK(cpu::available());
  CHECK(std::string(cpu::kName) == "cpu");
  cpu::Context ctx;
  CHECK(ctx.num_threads == 0);
  cpu::synchronize(ctx);  // a no-op that must exist
}

TEST_CASE("cpu: allocate returns 256-byte aligned writable memory") {
  for (std::size_t bytes : {std::size_t(1), std::size_t(3), std::size_t(255), std::size_t(256), std::size_t(257),
                            std::size_t(4096), std::size_t(1000001)}) {
    INFO("bytes = ", bytes);
    void* p = cpu::allocate(bytes);
    REQUIRE(p != nullptr);
    CHECK(reinterpret_cast<std::uintptr_t>(p) % 256 == 0);
    auto* b = static_cast<unsigned char*>(p);
    std::memset(b, 0xAB, bytes);  // the whole requested range is writable
    CHECK(b[0] == 0xAB);
    CHECK(b[bytes - 1] == 0xAB);
    cpu::deallocate(p);
  }
  // Distinct live allocations do not overlap.
  void* a = cpu::allocate(300);
  void* b = cpu::allocate(300);
  auto pa = reinterpret_cast<std::uintptr_t>(a), pb = reinterpret_cast<std::uintptr_t>(b);
  CHECK((pa + 300 <= pb || pb + 300 <= pa));
  cpu::deallocate(a);
  cpu::deallocate(b);
}

TEST_CASE("cpu: zero-byte allocate and null deallocate are harmless") {
  void* p = nullptr;
  CHECK_NOTHROW(p = cpu::allocate(0));
  CHECK(reinterpret_cast<std::uintptr_t>(p) % 256 == 0);
  cpu::deallocate(p);
  cpu::deallocate(nullptr);
}

TEST_CASE("cpu: copy_bytes and zero_bytes") {
  cpu::Context ctx;
  std::vector<unsigned char> src(1000), dst(1000, 0xFF);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<unsigned char>(i * 7 + 1);
  cpu::copy_bytes(ctx, dst.data() + 10, src.data(), 500);
  CHECK(std::memcmp(dst.data() + 10, src.data(), 500) == 0);
  CHECK(dst[9] == 0xFF);    // before the range: untouched
  CHECK(dst[510] == 0xFF);  // after the range: untouched
  cpu::zero_bytes(ctx, dst.data() + 100, 50);
  CHECK(dst[99] == src[89]);
  for (std::size_t i = 100; i < 150; ++i) CHECK(dst[i] == 0);
  CHECK(dst[150] == src[140]);
  // Zero-length operations do not touch (or even dereference) their pointers.
  CHECK_NOTHROW(cpu::copy_bytes(ctx, nullptr, nullptr, 0));
  CHECK_NOTHROW(cpu::zero_bytes(ctx, nullptr, 0));
}

TEST_CASE("cpu: thread helpers") {
  CHECK(hseq::detail::max_threads() >= 1);
  CHECK(hseq::detail::thread_id() == 0);  // outside a parallel region
#if defined(_OPENMP)
  CHECK(hseq::detail::max_threads() == omp_get_max_threads());
  int bad = 0;
#pragma omp parallel reduction(+ : bad)
  bad += hseq::detail::thread_id() != omp_get_thread_num();
  CHECK(bad == 0);
#endif
}

TEST_CASE("cpu: upload and download copy n elements") {
  cpu::Context ctx;
  std::vector<double> host{1.5, -2.0, 3.25, 4.0, 5.0};
  auto* dev = static_cast<double*>(cpu::allocate(sizeof(double) * host.size()));
  cpu::upload<double>(ctx, dev, host.data(), 4);
  CHECK(dev[0] == 1.5);
  CHECK(dev[3] == 4.0);
  std::vector<double> back(5, -1.0);
  cpu::download<double>(ctx, back.data(), dev, 3);
  CHECK(back[0] == 1.5);
  CHECK(back[1] == -2.0);
  CHECK(back[2] == 3.25);
  CHECK(back[3] == -1.0);  // only n elements move
  CHECK_NOTHROW(cpu::upload<double>(ctx, nullptr, nullptr, 0));
  CHECK_NOTHROW(cpu::download<double>(ctx, nullptr, nullptr, 0));
  cpu::deallocate(dev);
}

}  // namespace HSEQ_TEST_UNIT
