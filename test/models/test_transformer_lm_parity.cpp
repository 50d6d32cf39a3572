// SPDX-License-Identifier: MIT
// PyTorch parity of TransformerLm: test/fixtures/transformer_lm_*.safetensors were written by
// tools/gen_lm_fixture.py from a PyTorch model with the same structure and parameter names (tied
// head + learned positions; untied head + sinusoidal positions; tied head + no positions). This
// test needs no Python: it reads each fixture, copies the parameters in, and compares the logits,
// the loss, every parameter gradient and the losses of 5 AdamW steps (fp32). The generator checked
// the twin's hand-written attention against F.scaled_dot_product_attention before writing.
//
// Tolerance: 1e-4 relative. Logits and gradients compare per tensor by the relative L2 error
// ||hseq - torch|| / ||torch|| (element-wise relative error is meaningless for entries near zero),
// with the floor described at grad_close; losses compare element-wise. The fixture's references
// are computed in float64 from float32 parameters, so the measured error is hseq's fp32 error
// (~1e-6 typically); 1e-4 leaves room for BLAS differences without hiding a wrong formula (a
// wrong term shifts these errors to 1e-2 or more).
#include <doctest/doctest.h>

#include <string>

#include "hseq/models/transformer_lm.hpp"
#include "support/parity.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

#ifndef HSEQ_SOURCE_DIR
#error "HSEQ_SOURCE_DIR must point at the source tree (set by test/CMakeLists.txt)"
#endif

using namespace hseq;
using Lm = models::TransformerLm<cpu, float>;

namespace {

void parity(std::string const& file, nn::PositionKind position, bool tied) {
  CAPTURE(file);
  auto f = io::SafetensorsFile::load(std::string(HSEQ_SOURCE_DIR) + "/test/fixtures/" + file);
  auto cfg = Lm::config_from_json(f.metadata("config"));
  // The fixture covers the variant its name promises (a regenerated file cannot silently drift).
  REQUIRE(cfg.position == position);
  REQUIRE(cfg.tied == tied);
  Lm m(cfg);
  nn::ParamStore<cpu, float> ps(m);
  int compared = test::check_parity(f, m, ps);
  // Count against the fixture's own gradient names, not the list check_parity iterated: a PyTorch
  // parameter without an hseq counterpart (say the untied head, or a position table hseq does not
  // have) makes the counts differ; an hseq parameter missing from the fixture fails its read.
  int torch_grads = 0;
  for (auto const& n : f.names())
    if (n.rfind("grad.", 0) == 0) {
      ++torch_grads;
      bool known = false;
      for (auto const& e : ps.entries()) known = known || "grad." + e.name == n;
      CAPTURE(n);
      CHECK(known);
    }
  CHECK(torch_grads == int(ps.entries().size()));
  CHECK(compared == torch_grads);
  // And the structure: tok_emb, ln_f (2), 14 per block, plus the learned table and the head when present.
  int expected = 3 + 14 * int(cfg.layers) + (position == nn::PositionKind::kLearned) + !tied;
  CHECK(torch_grads == expected);
}

}  // namespace

TEST_CASE("transformer_lm parity: tied head, learned positions: logits, loss, every gradient, 5 AdamW steps") {
  parity("transformer_lm_parity.safetensors", nn::PositionKind::kLearned, true);
}

TEST_CASE("transformer_lm parity: untied head, sinusoidal positions") {
  parity("transformer_lm_untied_sinusoidal.safetensors", nn::PositionKind::kSinusoidal, false);
}

TEST_CASE("transformer_lm parity: no position encoding") {
  parity("transformer_lm_none.safetensors", nn::PositionKind::kNone, true);
}

}  // namespace HSEQ_TEST_UNIT
