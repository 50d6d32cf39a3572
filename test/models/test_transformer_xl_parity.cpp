// SPDX-License-Identifier: MIT
// PyTorch parity of Transformer-XL and the Compressive Transformer over a stream of segments:
// test/fixtures/{transformer_xl,compressive}_parity.safetensors were written by tools/gen_xl_fixture.py
// from PyTorch twins (tools/torch_xl.py) with the same structure, parameter names and memory
// bookkeeping. This test needs no Python: it copies the parameters in, feeds the fixture's segments in
// order with a memory bound (carried, detached), and compares every segment's logits and loss (and the
// Compressive Transformer's cross-entropy and attention-reconstruction terms), then every parameter's
// gradient summed over the segments. The generator checked the twin's relative attention against
// explicit loops first. Tolerances as test/models/test_transformer_lm_parity.cpp (1e-4 relative).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/hier/memory_compressors.hpp"
#include "hseq/models/compressive_transformer.hpp"
#include "hseq/models/transformer_xl.hpp"
#include "support/parity.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

#ifndef HSEQ_SOURCE_DIR
#error "HSEQ_SOURCE_DIR must point at the source tree (set by test/CMakeLists.txt)"
#endif

using namespace hseq;

namespace {

io::SafetensorsFile fixture(std::string const& file) {
  return io::SafetensorsFile::load(std::string(HSEQ_SOURCE_DIR) + "/test/fixtures/" + file);
}

template <class M>
void stream_parity(io::SafetensorsFile const& f, M& m, bool terms) {
  cpu::Context ctx;
  nn::ParamStore<cpu, float> ps(m);
  std::int64_t const bsz = std::stoll(f.metadata("batch")), t = std::stoll(f.metadata("seq_len")),
                     segments = std::stoll(f.metadata("segments")), v = m.config().vocab;
  int torch_grads = 0;
  for (auto const& n : f.names()) torch_grads += n.rfind("grad.", 0) == 0;
  REQUIRE(torch_grads == int(ps.entries().size()));
  for (auto const& e : ps.entries()) {
    auto val = f.read<float>("param." + e.name, e.param->shape);
    std::copy(val.begin(), val.end(), e.param->value.data);
  }
  auto ids = f.read<std::int32_t>("ids", Shape{segments, bsz, t});
  auto tg = f.read<std::int32_t>("targets", Shape{segments, bsz, t});
  auto logits = f.read<float>("logits", Shape{segments, bsz, t, v});
  auto losses = nlohmann::json::parse(f.metadata("losses")).get<std::vector<double>>();
  std::vector<double> ce, comp;
  if (terms) {
    ce = nlohmann::json::parse(f.metadata("ce")).get<std::vector<double>>();
    comp = nlohmann::json::parse(f.metadata("compress")).get<std::vector<double>>();
  }
  auto mem = m.make_memory(bsz);
  m.bind_memory(&mem);
  Workspace<cpu> ws(m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t));
  typename M::Trace tr;
  ps.zero_grad(ctx);
  for (std::int64_t s = 0; s < segments; ++s) {
    CAPTURE(s);
    View<std::int32_t const, HostSpace> iv(ids.data() + s * bsz * t, Shape{bsz, t}), tv(tg.data() + s * bsz * t, Shape{bsz, t});
    auto a = ws.arena();
    double loss = m.forward(ctx, iv, tv, a, tr);
    CHECK(std::abs(loss - losses[std::size_t(s)]) <= 1e-4 * std::abs(losses[std::size_t(s)]));
    std::vector<float> want(logits.begin() + s * bsz * t * v, logits.begin() + (s + 1) * bsz * t * v);
    CHECK(test::rel_l2(tr.logits.data, want) <= 1e-4);
    if constexpr (requires { tr.terms; }) {
      REQUIRE(terms);
      CHECK(std::abs(tr.terms[0].value - ce[std::size_t(s)]) <= 1e-4 * std::abs(ce[std::size_t(s)]));
      double const c = comp[std::size_t(s)];
      CAPTURE(c);
      CHECK(std::abs(tr.terms[1].value - c) <= 1e-4 * std::abs(c) + 1e-9);
    }
    m.backward(ctx, tr, a);
  }
  double global = 0;
  for (auto const& e : ps.entries()) global += std::pow(test::l2(f.read<float>("grad." + e.name, e.param->shape)), 2);
  global = std::sqrt(global);
  for (auto const& e : ps.entries()) {
    CAPTURE(e.name);
    auto g = f.read<float>("grad." + e.name, e.param->shape);
    CAPTURE(test::rel_l2(e.param->grad.data, g));
    CHECK(test::grad_close(e.param->grad.data, g, global));
  }
}

}  // namespace

TEST_CASE("transformer_xl parity: a stream of 4 segments over a sliding, clamped memory: logits, losses, gradients") {
  auto f = fixture("transformer_xl_parity.safetensors");
  using Xl = models::TransformerXl<cpu, float>;
  auto cfg = Xl::config_from_json(f.metadata("config"));
  REQUIRE(cfg.mem_len > std::stoll(f.metadata("seq_len")));  // the memory fills, then slides
  REQUIRE(cfg.clamp_len > 0);
  Xl m(cfg);
  stream_parity(f, m, false);
}

TEST_CASE("compressive parity: conv compression at rate 2 with attention reconstruction over 5 segments") {
  auto f = fixture("compressive_parity.safetensors");
  REQUIRE(f.metadata("compress_fn") == "conv");
  REQUIRE(f.metadata("rate") == "2");
  using Ct = models::CompressiveTransformer<cpu, float, hier::Conv<2>>;
  auto cfg = Ct::config_from_json(f.metadata("config"));
  REQUIRE(cfg.loss == models::CompressionLoss::kAttentionReconstruction);
  Ct m(cfg);
  stream_parity(f, m, true);
  // The stream compressed: the last segments had a compression term.
  auto comp = nlohmann::json::parse(f.metadata("compress")).get<std::vector<double>>();
  CHECK(comp.back() > 0);
}

}  // namespace HSEQ_TEST_UNIT
