// SPDX-License-Identifier: MIT
// Compile-fail case (test/compile_fail/check.cmake): generate() with a model that has no
// forward_step is refused by the CachedModel concept, and the error names the concept and the
// missing call. With HSEQ_COMPILE_FAIL_CONTROL the model has it and the call compiles.
// expect-error: CachedModel
// expect-error: \.forward_step\(ctx, ids, cache, pos, logits, ws\)
#include <cstdint>
#include <string>

#include "hseq/backend/cpu.hpp"
#include "hseq/models/generate.hpp"
#include "hseq/models/transformer_lm.hpp"

namespace {

/// A TransformerLm whose cached forward is not written yet: every other member is the model's.
struct HalfDoneLm : hseq::models::TransformerLm<hseq::cpu, float> {
  using Base = hseq::models::TransformerLm<hseq::cpu, float>;
  using Base::Base;
#ifndef HSEQ_COMPILE_FAIL_CONTROL
  void forward_step() const = delete;  // hides the base's: the member the concept asks for is missing
#endif
};

}  // namespace

std::string continue_text(hseq::cpu::Context& ctx, HalfDoneLm const& model) {
  return hseq::models::generate<hseq::cpu, float>(ctx, model, "Once upon a time", {});
}
