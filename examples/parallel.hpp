// SPDX-License-Identifier: MIT
// The programs' processes (docs/distributed.md). Built with MPI (CMake: HSEQ_MPI, which defines
// HSEQ_EXAMPLES_MPI for the CPU programs), hseq-train trains on every process that
// `mpirun -np N hseq-train ...` starts (comm::Mpi); started on its own, it is one process and
// never initializes MPI. Without MPI it is always one process (comm::Single).
#pragma once

#include "hseq/comm/single.hpp"
#if defined(HSEQ_EXAMPLES_MPI)
#include "hseq/comm/mpi.hpp"
#endif

namespace cli {

#if defined(HSEQ_EXAMPLES_MPI)
using Comm = hseq::comm::Mpi;
/// Initializes MPI for main's lifetime when the program runs under an MPI launcher.
struct ParallelRuntime {
  ParallelRuntime(int* argc, char*** argv) : mpi(argc, argv, hseq::comm::MpiRuntime::When::kIfLaunched) {}
  hseq::comm::MpiRuntime mpi;
};
/// MPI_COMM_WORLD under a launcher, else a world of one process.
inline Comm& communicator() {
  static Comm world = Comm::world();
  return world;
}
/// After an error on this process: ends the others, which would wait for it in their next
/// collective (returns when there are none).
inline void abort_peers(int code) {
  if (communicator().size() > 1) hseq::comm::MpiRuntime::abort(code);
}
#else
using Comm = hseq::comm::Single;
struct ParallelRuntime {
  ParallelRuntime(int*, char***) {}
};
inline Comm& communicator() {
  static Comm one;
  return one;
}
inline void abort_peers(int) {}
#endif

/// Whether this process speaks for the run (rank 0): the others print nothing to stdout and write
/// no logs.
inline bool lead_process() { return communicator().rank() == 0; }

}  // namespace cli
