// SPDX-License-Identifier: MIT
// A minimal program against an installed hseq: train a small byte-level Transformer LM on a text
// held in memory for a few dozen steps, report validation bits per character before and after,
// and continue a prompt with cached generation. Exits non-zero if training did not lower the bpc.
#include <hseq/hseq.hpp>

#include <cstdio>
#include <string>

int main() try {
  using Lm = hseq::models::TransformerLm<hseq::cpu, float>;
  std::string text;
  for (int i = 0; i < 200; ++i) text += "To be, or not to be, that is the question. " + std::to_string(i % 10) + "\n";
  auto data = hseq::io::TextDataset::from_string(text, "in-memory text", 0.1);

  hseq::cpu::Context ctx;
  Lm model({.vocab = 256, .dim = 32, .heads = 2, .layers = 2, .context = 32});
  hseq::nn::ParamStore<hseq::cpu, float> params(ctx, model);  // named parameters in one flat buffer
  params.init(ctx, /*seed=*/1);

  hseq::train::TrainerConfig cfg;
  cfg.batch = 8;
  cfg.seq_len = 32;
  cfg.steps = 60;
  cfg.warmup = 5;
  cfg.lr = 3e-3;
  cfg.eval_every = 0;
  hseq::train::Trainer<hseq::cpu, float, Lm> trainer(ctx, model, params, data, cfg);
  double before = trainer.evaluate(ctx, 0);
  double after = trainer.run(ctx);
  std::printf("hseq consumer: %lld parameters, validation bpc %.3f -> %.3f after %lld steps\n",
              static_cast<long long>(params.count()), before, after, static_cast<long long>(trainer.state().step));

  hseq::models::GenerateConfig g;
  g.max_bytes = 40;
  g.sampler.temperature = 0;  // greedy
  std::printf("hseq consumer: \"To be\" -> \"%s\"\n",
              hseq::models::generate<hseq::cpu, float>(ctx, model, "To be", g).c_str());
  return after < before ? 0 : 1;
} catch (std::exception const& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
