// SPDX-License-Identifier: MIT
// hseq-train: trains a byte-level language model on any text file, shows progress, reports
// validation bits per character, writes a checkpoint and prints a sample.
#include <cmath>
#include <iostream>
#include <memory>

#include "hseq/hseq.hpp"
#include "hseq/io/checkpoint.hpp"
#include "hseq/io/csv_log.hpp"
#include "hseq/io/progress.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/models/generate.hpp"
#include "hseq/train/trainer.hpp"
#include "lm_cli.hpp"

template <class M>
void train(cli::Args const& a, cli::ModelChoice const& choice) {
  cli::Backend::Context ctx;
  hseq::io::TextDataset data(a.str("data"), a.real("val-fraction"));
  auto cfg = cli::model_config<M>(a, choice);
  auto model = std::make_unique<M>(cfg);
  hseq::nn::ParamStore<cli::Backend, cli::Real> params(ctx, *model);
  params.init(ctx, std::uint64_t(a.integer("seed")));

  hseq::train::TrainerConfig t;
  t.batch = a.integer("batch");
  t.seq_len = a.given("seq-len") ? a.integer("seq-len") : cfg.context;
  t.steps = a.integer("steps");
  t.time_budget_s = a.real("time-budget");
  t.grad_accum = a.integer("accum");
  t.lr = a.real("lr");
  t.min_lr_ratio = a.real("min-lr-ratio");
  t.warmup = a.integer("warmup");
  t.weight_decay = a.real("weight-decay");
  t.clip = a.real("clip");
  t.eval_every = a.integer("eval-every");
  t.eval_windows = a.integer("eval-windows");
  t.ckpt_path = a.str("out");
  t.ckpt_every = a.integer("ckpt-every");
  t.seed = std::uint64_t(a.integer("seed"));
  hseq::train::Trainer<cli::Backend, cli::Real, M> trainer(ctx, *model, params, data, t);
  if (!a.str("resume").empty()) trainer.load(ctx, a.str("resume"));

  std::cout << "model: " << M::kKind << " " << model->config_json() << "\n"
            << "parameters: " << params.count() << "\n"
            << "data: " << a.str("data") << " (" << data.size(hseq::io::TextDataset::Split::kTrain) << " train bytes, "
            << data.size(hseq::io::TextDataset::Split::kValidation) << " validation bytes)\n"
            << "training: batch " << t.batch << " x " << t.seq_len << ", "
            << (t.steps > 0 ? std::to_string(t.steps) + " steps" : std::string("until the time budget"))
            << (t.time_budget_s > 0 ? ", time budget " + std::to_string(int(t.time_budget_s)) + " s" : std::string())
            << (trainer.state().step > 0 ? ", resuming at step " + std::to_string(trainer.state().step) : std::string())
            << std::endl;

  hseq::io::Progress progress(t.steps > 0 ? t.steps : 0);
  bool resumed = trainer.state().step > 0;
  if (resumed) progress.set_initial_step(trainer.state().step);
  std::unique_ptr<hseq::io::CsvLog> csv;
  if (!a.str("csv").empty())  // a resumed run appends to its log
    csv = std::make_unique<hseq::io::CsvLog>(
        a.str("csv"), std::vector<std::string>{"step", "loss", "bpc", "val_bpc", "seconds", "tokens"}, resumed);
  double bpc = trainer.run(ctx, &progress, csv.get());
  auto const& st = trainer.state();
  std::cout << "steps: " << st.step << " (" << st.skipped << " skipped), tokens: " << st.tokens << ", "
            << "training time: " << st.elapsed_s << " s, throughput: " << double(st.tokens) / st.elapsed_s
            << " tokens/s\n";
  std::cout << "validation bpc: " << bpc << std::endl;
  if (!t.ckpt_path.empty()) std::cout << "checkpoint: " << t.ckpt_path << "\n";
  if (a.integer("sample-bytes") > 0) {
    hseq::models::GenerateConfig g;
    g.max_bytes = a.integer("sample-bytes");
    g.sampler.temperature = 0.8;
    g.sampler.top_k = 40;
    g.sampler.seed = std::uint64_t(a.integer("seed"));
    std::string prompt = a.str("prompt");
    std::cout << "sample (temperature 0.8, top-k 40):\n"
              << prompt << hseq::models::generate<cli::Backend, cli::Real>(ctx, *model, prompt, g) << std::endl;
  }
}

int main(int argc, char** argv) try {
  cli::Args a("hseq-train", "Trains a byte-level language model on a text file and reports validation bits per character.");
  a.flag("data", "", "training text (any file; read as bytes). Required")
      .flag("val-fraction", "0.1", "fraction of the file (its end) held out for validation");
  cli::add_model_flags(a);
  a.flag("batch", "16", "sequences per micro-batch")
      .flag("seq-len", "", "training sequence length (default: --context)")
      .flag("steps", "2000", "optimizer steps; 0 trains until --time-budget")
      .flag("time-budget", "0", "stop after this many seconds of training (0: no limit)")
      .flag("accum", "1", "micro-batches accumulated per step")
      .flag("lr", "2e-3", "peak learning rate")
      .flag("min-lr-ratio", "0.1", "final learning rate as a fraction of the peak (cosine decay)")
      .flag("warmup", "100", "linear warm-up steps")
      .flag("weight-decay", "0.1", "AdamW decoupled weight decay (weights only)")
      .flag("clip", "1.0", "global gradient-norm clip (0: off)")
      .flag("eval-every", "200", "steps between validations (0: only at the end)")
      .flag("eval-windows", "64", "validation windows per evaluation (0: the whole split)")
      .flag("out", "", "checkpoint to write (at the end, and every --ckpt-every steps)")
      .flag("ckpt-every", "0", "steps between checkpoints (0: only at the end)")
      .flag("resume", "", "checkpoint to continue from (model flags are taken from it)")
      .flag("csv", "", "write one CSV row per step (step, loss, bpc, val_bpc, seconds, tokens)")
      .flag("seed", "1234", "seed of the initialisation and of the data stream")
      .flag("sample-bytes", "300", "bytes to generate after training (0: none)")
      .flag("prompt", "\n", "prompt of the final sample");
  cli::add_thread_flag(a);
  if (!a.parse(argc, argv)) return 0;
  cli::apply_threads(a);
  HSEQ_CHECK(!a.str("data").empty(), "hseq-train: --data is required (a text file); see --help");

  cli::ModelChoice choice = a.str("resume").empty() ? cli::choice_from_flags(a) : cli::choice_from_checkpoint(a.str("resume"));
  if (!a.str("resume").empty()) cli::check_resume_flags(a, choice);
  cli::dispatch(choice, [&]<class M>() { train<M>(a, choice); });
  return 0;
} catch (std::exception const& e) {
  std::cerr << e.what() << std::endl;
  return 1;
}
