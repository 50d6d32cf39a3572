// SPDX-License-Identifier: MIT
// hseq_bench_allreduce: the gradient all-reduce of data-parallel training (comm::Mpi) against MPI's
// own MPI_Allreduce, on a buffer of a model's size; run under mpirun (bench/distributed.sh).
//   mpirun -n 2 hseq_bench_allreduce [floats=4800000] [repeats=20]
// Prints, from rank 0, one line per method: milliseconds per all-reduce (the median of the
// repeats) and the bus bandwidth 2 (P - 1) / P * bytes / time, the data each process sends.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "hseq/comm/mpi.hpp"

int main(int argc, char** argv) try {
  hseq::comm::MpiRuntime runtime(&argc, &argv, hseq::comm::MpiRuntime::When::kAlways);
  std::size_t const n = argc > 1 ? std::size_t(std::atoll(argv[1])) : std::size_t(4800000);
  int const repeats = argc > 2 ? std::atoi(argv[2]) : 20;
  hseq::comm::Mpi c = hseq::comm::Mpi::world();
  hseq::cpu::Context ctx;
  std::vector<float> g(n, 1.0f / float(c.rank() + 1));
  auto time_it = [&](auto&& reduce) {
    std::vector<double> ms;
    for (int i = 0; i < repeats + 2; ++i) {  // two warm-up rounds
      c.barrier();
      auto t0 = std::chrono::steady_clock::now();
      reduce();
      double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (i >= 2) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  };
  double const ordered = time_it([&] { c.all_reduce_sum(ctx, g.data(), n); });
  double const mpi = time_it([&] { MPI_Allreduce(MPI_IN_PLACE, g.data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); });
  if (c.rank() == 0) {
    double const p = c.size(), bytes = double(n) * sizeof(float), bus = 2 * (p - 1) / p * bytes;
    std::printf("processes %d, floats %zu (%.1f MiB), median of %d\n", c.size(), n, bytes / (1 << 20), repeats);
    std::printf("comm::Mpi::all_reduce_sum (rank-ordered): %.3f ms, bus %.2f GB/s\n", ordered, bus / ordered / 1e6);
    std::printf("MPI_Allreduce (library order):            %.3f ms, bus %.2f GB/s\n", mpi, bus / mpi / 1e6);
  }
  return 0;
} catch (std::exception const& e) {
  std::fprintf(stderr, "%s\n", e.what());
  hseq::comm::MpiRuntime::abort(1);
  return 1;
}
