// SPDX-License-Identifier: MIT
// doctest's main for the tests run under mpirun (test/mpi/): MPI is initialized first and
// finalized last, and every process runs every test case (each a collective, in the same order).
// A failure on one process fails the run: mpirun returns the first non-zero exit status.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "hseq/comm/mpi.hpp"

int main(int argc, char** argv) {
  hseq::comm::MpiRuntime mpi(&argc, &argv, hseq::comm::MpiRuntime::When::kAlways);
  doctest::Context context(argc, argv);
  int const rc = context.run();
  return rc;
}
