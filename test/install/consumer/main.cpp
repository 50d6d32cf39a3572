// SPDX-License-Identifier: MIT
// Consumer of an installed hseq: builds a Linear layer, runs forward, checks the output is finite.
#if __has_include(<hseq/hseq.hpp>)
#include <hseq/hseq.hpp>
#endif
#include <hseq/nn/linear.hpp>

#include <cmath>
#include <cstdio>

int main() {
  using Linear = hseq::nn::Linear<hseq::cpu, float>;
  hseq::cpu::Context ctx;
  Linear lin(Linear::Config{.in = 8, .out = 4});
  hseq::nn::ParamStore<hseq::cpu, float> store(lin);
  store.init(ctx, /*seed=*/42);

  constexpr std::int64_t kRows = 3;
  hseq::Tensor<float, hseq::cpu> x(hseq::Shape{kRows, 8}), y(hseq::Shape{kRows, 4});
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = float(i % 7) - 3.0f;
  hseq::Workspace<hseq::cpu> ws(lin.forward_workspace(kRows));
  auto arena = ws.arena();
  lin.forward(ctx, x.cview(), y.view(), arena);

  for (std::int64_t i = 0; i < y.numel(); ++i) {
    if (!std::isfinite(y.data()[i])) {
      std::printf("hseq consumer: output %lld is not finite\n", static_cast<long long>(i));
      return 1;
    }
  }
  std::printf("hseq consumer: Linear(8 -> 4) forward ok, %lld parameters, y[0] = %g\n",
              static_cast<long long>(store.count()), double(y.data()[0]));
  return 0;
}
