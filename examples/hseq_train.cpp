// SPDX-License-Identifier: MIT
// hseq-train: trains a byte-level language model on any text file, shows progress, reports
// validation bits per character, writes a checkpoint and prints a sample. The model families come
// from the registry (examples/families/list.def); this file names none of them. SIGINT / SIGTERM
// during training write the checkpoint and exit 130 / 143 (examples/interrupt.hpp).
#include <iostream>

#include "family.hpp"
#include "interrupt.hpp"
#include "parallel.hpp"

int main(int argc, char** argv) try {
  // Under mpirun: MPI for the whole run, and only rank 0 prints (examples/parallel.hpp).
  cli::ParallelRuntime parallel(&argc, &argv);
  if (!cli::lead_process()) std::cout.setstate(std::ios::badbit);
  cli::Args a("hseq-train", "Trains a byte-level language model on a text file and reports validation bits per character.");
  a.flag("data", "", "training text, read as bytes: a file, a directory (every file below it, hidden ones aside, in path order) or a comma-separated list of them; mapped, never read whole. Required")
      .flag("val-fraction", "0.1", "fraction of the file (its end) held out for validation");
  cli::add_model_flags(a);
  cli::add_train_flags(a);
  cli::add_thread_flag(a);
  if (!a.parse(argc, argv)) return 0;
  cli::apply_threads(a);
  HSEQ_CHECK(!a.str("data").empty(), "hseq-train: --data is required (a text file); see --help");

  cli::ModelChoice choice = a.str("resume").empty() ? cli::choice_from_flags(a) : cli::choice_from_checkpoint(a.str("resume"));
  if (!a.str("resume").empty()) cli::check_resume_flags(a, choice);
  choice.family->train(a, choice);
  return 0;
} catch (cli::Interrupted const& i) {  // stopped by a signal; the checkpoint is written
  return i.code;
} catch (std::exception const& e) {
  std::cerr << cli::error_text(e) << std::endl;
  cli::abort_peers(1);
  return 1;
}
