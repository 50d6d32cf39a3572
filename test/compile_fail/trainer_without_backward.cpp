// SPDX-License-Identifier: MIT
// Compile-fail case (test/compile_fail/check.cmake): a Trainer of a model without backward is
// refused by the Model concept, and the error names the concept and the missing call. With
// HSEQ_COMPILE_FAIL_CONTROL the model has it and the Trainer compiles.
// expect-error: Model<
// expect-error: \.backward\(ctx, trace, ws\)
#include <string>

#include "hseq/backend/cpu.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "hseq/train/trainer.hpp"

namespace {

/// A TransformerLm that can only be evaluated: backward is not written yet.
struct ForwardOnlyLm : hseq::models::TransformerLm<hseq::cpu, float> {
  using Base = hseq::models::TransformerLm<hseq::cpu, float>;
  using Base::Base;
#ifndef HSEQ_COMPILE_FAIL_CONTROL
  void backward() const = delete;  // hides the base's: the member the concept asks for is missing
#endif
};

}  // namespace

using Trainer = hseq::train::Trainer<hseq::cpu, float, ForwardOnlyLm>;
static_assert(sizeof(Trainer) > 0);
