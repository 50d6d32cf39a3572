// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/hier/attention_pool.hpp"
#include "hseq/hier/attention_upsample.hpp"
#include "hseq/hier/avg_pool.hpp"
#include "hseq/hier/linear_pool.hpp"
#include "hseq/hier/linear_upsample.hpp"
#include "hseq/hier/ragged_policy.hpp"
#include "hseq/hier/repeat_upsample.hpp"
#include "hseq/hier/select_pool.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

// Select, AvgPool (the segment mean), AttentionPool (attention over the segment's bytes), Repeat,
// LinearUp (position-indexed) and the attention upsamplings (cross-attention to the closed
// segments) pool and unpool over data-dependent segments, on every backend and scalar.
static_assert(hier::RaggedShorten<hier::Select, cpu, float> && hier::RaggedShorten<hier::Select, cpu, double>);
static_assert(hier::RaggedShorten<hier::AvgPool, cpu, float> && hier::RaggedShorten<hier::AvgPool, cpu, double>);
static_assert(hier::RaggedShorten<hier::AttentionPool, cpu, float> &&
              hier::RaggedShorten<hier::AttentionPool, cpu, double>);
static_assert(hier::RaggedUpsample<hier::Repeat, cpu, float> && hier::RaggedUpsample<hier::Repeat, cpu, double>);
static_assert(hier::RaggedUpsample<hier::LinearUp, cpu, float> && hier::RaggedUpsample<hier::LinearUp, cpu, double>);
static_assert(hier::RaggedUpsample<hier::AttentionUp, cpu, float> &&
              hier::RaggedUpsample<hier::AttentionUpLinear, cpu, double>);
// Linear pooling has no variable-length form, nor has attention pooling whose queries come from it
// (the Hourglass refuses them for rule levels).
static_assert(!hier::RaggedShorten<hier::LinearPool, cpu, float>);
static_assert(!hier::RaggedShorten<hier::AttentionPoolLinear, cpu, float>);
// A ragged policy is still a policy of its own kind only.
static_assert(hier::ShortenPolicy<hier::Select, cpu, float> && !hier::UpsamplePolicy<hier::Select, cpu, float>);
static_assert(!hier::RaggedShorten<hier::Repeat, cpu, float> && !hier::RaggedUpsample<hier::Select, cpu, float>);

TEST_CASE("ragged policies: the concepts tell the variable-length policies apart (static_asserts above)") {
  CHECK(hier::RaggedShorten<hier::Select, cpu, float>);
}

}  // namespace HSEQ_TEST_UNIT
