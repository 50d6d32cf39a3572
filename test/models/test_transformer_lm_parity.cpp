// SPDX-License-Identifier: MIT
// PyTorch parity of TransformerLm: test/fixtures/transformer_lm_parity.safetensors was written by
// tools/gen_lm_fixture.py from a PyTorch model with the same structure and parameter names. This
// test needs no Python: it reads the fixture, copies the parameters in, and compares the logits,
// the loss, every parameter gradient and the losses of 5 AdamW steps (fp32).
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

#ifndef HSEQ_SOURCE_DIR
#error "HSEQ_SOURCE_DIR must point at the source tree (set by test/CMakeLists.txt)"
#endif

using namespace hseq;
using Lm = models::TransformerLm<cpu, float>;

TEST_CASE("transformer_lm parity: logits, loss, every gradient and 5 AdamW steps match PyTorch") {
  auto f = io::SafetensorsFile::load(std::string(HSEQ_SOURCE_DIR) + "/test/fixtures/transformer_lm_parity.safetensors");
  auto cfg = Lm::config_from_json(f.metadata("config"));
  Lm m(cfg);
  nn::ParamStore<cpu, float> ps(m);
  int compared = test::check_parity(f, m, ps);
  CHECK(compared == int(ps.entries().size()));
  CHECK(compared == 4 + 14 * int(cfg.layers));  // tok, pos, ln_f (2), and 14 per block
}
