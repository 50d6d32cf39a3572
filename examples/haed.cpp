// SPDX-License-Identifier: MIT
// HAED in its compile-time form, trained the paper's way: an IEM phase (the backbone predicts the
// next segment's embedding against sampled negative segments), then a brief decoder phase with the
// encoder and backbone frozen; report validation bits per character and generate with the cache.
//
//   hseq-haed FILE [STEPS]
//
// The structure is a type: 8-byte segments, an MLP segment encoder, a Transformer backbone over
// segments and a small Transformer byte decoder (HRED would be hseq::models::Hred<Backend, float, 8>).
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
using Model = hseq::models::Haed<Backend, float, 8, hseq::hier::TransformerDecoder>;

int main(int argc, char** argv) try {
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " FILE [STEPS]\n";
    return 2;
  }
  std::int64_t const steps = argc > 2 ? std::atoll(argv[2]) : 300;
  if (steps < 2) {
    std::cerr << "STEPS must be an integer >= 2, got '" << argv[2] << "'\n";
    return 2;
  }
  Backend::Context ctx;
  hseq::io::TextDataset data(argv[1]);  // bytes; the last 10% held out for validation

  Model::Config cfg;
  cfg.dim = 128;
  cfg.heads = 4;
  cfg.layers = 2;          // backbone blocks (over segments)
  cfg.decoder_layers = 1;  // decoder blocks (over the bytes of a segment)
  cfg.context = 128;
  cfg.iem_negatives = 64;  // negatives per micro-batch, drawn from the segments' unigram distribution
  Model model(cfg);
  model.set_iem_proposal(hseq::hier::SegmentProposal(data.text(hseq::io::TextDataset::Split::kTrain), 8));
  hseq::nn::ParamStore<Backend, float> params(ctx, model);
  params.init(ctx, /*seed=*/1);
  std::cout << Model::kKind << " " << model.config_json() << ", " << params.count() << " parameters\n";

  hseq::train::TrainerConfig tc;
  tc.batch = 8;
  tc.seq_len = 128;
  tc.steps = steps;
  tc.warmup = steps / 10;
  tc.lr = 2e-3;
  tc.eval_every = 0;  // validate once, at the end (the IEM phase has no byte likelihood)
  // Phase 1 trains encoder, backbone and the IEM head; phase 2 (the last 20%) the decoder side.
  tc.phases = {{"iem", steps - steps / 5, {"decoder.*", "start", "ln_f.*"}, {}},
               {"decoder", 0, {"encoder.*", "backbone.*", "iem.*"}, {}}};
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
