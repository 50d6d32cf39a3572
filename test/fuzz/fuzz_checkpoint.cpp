// SPDX-License-Identifier: MIT
// Fuzz harness: the checkpoint loader (hseq/io/checkpoint.hpp through train::Trainer::load, which
// also parses the trainer state and restores the optimizer). Any bytes, as a checkpoint of a tiny
// Transformer LM: the load either throws hseq::Error and leaves the parameters exactly as they
// were (load_checkpoint validates everything before writing anything), or succeeds; then the
// trainer saves again and that checkpoint loads.
// Seeds: test/fuzz/corpus/checkpoint/ (HSEQ_FUZZ_WRITE_SEEDS=DIR writes the generated ones).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "hseq/core/error.hpp"
#include "hseq/io/text_dataset.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "hseq/train/trainer.hpp"

namespace {

using Lm = hseq::models::TransformerLm<hseq::cpu, float>;
using TrainerF = hseq::train::Trainer<hseq::cpu, float, Lm>;

std::string text() {
  std::string s;
  for (int i = 0; i < 40; ++i) s += "a small corpus for a fuzz harness, line " + std::to_string(i) + "\n";
  return s;
}

/// The model, its parameters and a trainer, built once.
struct Rig {
  hseq::cpu::Context ctx;
  Lm model{Lm::Config{.vocab = 256, .dim = 8, .heads = 2, .layers = 1, .context = 8}};
  hseq::nn::ParamStore<hseq::cpu, float> params{ctx, model};
  hseq::io::TextDataset data = hseq::io::TextDataset::from_string(text(), "fuzz corpus");
  TrainerF trainer{ctx, model, params, data, config()};
  std::vector<float> initial;

  static hseq::train::TrainerConfig config() {
    hseq::train::TrainerConfig t;
    t.batch = 2;
    t.seq_len = 8;
    t.steps = 4;
    t.warmup = 1;
    t.eval_every = 0;
    t.eval_windows = 2;
    return t;
  }
  Rig() {
    params.init(ctx, 1);
    if (char const* dir = std::getenv("HSEQ_FUZZ_WRITE_SEEDS")) {
      trainer.save(ctx, std::string(dir) + "/fresh.safetensors");
      trainer.step(ctx);
      trainer.step(ctx);
      trainer.save(ctx, std::string(dir) + "/two_steps.safetensors");
    }
    initial = values();
  }
  std::vector<float> values() {
    auto v = params.values();
    return std::vector<float>(v.data, v.data + v.numel());
  }
  void reset() {
    auto v = params.values();
    std::memcpy(v.data, initial.data(), initial.size() * sizeof(float));
  }
  /// Bit for bit (a checkpoint may hold NaNs, which == would call different).
  static bool same(std::vector<float> const& a, std::vector<float> const& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  static Rig rig;
  std::string path = hseq::fuzz::input_file(data, size, "input.safetensors");
  try {
    rig.trainer.load(rig.ctx, path);
  } catch (hseq::Error const&) {
    HSEQ_FUZZ_ASSERT(Rig::same(rig.values(), rig.initial));  // a refused checkpoint changed nothing
    return 0;
  }
  // Loaded: what the trainer writes back loads too.
  std::string again = (hseq::fuzz::scratch() / "again.safetensors").string();
  rig.trainer.save(rig.ctx, again);
  std::vector<float> loaded = rig.values();
  rig.reset();
  rig.trainer.load(rig.ctx, again);
  HSEQ_FUZZ_ASSERT(Rig::same(rig.values(), loaded));
  rig.reset();
  return 0;
}
