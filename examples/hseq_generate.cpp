// SPDX-License-Identifier: MIT
// hseq-generate: samples text from a checkpoint with the model's cache. The checkpoint's model
// kind chooses the family (examples/families/list.def).
#include <iostream>

#include "family.hpp"

int main(int argc, char** argv) try {
  cli::Args a("hseq-generate", "Generates text from a trained checkpoint (cached, seeded sampling).");
  a.flag("checkpoint", "", "checkpoint written by hseq-train. Required")
      .flag("prompt", "\n", "text to continue")
      .flag("bytes", "500", "bytes to generate")
      .flag("stop", "", "stop as soon as the output ends with this string")
      .flag("temperature", "0.8", "softmax temperature; 0 is greedy")
      .flag("top-k", "40", "sample among the k most likely bytes (0: all)")
      .flag("top-p", "1.0", "sample among the most likely bytes whose probability reaches p (1: all)")
      .flag("seed", "1", "sampling seed (same seed, same text)");
  cli::add_thread_flag(a);
  if (!a.parse(argc, argv)) return 0;
  cli::apply_threads(a);
  HSEQ_CHECK(!a.str("checkpoint").empty(), "hseq-generate: --checkpoint is required");
  auto choice = cli::choice_from_checkpoint(a.str("checkpoint"));
  choice.family->generate(a, choice);
  return 0;
} catch (std::exception const& e) {
  std::cerr << cli::error_text(e) << std::endl;
  return 1;
}
