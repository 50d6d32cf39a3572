// SPDX-License-Identifier: MIT
// hseq-eval: bits per character of a checkpoint on a text file's validation split (or all of it).
// The checkpoint's model kind chooses the family (examples/families/list.def).
#include <iostream>

#include "family.hpp"

int main(int argc, char** argv) try {
  cli::Args a("hseq-eval", "Reports bits per character of a trained checkpoint on a text file.");
  a.flag("checkpoint", "", "checkpoint written by hseq-train. Required")
      .flag("data", "", "text to evaluate on: a file, a directory (its files in path order) or a comma-separated list of them. Required")
      .flag("val-fraction", "0.1", "evaluate on the last fraction of the file, as hseq-train held it out (0 < f <= 0.5)")
      .flag("seq-len", "", "window length (default: the model's context)")
      .flag("batch", "16", "windows per forward pass")
      .flag("windows", "0", "evaluate this many evenly spread windows (0: all)")
      .flag("segment", "0",
            "transformer-xl, compressive: score each window in consecutive segments of this many bytes over a memory "
            "(0: each window in one pass, without a memory)")
      .flag("eval-mem-len", "0", "with --segment: the memory's rows per layer (0: the model's --mem-len)")
      .flag("score-after", "",
            "score only the bytes that follow this one character (a task's answers, e.g. '?' in bench/long_range.sh)")
      .toggle("accuracy", "also report the fraction of scored bytes the model's most likely byte predicts")
      .flag("export-latents", "",
            "autoencoder: write the latents of every validation window to this safetensors file (\"latents\" "
            "[windows, m, dim], \"offsets\" [windows])");
  cli::add_thread_flag(a);
  if (!a.parse(argc, argv)) return 0;
  cli::apply_threads(a);
  HSEQ_CHECK(!a.str("checkpoint").empty() && !a.str("data").empty(), "hseq-eval: --checkpoint and --data are required");
  auto choice = cli::choice_from_checkpoint(a.str("checkpoint"));
  choice.family->evaluate(a, choice);
  return 0;
} catch (std::exception const& e) {
  std::cerr << cli::error_text(e) << std::endl;
  return 1;
}
