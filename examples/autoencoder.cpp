// SPDX-License-Identifier: MIT
// The length-reduction autoencoder in its compile-time form: the query source and the reduction
// factor are types (here a learned query bank halving the length, twice: windows of 32 bytes
// through 8 latent rows; the programs default to pooled queries, one step), the sizes run-time.
// Trains on random windows of a text to reconstruct them, reports the held-out reconstruction
// accuracy, and shows one held-out window reconstructed from its latent alone (decode).
//
//   hseq-autoencoder FILE [STEPS]
//
// For the GPU, change the one alias `Backend` to hseq::cuda and build the file with nvcc against
// hseq::cuda.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "hseq/hseq.hpp"
#if defined(HSEQ_ENABLE_CUDA)
#include "hseq/cuda.hpp"  // the CUDA backend and ops, when built against hseq::cuda with nvcc
#endif

using Backend = hseq::cpu;
using Model = hseq::models::SeqAutoencoder<Backend, float, /*R=*/2, hseq::hier::QueryBank>;

int main(int argc, char** argv) try {
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " FILE [STEPS]\n";
    return 2;
  }
  std::int64_t const steps = argc > 2 ? std::atoll(argv[2]) : 300;
  if (steps < 1) {
    std::cerr << "STEPS must be a positive integer, got '" << argv[2] << "'\n";
    return 2;
  }
  Backend::Context ctx;
  hseq::io::TextDataset data(argv[1]);  // bytes; the last 10% held out for validation

  Model::Config cfg;
  cfg.dim = 64;
  cfg.heads = 4;
  cfg.enc_layers = 1;
  cfg.dec_layers = 1;
  cfg.window = 32;  // n
  cfg.steps = 2;    // 32 -> 16 -> 8 latent rows: a quarter, in two halvings
  Model model(cfg);
  hseq::nn::ParamStore<Backend, float> params(ctx, model);
  params.init(ctx, /*seed=*/1);
  std::cout << Model::kKind << " " << model.config_json() << ", " << params.count() << " parameters\n";

  hseq::train::TrainerConfig tc;
  tc.batch = 16;
  tc.seq_len = cfg.window;
  tc.steps = steps;
  tc.warmup = steps / 10;
  tc.lr = 3e-3;
  tc.eval_every = 0;
  tc.eval_windows = 32;
  // The trainer sees Model::kReconstructsInput and trains on targets = the window itself.
  hseq::train::Trainer<Backend, float, Model> trainer(ctx, model, params, data, tc);
  double bpc = trainer.run(ctx);
  hseq::train::Evaluator<Backend, float, Model> eval(model, data, {.batch = 16, .seq_len = cfg.window, .windows = 64,
                                                                   .accuracy = true});
  auto r = eval.measure(ctx);
  std::cout << "steps " << trainer.state().step << ", reconstruction: " << bpc << " bits per byte, accuracy "
            << r.accuracy << " over " << r.targets << " held-out bytes\n";

  // One held-out window: encode (a forward, keeping the latent), then decode the latent alone.
  auto split = hseq::io::TextDataset::Split::kValidation;
  std::int64_t const t = cfg.window, m = model.latent_length(t), v = cfg.vocab;
  std::vector<std::int32_t> ids(static_cast<std::size_t>(t)), tg(static_cast<std::size_t>(t));
  data.window(split, 0, t, ids.data(), tg.data());
  hseq::Tensor<std::int32_t, Backend> dids(hseq::Shape{1, t});
  Backend::upload<std::int32_t>(ctx, dids.data(), ids.data(), ids.size());
  hseq::Workspace<Backend> ws(model.forward_workspace(1, t) + model.decode_workspace(1, t));
  Model::Trace tr;
  auto arena = ws.arena();
  model.forward(ctx, dids.cview(), dids.cview(), arena, tr);
  hseq::Tensor<float, Backend> logits(hseq::Shape{1, t, v});
  model.decode(ctx, tr.latent(), logits.view(), arena);
  std::vector<float> host(static_cast<std::size_t>(t * v));
  Backend::download<float>(ctx, host.data(), logits.data(), host.size());
  auto shown = [](std::int32_t c) { return c >= 32 && c < 127 ? char(c) : '.'; };
  std::string in, out;
  for (std::int64_t i = 0; i < t; ++i) {
    in += shown(ids[std::size_t(i)]);
    auto row = host.begin() + i * v;
    out += shown(std::int32_t(std::max_element(row, row + v) - row));
  }
  std::cout << "latent [1, " << m << ", " << cfg.dim << "] of a held-out window, decoded:\n  in:  " << in
            << "\n  out: " << out << "\n";
  return 0;
} catch (std::exception const& e) {
  std::cerr << e.what() << "\n";
  return 1;
}
