// SPDX-License-Identifier: MIT
// Quickstart: fit a Linear layer to a toy linear regression with hand-written SGD.
//
// Shows the pieces every hseq module uses: a Config, a ParamStore that owns the parameters,
// deterministic initialisation from a seed, a Workspace/Arena for scratch memory, forward that
// returns what backward needs, and backward that accumulates parameter gradients.
#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/rng.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/elementwise.hpp"

int main() {
  using B = hseq::cpu;
  using Linear = hseq::nn::Linear<B, float>;
  constexpr std::int64_t kRows = 256, kIn = 8, kOut = 2;
  constexpr int kSteps = 60;
  constexpr float kLearningRate = 0.1f;

  B::Context ctx;
  Linear model(Linear::Config{.in = kIn, .out = kOut});
  hseq::nn::ParamStore<B, float> params(ctx, model);  // binds model.weight / model.bias into flat buffers
  params.init(ctx, /*seed=*/1234);

  // Toy data: targets t = x W_true^T + b_true + small noise.
  hseq::Rng rng(/*seed=*/7);
  hseq::Tensor<float, B> x(hseq::Shape{kRows, kIn}), t(hseq::Shape{kRows, kOut});
  float w_true[kOut][kIn], b_true[kOut];
  for (auto& row : w_true)
    for (float& w : row) w = float(rng.normal());
  for (float& b : b_true) b = float(rng.uniform() - 0.5);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = float(rng.normal());
  for (std::int64_t r = 0; r < kRows; ++r)
    for (std::int64_t o = 0; o < kOut; ++o) {
      float s = b_true[o] + 0.01f * float(rng.normal());
      for (std::int64_t i = 0; i < kIn; ++i) s += w_true[o][i] * x.data()[r * kIn + i];
      t.data()[r * kOut + o] = s;
    }

  hseq::Tensor<float, B> y(hseq::Shape{kRows, kOut}), dy(hseq::Shape{kRows, kOut});
  hseq::Workspace<B> ws(std::max(model.forward_workspace(kRows), model.backward_workspace(kRows)));

  double first_loss = 0, loss = 0;
  for (int step = 0; step < kSteps; ++step) {
    auto arena = ws.arena();
    auto saved = model.forward(ctx, x.cview(), y.view(), arena);

    // Mean squared error and its gradient dL/dy = 2 (y - t) / numel.
    loss = 0;
    double const inv_n = 1.0 / double(y.numel());
    for (std::int64_t i = 0; i < y.numel(); ++i) {
      double d = double(y.data()[i]) - double(t.data()[i]);
      loss += d * d * inv_n;
      dy.data()[i] = float(2.0 * d * inv_n);
    }
    if (step == 0) first_loss = loss;
    if (step % 10 == 0 || step == kSteps - 1) std::printf("step %3d  loss %.6f\n", step, loss);

    params.zero_grad(ctx);                                        // backward accumulates
    model.backward(ctx, saved, dy.cview(), hseq::View<float, hseq::HostSpace>{}, arena);  // no dx needed
    hseq::ops::axpy<float>(ctx, -kLearningRate, params.grads(), params.values());       // SGD step
  }

  std::printf("%lld parameters; loss %.6f -> %.6f\n", static_cast<long long>(params.count()), first_loss, loss);
  if (!(loss < first_loss)) {
    std::printf("loss did not decrease\n");
    return 1;
  }
  std::printf("loss decreased\n");
  return 0;
}
