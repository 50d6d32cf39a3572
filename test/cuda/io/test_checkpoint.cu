// SPDX-License-Identifier: MIT
// CUDA io/checkpoint.hpp: checkpoints move between the CPU and the GPU with identical parameters and optimizer state.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "cuda/compare.cuh"
#include "cuda/models/model_checks.cuh"
#include "hseq/cuda.hpp"
#include "hseq/io/checkpoint.hpp"
#include "hseq/train/adamw.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_models;

namespace {

struct MmTempDir {
  std::filesystem::path dir;
  MmTempDir() {
    static std::atomic<int> counter{0};
    dir = std::filesystem::temp_directory_path() /
          ("hseq_cuda_models_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(dir);
  }
  ~MmTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string file(std::string const& name) const { return (dir / name).string(); }
};

/// Gradients sin(0.37 k + phase) + 0.01 over the parameters (padding zero), as a host vector.
template <class T>
std::vector<T> mm_fake_grads(nn::ParamStore<cpu, T> const& layout_cpu, double phase) {
  std::vector<T> g(std::size_t(layout_cpu.values().numel()), T(0));
  std::size_t k = 0;
  for (auto const& e : layout_cpu.entries())
    for (std::int64_t i = 0; i < e.param->shape.numel(); ++i, ++k)
      g[std::size_t(e.offset + i)] = T(std::sin(0.37 * double(k) + phase) + 0.01);
  return g;
}

}  // namespace

TEST_CASE("cuda models: checkpoints move between CPU and GPU with identical parameters and optimizer state") {
  using LmG = models::TransformerLm<Gpu, float>;
  using LmC = models::TransformerLm<cpu, float>;
  LmSpec spec{.vocab = 256, .dim = 32, .heads = 4, .layers = 2, .context = 32, .tied = false};
  MmTempDir tmp;
  cpu::Context hctx;
  GpuCtx dctx;
  train::AdamW<cpu, float>::Config ocfg{.lr = 1e-2, .weight_decay = 0.1};

  SUBCASE("saved on the CPU, loaded on the GPU") {
    auto hm = spec.make<cpu, float>();
    nn::ParamStore<cpu, float> hps(*hm);
    hps.init(hctx, 3);
    train::AdamW<cpu, float> hopt(hctx, hps, ocfg);
    auto g = mm_fake_grads(hps, 0.5);
    std::copy(g.begin(), g.end(), hps.grads().data);
    hopt.step(hctx);
    std::string path = tmp.file("from_cpu.safetensors");
    io::save_checkpoint(hctx, path, io::CheckpointInfo{LmC::kKind, hm->config_json(), "{}"}, hps, {{"optim", hopt}});

    auto dm = spec.make<Gpu, float>();
    nn::ParamStore<Gpu, float> dps(dctx, *dm);
    dps.init(dctx, 99);  // different: everything must come from the file
    train::AdamW<Gpu, float> dopt(dctx, dps, {.lr = 1e-2, .weight_decay = 0.1});
    io::load_checkpoint(dctx, path, LmG::kKind, dm->config_json(), dps, {{"optim", dopt}});
    CHECK(dopt.steps() == hopt.steps());
    CHECK(mm_same_bits(mm_to_host<Gpu, float>(dctx, dps.values()), mm_to_host<cpu, float>(hctx, hps.values())));
    CHECK(mm_same_bits(mm_to_host<Gpu, float>(dctx, dopt.first_moment()),
                       mm_to_host<cpu, float>(hctx, hopt.first_moment())));
    CHECK(mm_same_bits(mm_to_host<Gpu, float>(dctx, dopt.second_moment()),
                       mm_to_host<cpu, float>(hctx, hopt.second_moment())));
    // Parameters only (no optimizer) work too.
    auto dm2 = spec.make<Gpu, float>();
    nn::ParamStore<Gpu, float> dps2(dctx, *dm2);
    io::load_checkpoint(dctx, path, LmG::kKind, dm2->config_json(), dps2);
    CHECK(mm_same_bits(mm_to_host<Gpu, float>(dctx, dps2.values()), mm_to_host<cpu, float>(hctx, hps.values())));
  }

  SUBCASE("saved on the GPU, loaded on the CPU") {
    auto dm = spec.make<Gpu, float>();
    nn::ParamStore<Gpu, float> dps(dctx, *dm);
    dps.init(dctx, 5);
    train::AdamW<Gpu, float> dopt(dctx, dps, {.lr = 1e-2, .weight_decay = 0.1});
    auto twin = spec.make<cpu, float>();  // a host twin gives the same flat layout
    nn::ParamStore<cpu, float> layout(*twin);
    for (double phase : {0.25, 1.5}) {
      auto g = mm_fake_grads(layout, phase);
      Gpu::upload<float>(dctx, dps.grads().data, g.data(), g.size());
      dopt.step(dctx);
    }
    std::string path = tmp.file("from_gpu.safetensors");
    io::save_checkpoint(dctx, path, io::CheckpointInfo{LmG::kKind, dm->config_json(), "{}"}, dps, {{"optim", dopt}});

    auto hm = spec.make<cpu, float>();
    nn::ParamStore<cpu, float> hps(*hm);
    hps.init(hctx, 77);
    train::AdamW<cpu, float> hopt(hctx, hps, ocfg);
    io::load_checkpoint(hctx, path, LmC::kKind, hm->config_json(), hps, {{"optim", hopt}});
    CHECK(hopt.steps() == 2);
    CHECK(mm_same_bits(mm_to_host<cpu, float>(hctx, hps.values()), mm_to_host<Gpu, float>(dctx, dps.values())));
    CHECK(mm_same_bits(mm_to_host<cpu, float>(hctx, hopt.first_moment()),
                       mm_to_host<Gpu, float>(dctx, dopt.first_moment())));
    CHECK(mm_same_bits(mm_to_host<cpu, float>(hctx, hopt.second_moment()),
                       mm_to_host<Gpu, float>(dctx, dopt.second_moment())));
  }
}

}  // namespace HSEQ_TEST_UNIT
