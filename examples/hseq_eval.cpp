// SPDX-License-Identifier: MIT
// hseq-eval: bits per character of a checkpoint on a text file's validation split (or all of it).
#include <cmath>
#include <iostream>
#include <memory>

#include "hseq/hseq.hpp"
#include "hseq/io/text_dataset.hpp"
#include "lm_cli.hpp"

template <class M>
void evaluate(cli::Args const& a, cli::ModelChoice const& choice) {
  cli::Backend::Context ctx;
  auto lm = cli::load_model<M>(ctx, a.str("checkpoint"), choice);
  auto data = std::make_unique<hseq::io::TextDataset>(a.str("data"), a.real("val-fraction"));
  std::int64_t t = a.given("seq-len") ? a.integer("seq-len") : lm.model->config().context;
  hseq::train::TrainerConfig tc;
  tc.batch = a.integer("batch");
  tc.seq_len = t;
  tc.steps = 1;
  tc.eval_windows = a.integer("windows");
  hseq::train::Trainer<cli::Backend, cli::Real, M> runner(ctx, *lm.model, *lm.params, *data, tc);
  auto split = hseq::io::TextDataset::Split::kValidation;
  std::int64_t total = data->num_windows(split, t);
  std::int64_t used = tc.eval_windows == 0 ? total : std::min(tc.eval_windows, total);
  double bpc = runner.evaluate(ctx, tc.eval_windows);
  std::cout << "checkpoint: " << a.str("checkpoint") << "\n"
            << "data: " << a.str("data") << ", validation split of " << data->size(split) << " bytes, " << used << " of "
            << total << " windows of " << t << " bytes\n"
            << "bpc: " << bpc << std::endl;
}

int main(int argc, char** argv) try {
  cli::Args a("hseq-eval", "Reports bits per character of a trained checkpoint on a text file.");
  a.flag("checkpoint", "", "checkpoint written by hseq-train. Required")
      .flag("data", "", "text file to evaluate on. Required")
      .flag("val-fraction", "0.1", "evaluate on the last fraction of the file, as hseq-train held it out (0 < f <= 0.5)")
      .flag("seq-len", "", "window length (default: the model's context)")
      .flag("batch", "16", "windows per forward pass")
      .flag("windows", "0", "evaluate this many evenly spread windows (0: all)");
  cli::add_thread_flag(a);
  if (!a.parse(argc, argv)) return 0;
  cli::apply_threads(a);
  HSEQ_CHECK(!a.str("checkpoint").empty() && !a.str("data").empty(), "hseq-eval: --checkpoint and --data are required");
  auto choice = cli::choice_from_checkpoint(a.str("checkpoint"));
  cli::dispatch(choice, [&]<class M>() { evaluate<M>(a, choice); });
  return 0;
} catch (std::exception const& e) {
  std::cerr << e.what() << std::endl;
  return 1;
}
