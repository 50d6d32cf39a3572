// SPDX-License-Identifier: MIT
// hseq-generate: samples text from a checkpoint with a key/value cache.
#include <chrono>
#include <iostream>

#include "hseq/hseq.hpp"
#include "hseq/models/generate.hpp"
#include "lm_cli.hpp"

template <class M>
void generate(cli::Args const& a, cli::ModelChoice const& choice) {
  cli::Backend::Context ctx;
  auto lm = cli::load_model<M>(ctx, a.str("checkpoint"), choice);
  hseq::models::GenerateConfig g;
  g.max_bytes = a.integer("bytes");
  g.stop = a.str("stop");
  g.sampler.temperature = a.real("temperature");
  g.sampler.top_k = a.integer("top-k");
  g.sampler.top_p = a.real("top-p");
  g.sampler.seed = std::uint64_t(a.integer("seed"));
  auto t0 = std::chrono::steady_clock::now();
  std::string out = hseq::models::generate<cli::Backend, cli::Real>(ctx, *lm.model, a.str("prompt"), g);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << a.str("prompt") << out << std::endl;
  std::cerr << "generated " << out.size() << " bytes in " << s << " s (" << double(out.size()) / s << " bytes/s)"
            << std::endl;
}

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
  cli::dispatch(choice, [&]<class M>() { generate<M>(a, choice); });
  return 0;
} catch (std::exception const& e) {
  std::cerr << e.what() << std::endl;
  return 1;
}
