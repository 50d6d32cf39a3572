// SPDX-License-Identifier: MIT
// The model concepts (models/model.hpp, models/cached_model.hpp):
//  - the TransformerLm and the Hourglass satisfy Model and CachedModel, for both scalars and every
//    policy pair, and only for the scalar they were built for;
//  - an archetype with exactly what the concepts require, and nothing more, instantiates every
//    member of the Trainer (Model) and generate() (CachedModel): the concepts state the whole
//    contract those rely on;
//  - the archetype missing any one member does not satisfy the concept, so every requirement is
//    really checked; without the cache members it is still a Model.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "hseq/backend/cpu.hpp"
#include "hseq/models/cached_model.hpp"
#include "hseq/models/generate.hpp"
#include "hseq/models/hourglass.hpp"
#include "hseq/models/model.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "hseq/train/trainer.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

template <class M, class T>
constexpr bool kCachedModel = models::CachedModel<M, cpu, T>;

static_assert(models::Model<models::TransformerLm<cpu, float>, cpu, float>);
static_assert(kCachedModel<models::TransformerLm<cpu, float>, float>);
static_assert(kCachedModel<models::TransformerLm<cpu, double>, double>);
static_assert(kCachedModel<models::Hourglass<cpu, float>, float>);
static_assert(kCachedModel<models::Hourglass<cpu, double>, double>);
static_assert(
    kCachedModel<models::Hourglass<cpu, float, hier::Hierarchy<1, 1, hier::Level<1, 2>>, hier::AvgPool, hier::Repeat>,
                 float>);
static_assert(
    kCachedModel<models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::LinearPool, hier::LinearUp>, float>);
static_assert(
    kCachedModel<models::Hourglass<cpu, double, hier::DynamicHierarchy, hier::AttentionPool, hier::Repeat>, double>);
// A model computes in the scalar it was built for.
static_assert(!models::Model<models::TransformerLm<cpu, float>, cpu, double>);
static_assert(!models::Model<models::Hourglass<cpu, double>, cpu, float>);
// Modules are not models.
static_assert(!models::Model<nn::TransformerBlock<cpu, float>, cpu, float>);
static_assert(!models::Model<int, cpu, float>);

namespace {

enum class Drop {
  kNothing,
  kKind,
  kConfigJson,
  kConfigFromJson,
  kVisitParams,
  kWorkspace,
  kForward,
  kBackward,
  kTraceCounted,
  kMakeCache,
  kResetCache,
  kStepWorkspace,
  kForwardStep,
};

struct Kind {
  static constexpr char const* kKind = "model-archetype";
};
struct NoKind {};

/// A model with exactly the members Model and CachedModel require (move-only where they allow it;
/// never run: its members only have to compile). `Drop` removes one through a requires-clause.
template <Drop D = Drop::kNothing>
class ModelArchetype : public std::conditional_t<D == Drop::kKind, NoKind, Kind> {
 public:
  using Space = cpu::Space;
  using Ids = View<std::int32_t const, Space>;
  struct Config {
    std::int64_t vocab = 256, context = 16;
  };
  struct Counted {
    std::int64_t counted = 0;
  };
  struct NotCounted {};
  struct Trace : std::conditional_t<D == Drop::kTraceCounted, NotCounted, Counted> {
    View<float, Space> logits;
    Trace() = default;
    Trace(Trace&&) = default;
    Trace& operator=(Trace&&) = default;
  };
  struct Cache {
    explicit Cache(int) {}
    Cache(Cache&&) = default;
    Cache& operator=(Cache&&) = default;
  };

  explicit ModelArchetype(Config c) : cfg_(c) {}
  ModelArchetype(ModelArchetype const&) = delete;
  ModelArchetype& operator=(ModelArchetype const&) = delete;

  Config const& config() const { return cfg_; }
  std::string config_json() const requires(D != Drop::kConfigJson) { return "{}"; }
  static Config config_from_json(std::string const&) requires(D != Drop::kConfigFromJson) { return Config{}; }
  template <class F>
  void visit_params(F&&, std::string const& = "") requires(D != Drop::kVisitParams) {}
  std::size_t forward_workspace(std::int64_t, std::int64_t) const { return 0; }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const requires(D != Drop::kWorkspace) { return 0; }
  double forward(cpu::Context&, Ids, Ids, Arena<Space>&, Trace&) const requires(D != Drop::kForward) { return 0; }
  void backward(cpu::Context&, Trace&, Arena<Space>&) const requires(D != Drop::kBackward) {}

  Cache make_cache(std::int64_t, std::int64_t) const requires(D != Drop::kMakeCache) { return Cache(0); }
  void reset_cache(Cache&) const requires(D != Drop::kResetCache) {}
  std::size_t step_workspace(std::int64_t, std::int64_t, std::int64_t) const requires(D != Drop::kStepWorkspace) {
    return 0;
  }
  void forward_step(cpu::Context&, Ids, Cache&, std::int64_t, View<float, Space>, Arena<Space>&) const
      requires(D != Drop::kForwardStep) {}

 private:
  Config cfg_;
};

}  // namespace

static_assert(models::Model<ModelArchetype<>, cpu, float>);
static_assert(models::CachedModel<ModelArchetype<>, cpu, float>);
static_assert(!models::Model<ModelArchetype<>, cpu, double>);  // its logits are float
static_assert(!models::Model<ModelArchetype<Drop::kKind>, cpu, float>);
static_assert(!models::Model<ModelArchetype<Drop::kConfigJson>, cpu, float>);
static_assert(!models::Model<ModelArchetype<Drop::kConfigFromJson>, cpu, float>);
static_assert(!models::Model<ModelArchetype<Drop::kVisitParams>, cpu, float>);
static_assert(!models::Model<ModelArchetype<Drop::kWorkspace>, cpu, float>);
static_assert(!models::Model<ModelArchetype<Drop::kForward>, cpu, float>);
static_assert(!models::Model<ModelArchetype<Drop::kBackward>, cpu, float>);
static_assert(!models::Model<ModelArchetype<Drop::kTraceCounted>, cpu, float>);
// Without its cache members it is a Model, not a CachedModel.
static_assert(models::Model<ModelArchetype<Drop::kMakeCache>, cpu, float>);
static_assert(!models::CachedModel<ModelArchetype<Drop::kMakeCache>, cpu, float>);
static_assert(models::Model<ModelArchetype<Drop::kResetCache>, cpu, float>);
static_assert(!models::CachedModel<ModelArchetype<Drop::kResetCache>, cpu, float>);
static_assert(!models::CachedModel<ModelArchetype<Drop::kStepWorkspace>, cpu, float>);
static_assert(models::Model<ModelArchetype<Drop::kForwardStep>, cpu, float>);
static_assert(!models::CachedModel<ModelArchetype<Drop::kForwardStep>, cpu, float>);
// A CachedModel is a Model first.
static_assert(!models::CachedModel<ModelArchetype<Drop::kBackward>, cpu, float>);

// The Trainer and generate() compile with the archetype: they need nothing of a model that the
// concepts do not state. (Explicit instantiation compiles every member of the Trainer.)
// (At global scope: an explicit instantiation must be in a namespace enclosing the template's.)
}  // namespace HSEQ_TEST_UNIT
template class hseq::train::Trainer<hseq::cpu, float, HSEQ_TEST_UNIT::ModelArchetype<>>;
template std::string hseq::models::generate<hseq::cpu, float, HSEQ_TEST_UNIT::ModelArchetype<>>(
    hseq::cpu::Context&, HSEQ_TEST_UNIT::ModelArchetype<> const&, std::string const&,
    hseq::models::GenerateConfig const&);
namespace HSEQ_TEST_UNIT {

TEST_CASE("model concepts: the kinds that name models in checkpoints are distinct") {
  // Checkpoints store kKind and loading compares it, so two model families must not share one.
  CHECK(std::string(models::TransformerLm<cpu, float>::kKind) != models::Hourglass<cpu, float>::kKind);
  // The kind names the family, not the scalar or the policies.
  CHECK(std::string(models::Hourglass<cpu, float>::kKind) ==
        models::Hourglass<cpu, double, hier::DynamicHierarchy, hier::AvgPool, hier::Repeat>::kKind);
}

}  // namespace HSEQ_TEST_UNIT
