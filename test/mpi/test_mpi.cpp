// SPDX-License-Identifier: MIT
// comm::Mpi's collectives (include/hseq/comm/mpi.hpp), run under `mpirun -np 2` and `-np 3`
// (ctest entries mpi.np2, mpi.np3).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "hseq/comm/all_reduce.hpp"
#include "hseq/comm/mpi.hpp"
#include "hseq/core/rng.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

namespace {
/// Process r's element i: normal draws over magnitudes 1e-3 .. 1e3, so that the order of a sum
/// shows in its bits.
/// Not inlined: the tests' own sums must round each addition as the reduction does (inlined, the
/// multiplication below could fuse with them into one FMA).
template <class T>
[[gnu::noinline]] T value(int r, std::size_t i) {
  return T(philox_normal(77, std::uint64_t(r), i) * std::pow(10.0, double(int(i % 7) - 3)));
}
}  // namespace

TEST_CASE("comm::Mpi: all_reduce_sum is the rank-ordered sum on every element, for any bucket size") {
  comm::Mpi world = comm::Mpi::world();
  int const p = world.size(), r = world.rank();
  REQUIRE(p >= 2);  // run under mpirun -np 2 or more
  cpu::Context ctx;
  for (std::size_t bucket : {std::size_t(64), std::size_t(1000), std::size_t(8) << 20}) {
    comm::Mpi c(MPI_COMM_WORLD, {.bucket_bytes = bucket});
    CHECK(c.size() == p);
    CHECK(c.rank() == r);
    for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(7), std::size_t(1001), std::size_t(100003)}) {
      CAPTURE(bucket);
      CAPTURE(n);
      std::vector<float> f(n), fw(n);
      std::vector<double> d(n), dw(n);
      for (std::size_t i = 0; i < n; ++i) {
        f[i] = value<float>(r, i);
        d[i] = value<double>(r, i);
        fw[i] = value<float>(0, i);
        dw[i] = value<double>(0, i);
        for (int k = 1; k < p; ++k) {  // ((x_0 + x_1) + x_2) + ...
          fw[i] += value<float>(k, i);
          dw[i] += value<double>(k, i);
        }
      }
      c.all_reduce_sum(ctx, f.data(), n);
      c.all_reduce_sum(ctx, d.data(), n);
      CHECK(std::memcmp(f.data(), fw.data(), n * sizeof(float)) == 0);
      CHECK(std::memcmp(d.data(), dw.data(), n * sizeof(double)) == 0);
    }
  }
}

TEST_CASE("comm::all_reduce_mean over comm::Mpi: the rank-ordered sum times 1 / P") {
  comm::Mpi c = comm::Mpi::world();
  int const p = c.size();
  REQUIRE(p >= 2);
  cpu::Context ctx;
  std::size_t const n = 1000;
  std::vector<float> v(n), want(n);
  for (std::size_t i = 0; i < n; ++i) {
    v[i] = value<float>(c.rank(), i);
    float sum = value<float>(0, i);
    for (int k = 1; k < p; ++k) sum += value<float>(k, i);
    want[i] = sum * float(1.0 / double(p));
  }
  comm::all_reduce_mean<cpu>(c, ctx, View<float, HostSpace>(v.data(), Shape{std::int64_t(n)}));
  CHECK(v == want);
}

TEST_CASE("comm::Mpi: the rank order is what makes the sum reproducible (another order differs)") {
  comm::Mpi c = comm::Mpi::world();
  REQUIRE(c.size() >= 2);
  // The sums of all processes' values in rank order and in reverse order differ somewhere for three
  // or more processes; for two, a + b == b + a, and the order-independence is exact.
  std::size_t const n = 4096;
  std::size_t differ = 0;
  for (std::size_t i = 0; i < n; ++i) {
    float fwd = value<float>(0, i), rev = value<float>(c.size() - 1, i);
    for (int k = 1; k < c.size(); ++k) fwd += value<float>(k, i);
    for (int k = c.size() - 2; k >= 0; --k) rev += value<float>(k, i);
    differ += fwd != rev;
  }
  if (c.size() >= 3) CHECK(differ > 0);
  else CHECK(differ == 0);
}

TEST_CASE("comm::Mpi: broadcast, host sums, gathers and barriers") {
  comm::Mpi c = comm::Mpi::world();
  int const p = c.size(), r = c.rank();
  REQUIRE(p >= 2);
  cpu::Context ctx;
  for (int root = 0; root < p; ++root) {
    std::vector<float> v(1000);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = value<float>(r, i);
    c.broadcast(ctx, v.data(), v.size(), root);
    bool same = true;
    for (std::size_t i = 0; i < v.size(); ++i) same = same && v[i] == value<float>(root, i);
    CHECK(same);
    char text[16] = {};
    if (r == root) std::memcpy(text, "from the root", 14);
    c.host_broadcast(text, sizeof text, root);
    CHECK(std::string(text) == "from the root");
  }
  std::vector<double> h = {double(r), 0.5, value<double>(r, 3)};
  c.host_all_reduce_sum(h.data(), h.size());
  double want = value<double>(0, 3);
  for (int k = 1; k < p; ++k) want += value<double>(k, 3);
  CHECK(h[0] == double(p * (p - 1) / 2));
  CHECK(h[1] == 0.5 * p);
  CHECK(h[2] == want);
  std::vector<std::uint64_t> all(std::size_t(p), 0);
  c.host_all_gather(std::uint64_t(1000 + r), all.data());
  for (int k = 0; k < p; ++k) CHECK(all[std::size_t(k)] == std::uint64_t(1000 + k));
  c.barrier();
  char one = 0;
  CHECK_THROWS_WITH_AS(c.host_broadcast(&one, 1, p), doctest::Contains("broadcast from rank"),
                       std::exception);
  std::vector<double> many(comm::kMaxHostValues + 1);
  CHECK_THROWS_WITH_AS(c.host_all_reduce_sum(many.data(), many.size()), doctest::Contains("at most"), std::exception);
}

}  // namespace HSEQ_TEST_UNIT
