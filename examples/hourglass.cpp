// SPDX-License-Identifier: MIT
// The Hourglass, instantiated in its compile-time form: train a few hundred steps on a text file,
// report validation bits per character, and generate with the cache.
//
//   hseq-hourglass FILE [STEPS]
//
// The structure is a type: 1 full-rate block, then 2 blocks at 1/4 of the rate, then 1 full-rate
// block ("1@1 2@4 1@1"), average-pool shortening and repeat upsampling. For the GPU, change the
// one alias `Backend` to hseq::cuda and build the file with nvcc against hseq::cuda.
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>

#include "hseq/hseq.hpp"
#if defined(HSEQ_ENABLE_CUDA)
#include "hseq/cuda.hpp"  // the CUDA backend and ops, when built against hseq::cuda with nvcc
#endif

using Backend = hseq::cpu;
using Model = hseq::models::Hourglass<Backend, float, hseq::hier::Hierarchy<1, 1, hseq::hier::Level<2, 4>>,
                                      hseq::hier::AvgPool, hseq::hier::Repeat>;

int main(int argc, char** argv) try {
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " FILE [STEPS]\n";
    return 2;
  }
  std::int64_t const steps = argc > 2 ? std::atoll(argv[2]) : 300;
  if (steps <= 0) {
    std::cerr << "STEPS must be a positive integer, got '" << argv[2] << "'\n";
    return 2;
  }
  Backend::Context ctx;
  hseq::io::TextDataset data(argv[1]);  // bytes; the last 10% held out for validation

  Model model({.vocab = 256, .dim = 128, .heads = 4, .context = 128});
  hseq::nn::ParamStore<Backend, float> params(ctx, model);
  params.init(ctx, /*seed=*/1);
  std::cout << Model::kKind << " " << model.config_json() << ", " << params.count() << " parameters\n";

  hseq::train::TrainerConfig tc;
  tc.batch = 8;
  tc.seq_len = 128;
  tc.steps = steps;
  tc.warmup = steps / 10;
  tc.lr = 2e-3;
  tc.eval_every = 0;  // validate once, at the end
  hseq::train::Trainer<Backend, float, Model> trainer(ctx, model, params, data, tc);
  double bpc = trainer.run(ctx);
  std::cout << "steps " << trainer.state().step << ", validation bpc " << bpc << "\n";

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
