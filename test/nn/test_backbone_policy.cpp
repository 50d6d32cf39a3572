// SPDX-License-Identifier: MIT
// The backbone concept (nn/backbone_policy.hpp): the TransformerBlock satisfies it; an archetype
// block with exactly its members satisfies it and instantiates every member of the BlockStack
// (which therefore needs nothing more of a block); the archetype missing any one member does not.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "hseq/backend/cpu.hpp"
#include "hseq/nn/backbone_policy.hpp"
#include "hseq/nn/block_stack.hpp"
#include "hseq/nn/linear.hpp"
#include "hseq/nn/transformer_block.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

static_assert(nn::BackbonePolicy<nn::TransformerBlock<cpu, float>, cpu, float>);
static_assert(nn::BackbonePolicy<nn::TransformerBlock<cpu, double>, cpu, double>);
// Modules that do not map [B, t, dim] to itself incrementally are not backbones.
static_assert(!nn::BackbonePolicy<nn::Linear<cpu, float>, cpu, float>);
static_assert(!nn::BackbonePolicy<int, cpu, float>);

namespace {

enum class Drop {
  kNothing,
  kDim,
  kConfig,
  kVisitParams,
  kWorkspace,
  kForward,
  kBackward,
  kCacheShape,
  kStepWorkspace,
  kForwardStep
};

struct WithDim {
  std::int64_t dim = 8;
};
struct WithoutDim {
  std::int64_t width = 8;
};

/// A block with exactly what BackbonePolicy requires (move-only; never run).
template <Drop D = Drop::kNothing>
class BlockArchetype {
 public:
  using Space = cpu::Space;
  using CView = View<float const, Space>;
  using MView = View<float, Space>;
  using Config = std::conditional_t<D == Drop::kDim, WithoutDim, WithDim>;
  struct Saved {
    Saved() = default;
    Saved(Saved&&) = default;
    Saved& operator=(Saved&&) = default;
  };

  explicit BlockArchetype(Config c) : cfg_(c) {}
  BlockArchetype(BlockArchetype&&) = default;
  BlockArchetype& operator=(BlockArchetype&&) = delete;

  Config const& config() const requires(D != Drop::kConfig) { return cfg_; }
  template <class F>
  void visit_params(F&&, std::string const& = "") requires(D != Drop::kVisitParams) {}
  std::size_t forward_workspace(std::int64_t, std::int64_t) const { return 0; }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const requires(D != Drop::kWorkspace) { return 0; }
  Saved forward(cpu::Context&, CView, MView, Arena<Space>&) const requires(D != Drop::kForward) { return Saved(); }
  void backward(cpu::Context&, Saved const&, CView, MView, Arena<Space>&) const requires(D != Drop::kBackward) {}
  Shape cache_shape(std::int64_t batch, std::int64_t capacity) const requires(D != Drop::kCacheShape) {
    return Shape{batch, capacity, 1};
  }
  std::size_t step_workspace(std::int64_t, std::int64_t, std::int64_t) const requires(D != Drop::kStepWorkspace) {
    return 0;
  }
  void forward_step(cpu::Context&, CView, MView, std::int64_t, MView, Arena<Space>&) const
      requires(D != Drop::kForwardStep) {}

 private:
  Config cfg_;
};

}  // namespace

static_assert(nn::BackbonePolicy<BlockArchetype<>, cpu, float>);
static_assert(!nn::BackbonePolicy<BlockArchetype<>, cpu, double>);  // its views are float
static_assert(!nn::BackbonePolicy<BlockArchetype<Drop::kDim>, cpu, float>);
static_assert(!nn::BackbonePolicy<BlockArchetype<Drop::kConfig>, cpu, float>);
static_assert(!nn::BackbonePolicy<BlockArchetype<Drop::kVisitParams>, cpu, float>);
static_assert(!nn::BackbonePolicy<BlockArchetype<Drop::kWorkspace>, cpu, float>);
static_assert(!nn::BackbonePolicy<BlockArchetype<Drop::kForward>, cpu, float>);
static_assert(!nn::BackbonePolicy<BlockArchetype<Drop::kBackward>, cpu, float>);
static_assert(!nn::BackbonePolicy<BlockArchetype<Drop::kCacheShape>, cpu, float>);
static_assert(!nn::BackbonePolicy<BlockArchetype<Drop::kStepWorkspace>, cpu, float>);
static_assert(!nn::BackbonePolicy<BlockArchetype<Drop::kForwardStep>, cpu, float>);

// Every member of the BlockStack compiles with the archetype block.
// (At global scope: an explicit instantiation must be in a namespace enclosing the template's.)
}  // namespace HSEQ_TEST_UNIT
template class hseq::nn::BlockStack<hseq::cpu, float, HSEQ_TEST_UNIT::BlockArchetype<>>;
namespace HSEQ_TEST_UNIT {

TEST_CASE("backbone concept: a BlockStack of archetype blocks visits every block's parameters") {
  // visit_params is a member template; instantiating it with the visitor type the concept states
  // shows the stack forwards nothing a backbone does not offer.
  using Stack = nn::BlockStack<cpu, float, BlockArchetype<>>;
  using Visitor = void (*)(std::string const&, nn::Param<float, cpu::Space>&);
  [[maybe_unused]] auto visit = &Stack::template visit_params<Visitor&>;
  Stack stack({3, BlockArchetype<>::Config{}});
  CHECK(stack.size() == 3);
  CHECK(stack.block(2).config().dim == 8);
}

}  // namespace HSEQ_TEST_UNIT
