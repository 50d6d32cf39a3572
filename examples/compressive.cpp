// SPDX-License-Identifier: MIT
// The Compressive Transformer in its compile-time form: the compression function and its rate are a
// type (here dilated convolutions at rate 2, not the programs' default), the loss that trains it a
// run-time choice (here auto-encoding). Trains on consecutive segments of a text so that the
// memories carry from one batch to the next, reports validation bits per character, and generates
// with the cache.
//
//   hseq-compressive FILE [STEPS]
//
// Transformer-XL is the same without compression: hseq::models::TransformerXl<Backend, float>.
// For the GPU, change the one alias `Backend` to hseq::cuda and build the file with nvcc against
// hseq::cuda.
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>

#include "hseq/hseq.hpp"
#if defined(HSEQ_ENABLE_CUDA)
#include "hseq/cuda.hpp"  // the CUDA backend and ops, when built against hseq::cuda with nvcc
#endif

using Backend = hseq::cpu;
using Model = hseq::models::CompressiveTransformer<Backend, float, hseq::hier::DilatedConv<2>>;

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
  cfg.layers = 2;
  cfg.context = 32;   // segment length
  cfg.mem_len = 32;   // memory rows per layer
  cfg.cmem_len = 16;  // compressed memory rows per layer: 32 older positions at rate 2
  cfg.loss = hseq::models::CompressionLoss::kAutoEncoding;
  Model model(cfg);
  hseq::nn::ParamStore<Backend, float> params(ctx, model);
  params.init(ctx, /*seed=*/1);
  std::cout << Model::kKind << " " << model.config_json() << ", " << params.count() << " parameters\n";

  hseq::train::TrainerConfig tc;
  tc.batch = 4;
  tc.seq_len = cfg.context;
  tc.steps = steps;
  tc.warmup = steps / 10;
  tc.lr = 2e-3;
  tc.eval_every = 0;  // validate once, at the end
  tc.eval_windows = 16;
  // Consecutive windows in 4 parallel streams: the trainer carries the memories between batches.
  using Task = hseq::train::SequentialSegments;
  hseq::train::Trainer<Backend, float, Model, Task> trainer(ctx, model, params, data, Task(data, tc.batch, tc.seq_len),
                                                           tc);
  double bpc = trainer.run(ctx);
  auto const& mem = trainer.memory();
  std::cout << "steps " << trainer.state().step << ", compression loss " << trainer.last_terms()[1].value
            << ", memories: " << mem.fill() << " rows, " << mem.compressed_fill() << " compressed, validation bpc "
            << bpc << "\n";

  hseq::models::GenerateConfig g;
  g.max_bytes = 200;
  g.sampler.temperature = 0.8;
  g.sampler.top_k = 40;
  std::cout << "sample: " << hseq::models::generate<Backend, float>(ctx, model, "\n", g) << "\n";
  return 0;
} catch (std::exception const& e) {
  std::cerr << e.what() << "\n";
  return 1;
}
