// SPDX-License-Identifier: MIT
// The benchmark table of the model families: one training-step benchmark (forward + backward +
// AdamW, as hseq-train builds the model from its flags) per case and shape that a family's trait
// declares (`bench_cases()`, examples/families/<family>.hpp), registered at startup from the
// programs' family list (examples/families/list.def), so a new family appears here through its
// own header and list line alone. Names: BM_family/<family>/<case>/b:<batch>/t:<seq_len>.
// Counters: tokens/s; params (every parameter element); and, for models with flops(t)
// (hseq/models/flops.hpp), model FLOPs per token (flops/token: PaLM's, attention not halved;
// flops/token_causal: attention halved) and the achieved rate of each (FLOP/s, FLOP/s_causal).
#include <benchmark/benchmark.h>

#include <exception>

#include "family.hpp"

namespace {

/// A family's benchmark loop over Google Benchmark's State; the result becomes counters.
class StateLoop final : public cli::BenchLoop {
 public:
  explicit StateLoop(benchmark::State& state) : state_(state) {}
  bool keep_running() override { return state_.KeepRunning(); }
  void report(cli::BenchResult const& r) override {
    using benchmark::Counter;
    double tokens = double(r.tokens_per_step);
    state_.counters["tokens/s"] = Counter(tokens, Counter::kIsIterationInvariantRate);
    state_.counters["params"] = Counter(double(r.params));
    if (!r.has_flops) return;
    state_.counters["flops/token"] = Counter(r.flops.palm());
    state_.counters["flops/token_causal"] = Counter(r.flops.causal());
    // Achieved model FLOP/s (shown with an SI prefix, e.g. 12.3G/s, as bench_modules.cpp's FLOP/s).
    state_.counters["FLOP/s"] = Counter(tokens * r.flops.palm(), Counter::kIsIterationInvariantRate);
    state_.counters["FLOP/s_causal"] = Counter(tokens * r.flops.causal(), Counter::kIsIterationInvariantRate);
  }

 private:
  benchmark::State& state_;
};

int register_family_benchmarks() {
  for (cli::Family const* f : cli::families())
    for (cli::BenchCase const& c : f->bench_cases)
      for (cli::BenchShape s : c.shapes)
        benchmark::RegisterBenchmark(cli::bench_name(*f, c, s).c_str(),
                                     [f, c, s](benchmark::State& state) {
                                       StateLoop loop(state);
                                       try {
                                         cli::run_bench_case(*f, c, s, loop);
                                       } catch (std::exception const& e) {
                                         state.SkipWithError(e.what());
                                       }
                                     })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
  return 0;
}

[[maybe_unused]] int const kRegistered = register_family_benchmarks();

}  // namespace
