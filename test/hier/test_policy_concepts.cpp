// SPDX-License-Identifier: MIT
// The policy concepts (hier/*_policy.hpp):
//  - every shortening and upsampling policy of the library satisfies its concept, for both scalars;
//  - an archetype with exactly what ShortenPolicy / UpsamplePolicy require, and nothing more
//    (move-only where the concept allows it), instantiates every member of the Hourglass: the
//    concepts state the whole contract the Hourglass relies on, not a part of it;
//  - the same archetype missing any one member does not satisfy the concept, so every requirement
//    is really checked;
//  - the encoder, decoder, segment backbone and segmenter concepts (models::Hierarchical) hold for the
//    library's policies and for archetypes with exactly their members; a decoder or backbone
//    archetype without its cached-generation members does not satisfy them; the provisional
//    compression concept is satisfiable; a variable segmenter archetype (Delimited's members)
//    satisfies SegmenterPolicy as the variable kind, and missing any of its members it does not.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <type_traits>

#include "hseq/backend/cpu.hpp"
#include "hseq/hier/attention_pool.hpp"
#include "hseq/hier/attention_upsample.hpp"
#include "hseq/hier/avg_pool.hpp"
#include "hseq/hier/compression_policy.hpp"
#include "hseq/hier/decoder_policy.hpp"
#include "hseq/hier/delimited.hpp"
#include "hseq/hier/encoder_policy.hpp"
#include "hseq/hier/fixed_chunks.hpp"
#include "hseq/hier/linear_pool.hpp"
#include "hseq/hier/linear_upsample.hpp"
#include "hseq/hier/mlp_encoder.hpp"
#include "hseq/hier/repeat_upsample.hpp"
#include "hseq/hier/rnn_backbone.hpp"
#include "hseq/hier/rnn_decoder.hpp"
#include "hseq/hier/rnn_encoder.hpp"
#include "hseq/hier/segment_backbone_policy.hpp"
#include "hseq/hier/segmenter_policy.hpp"
#include "hseq/hier/transformer_backbone.hpp"
#include "hseq/hier/transformer_decoder.hpp"
#include "hseq/hier/shorten_policy.hpp"
#include "hseq/hier/upsample_policy.hpp"
#include "hseq/models/hourglass.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

// ---------------------------------------------------------------------------------------------
// The library's policies

static_assert(hier::ShortenPolicy<hier::AvgPool, cpu, float>);
static_assert(hier::ShortenPolicy<hier::AvgPool, cpu, double>);
static_assert(hier::ShortenPolicy<hier::LinearPool, cpu, float>);
static_assert(hier::ShortenPolicy<hier::LinearPool, cpu, double>);
static_assert(hier::ShortenPolicy<hier::AttentionPool, cpu, float>);
static_assert(hier::ShortenPolicy<hier::AttentionPool, cpu, double>);
static_assert(hier::ShortenPolicy<hier::AttentionPoolLinear, cpu, float>);
static_assert(hier::ShortenPolicy<hier::AttentionPoolLinear, cpu, double>);
static_assert(hier::UpsamplePolicy<hier::Repeat, cpu, float>);
static_assert(hier::UpsamplePolicy<hier::Repeat, cpu, double>);
static_assert(hier::UpsamplePolicy<hier::LinearUp, cpu, float>);
static_assert(hier::UpsamplePolicy<hier::LinearUp, cpu, double>);
static_assert(hier::UpsamplePolicy<hier::AttentionUp, cpu, float>);
static_assert(hier::UpsamplePolicy<hier::AttentionUp, cpu, double>);
static_assert(hier::UpsamplePolicy<hier::AttentionUpLinear, cpu, float>);
static_assert(hier::UpsamplePolicy<hier::AttentionUpLinear, cpu, double>);
// The attention resampling tags say so (hier::kAttentionResampling: the Hourglass counts their
// FLOPs at both rates), whatever their query source; the plain policies do not.
static_assert(hier::kAttentionResampling<hier::AttentionPool> && hier::kAttentionResampling<hier::AttentionPoolLinear>);
static_assert(hier::kAttentionResampling<hier::AttentionUp> && hier::kAttentionResampling<hier::AttentionUpLinear>);
static_assert(!hier::kAttentionResampling<hier::AvgPool> && !hier::kAttentionResampling<hier::LinearPool>);
static_assert(!hier::kAttentionResampling<hier::Repeat> && !hier::kAttentionResampling<hier::LinearUp>);

// Shortening and upsampling are not interchangeable (their forward and step functions differ).
static_assert(!hier::ShortenPolicy<hier::Repeat, cpu, float>);
static_assert(!hier::ShortenPolicy<hier::AttentionUp, cpu, float>);
static_assert(!hier::UpsamplePolicy<hier::AvgPool, cpu, float>);
static_assert(!hier::UpsamplePolicy<hier::AttentionPool, cpu, float>);
static_assert(!hier::ShortenPolicy<hier::AttentionUpLinear, cpu, float>);
static_assert(!hier::UpsamplePolicy<hier::AttentionPoolLinear, cpu, float>);
// A module template is not a policy: the tag (with its name) is.
static_assert(!hier::ShortenPolicy<hier::AvgPoolShorten<cpu, float>, cpu, float>);
// Not a backend.
static_assert(!hier::ShortenPolicy<hier::AvgPool, float, float>);

// The Compressive Transformer's mean-pooling and strided-convolution (kernel = stride = c)
// compressors are the average and linear pooling modules.
static_assert(hier::CompressionPolicy<hier::AvgPool, cpu, float>);
static_assert(hier::CompressionPolicy<hier::LinearPool, cpu, double>);
static_assert(!hier::CompressionPolicy<hier::Repeat, cpu, float>);  // forward takes (y, res, u)

namespace {

// ---------------------------------------------------------------------------------------------
// Archetypes: exactly the members a concept requires. `Drop` removes one, through a requires-clause
// on that member (or by making a member type unusable), to show that the concept checks it.

enum class Drop {
  kNothing,
  kName,
  kConfig,
  kVisitParams,
  kWorkspace,
  kForward,
  kBackward,
  kSaved,
  kStepState,
  kStepWorkspace,
  kStepInput,
  kStepPool,
  kStepShort,
  kStepUp,
  kResidualConstant,
};

/// What the archetype modules share: the member types, move-only where the concepts allow it.
template <class B, class T, Drop D>
struct ArchetypeBase {
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  using Config = hier::ResampleConfig;
  struct SavedT {  // default-constructible and movable, not copyable
    SavedT() = default;
    SavedT(SavedT&&) = default;
    SavedT& operator=(SavedT&&) = default;
  };
  struct SavedNoDefault {  // traces default-construct Saved: this one cannot be
    explicit SavedNoDefault(int) {}
    SavedNoDefault(SavedNoDefault&&) = default;
    SavedNoDefault& operator=(SavedNoDefault&&) = default;
  };
  using Saved = std::conditional_t<D == Drop::kSaved, SavedNoDefault, SavedT>;
  struct StepState {  // only move-constructible
    explicit StepState(int) {}
    StepState(StepState&&) = default;
    StepState& operator=(StepState&&) = delete;
  };

  explicit ArchetypeBase(Config c) : cfg_(c) {}
  ArchetypeBase(ArchetypeBase&&) = default;
  ArchetypeBase& operator=(ArchetypeBase&&) = delete;

  Config const& config() const requires(D != Drop::kConfig) { return cfg_; }
  template <class F>
  void visit_params(F&&, std::string const& = "") requires(D != Drop::kVisitParams) {}
  std::size_t forward_workspace(std::int64_t, std::int64_t) const { return 0; }
  std::size_t backward_workspace(std::int64_t, std::int64_t) const requires(D != Drop::kWorkspace) { return 0; }
  StepState make_step_state(std::int64_t, std::int64_t) const requires(D != Drop::kStepState) { return StepState(0); }
  std::size_t step_workspace(std::int64_t, std::int64_t) const requires(D != Drop::kStepWorkspace) { return 0; }

 private:
  Config cfg_;
};

template <Drop D = Drop::kNothing>
struct ShortenArchetypeNamed {
  static constexpr char const* kName = "shorten-archetype";
  template <Backend B, class T>
  struct Module : ArchetypeBase<B, T, D> {
    using Base = ArchetypeBase<B, T, D>;
    using Base::Base;
    using typename Base::CView, typename Base::Ctx, typename Base::MView, typename Base::Saved, typename Base::Space,
        typename Base::StepState;
    Module(Module&&) = default;

    Saved forward(Ctx&, CView, MView, Arena<Space>&) const requires(D != Drop::kForward) { return Saved(); }
    void backward(Ctx&, Saved const&, CView, MView, Arena<Space>&) const requires(D != Drop::kBackward) {}
    void step_input(Ctx&, StepState&, CView, std::int64_t, Arena<Space>&) const requires(D != Drop::kStepInput) {}
    void step_pool(Ctx&, StepState&, CView, std::int64_t, MView, Arena<Space>&) const requires(D != Drop::kStepPool) {}
  };
};
template <Drop D>
struct ShortenArchetypeUnnamed {
  template <Backend B, class T>
  using Module = typename ShortenArchetypeNamed<D>::template Module<B, T>;
};
template <Drop D = Drop::kNothing>
using ShortenArchetype = std::conditional_t<D == Drop::kName, ShortenArchetypeUnnamed<D>, ShortenArchetypeNamed<D>>;

template <Drop D = Drop::kNothing>
struct UpsampleArchetypeNamed {
  static constexpr char const* kName = "upsample-archetype";
  static constexpr bool kUsesResidual = true;
  template <Backend B, class T>
  struct Module : ArchetypeBase<B, T, D> {
    using Base = ArchetypeBase<B, T, D>;
    using Base::Base;
    using typename Base::CView, typename Base::Ctx, typename Base::MView, typename Base::Saved, typename Base::Space,
        typename Base::StepState;
    Module(Module&&) = default;

    Saved forward(Ctx&, CView, CView, MView, Arena<Space>&) const requires(D != Drop::kForward) { return Saved(); }
    void backward(Ctx&, Saved const&, CView, MView, MView, Arena<Space>&) const requires(D != Drop::kBackward) {}
    void step_short(Ctx&, StepState&, CView, std::int64_t, Arena<Space>&) const requires(D != Drop::kStepShort) {}
    void step_up(Ctx&, StepState&, CView, std::int64_t, MView, Arena<Space>&) const requires(D != Drop::kStepUp) {}
  };
};
/// kUsesResidual exists but is not a constant (the Hourglass branches on it with if constexpr).
template <Drop D>
struct UpsampleArchetypeNonConstant {
  static constexpr char const* kName = "upsample-archetype";
  static inline bool kUsesResidual = true;
  template <Backend B, class T>
  using Module = typename UpsampleArchetypeNamed<D>::template Module<B, T>;
};
template <Drop D = Drop::kNothing>
using UpsampleArchetype =
    std::conditional_t<D == Drop::kResidualConstant, UpsampleArchetypeNonConstant<D>, UpsampleArchetypeNamed<D>>;

}  // namespace

static_assert(hier::ShortenPolicy<ShortenArchetype<>, cpu, float>);
static_assert(hier::ShortenPolicy<ShortenArchetype<>, cpu, double>);
static_assert(!hier::ShortenPolicy<ShortenArchetype<Drop::kName>, cpu, float>);
static_assert(!hier::ShortenPolicy<ShortenArchetype<Drop::kConfig>, cpu, float>);
static_assert(!hier::ShortenPolicy<ShortenArchetype<Drop::kVisitParams>, cpu, float>);
static_assert(!hier::ShortenPolicy<ShortenArchetype<Drop::kWorkspace>, cpu, float>);
static_assert(!hier::ShortenPolicy<ShortenArchetype<Drop::kForward>, cpu, float>);
static_assert(!hier::ShortenPolicy<ShortenArchetype<Drop::kBackward>, cpu, float>);
static_assert(!hier::ShortenPolicy<ShortenArchetype<Drop::kSaved>, cpu, float>);
static_assert(!hier::ShortenPolicy<ShortenArchetype<Drop::kStepState>, cpu, float>);
static_assert(!hier::ShortenPolicy<ShortenArchetype<Drop::kStepWorkspace>, cpu, float>);
static_assert(!hier::ShortenPolicy<ShortenArchetype<Drop::kStepInput>, cpu, float>);
static_assert(!hier::ShortenPolicy<ShortenArchetype<Drop::kStepPool>, cpu, float>);

static_assert(hier::UpsamplePolicy<UpsampleArchetype<>, cpu, float>);
static_assert(hier::UpsamplePolicy<UpsampleArchetype<>, cpu, double>);
static_assert(!hier::UpsamplePolicy<UpsampleArchetype<Drop::kResidualConstant>, cpu, float>);
static_assert(!hier::UpsamplePolicy<UpsampleArchetype<Drop::kConfig>, cpu, float>);
static_assert(!hier::UpsamplePolicy<UpsampleArchetype<Drop::kVisitParams>, cpu, float>);
static_assert(!hier::UpsamplePolicy<UpsampleArchetype<Drop::kWorkspace>, cpu, float>);
static_assert(!hier::UpsamplePolicy<UpsampleArchetype<Drop::kForward>, cpu, float>);
static_assert(!hier::UpsamplePolicy<UpsampleArchetype<Drop::kBackward>, cpu, float>);
static_assert(!hier::UpsamplePolicy<UpsampleArchetype<Drop::kSaved>, cpu, float>);
static_assert(!hier::UpsamplePolicy<UpsampleArchetype<Drop::kStepState>, cpu, float>);
static_assert(!hier::UpsamplePolicy<UpsampleArchetype<Drop::kStepWorkspace>, cpu, float>);
static_assert(!hier::UpsamplePolicy<UpsampleArchetype<Drop::kStepShort>, cpu, float>);
static_assert(!hier::UpsamplePolicy<UpsampleArchetype<Drop::kStepUp>, cpu, float>);
// The archetypes are not each other's policy.
static_assert(!hier::UpsamplePolicy<ShortenArchetype<>, cpu, float>);
static_assert(!hier::ShortenPolicy<UpsampleArchetype<>, cpu, float>);

// Every member of the Hourglass compiles with the archetypes: it needs nothing of its policies that
// the concepts do not state. (Explicit instantiation compiles all non-template members; the member
// template visit_params is instantiated below.)
// (At global scope: an explicit instantiation must be in a namespace enclosing the template's.)
}  // namespace HSEQ_TEST_UNIT
template class hseq::models::Hourglass<hseq::cpu, float, hseq::hier::DynamicHierarchy,
                                       HSEQ_TEST_UNIT::ShortenArchetype<>, HSEQ_TEST_UNIT::UpsampleArchetype<>>;
template class hseq::models::Hourglass<hseq::cpu, double,
                                       hseq::hier::Hierarchy<1, 1, hseq::hier::Level<1, 2>, hseq::hier::Level<1, 3>>,
                                       HSEQ_TEST_UNIT::ShortenArchetype<>, HSEQ_TEST_UNIT::UpsampleArchetype<>>;
namespace HSEQ_TEST_UNIT {

namespace {

// ---------------------------------------------------------------------------------------------
// The provisional concepts are satisfiable: minimal types with their members (declared only: the
// concepts look at signatures, and nothing calls these yet).

template <class B, class T>
struct ProvisionalBase {
  using Space = typename B::Space;
  using Ctx = typename B::Context;
  using CView = View<T const, Space>;
  using MView = View<T, Space>;
  struct Config {
    std::int64_t dim = 0, chunk = 2;
  };
  struct Saved {};
  explicit ProvisionalBase(Config);
  Config const& config() const;
  template <class F>
  void visit_params(F&&, std::string const& = "");
  std::size_t forward_workspace(std::int64_t, std::int64_t) const;
  std::size_t backward_workspace(std::int64_t, std::int64_t) const;
};

struct EncoderArchetype {
  static constexpr char const* kName = "encoder-archetype";
  template <Backend B, class T>
  struct Module : ProvisionalBase<B, T> {
    using Base = ProvisionalBase<B, T>;
    using Base::Base;
    using typename Base::CView, typename Base::Ctx, typename Base::MView, typename Base::Saved, typename Base::Space;
    Saved forward(Ctx&, CView x, MView e, Arena<Space>&) const;
    void backward(Ctx&, Saved const&, CView de, MView dx, Arena<Space>&) const;
  };
};

/// `Steps`: with the cached-generation members (false: without, which must fail the concept).
template <bool Steps = true>
struct DecoderArchetype {
  static constexpr char const* kName = "decoder-archetype";
  template <Backend B, class T>
  struct Module : ProvisionalBase<B, T> {
    using Base = ProvisionalBase<B, T>;
    using Base::Base;
    using typename Base::CView, typename Base::Ctx, typename Base::MView, typename Base::Saved, typename Base::Space;
    struct StepState {  // only movable
      StepState(StepState&&) = default;
      StepState& operator=(StepState&&) = default;
    };
    void forward(Ctx&, CView cond, CView x, MView y, Saved&, Arena<Space>&) const;
    void backward(Ctx&, Saved const&, CView dy, MView dcond, MView dx, Arena<Space>&) const;
    StepState make_step_state(std::int64_t) const;
    std::size_t step_workspace(std::int64_t) const;
    void step_begin(Ctx&, StepState&, CView cond, Arena<Space>&) const;
    void step(Ctx&, StepState&, CView x, std::int64_t r, MView y, Arena<Space>&) const requires Steps;
  };
};

template <bool Steps = true>
struct SegmentBackboneArchetype {
  static constexpr char const* kName = "backbone-archetype";
  template <Backend B, class T>
  struct Module : ProvisionalBase<B, T> {
    using Base = ProvisionalBase<B, T>;
    using Base::Base;
    using typename Base::CView, typename Base::Ctx, typename Base::MView, typename Base::Saved, typename Base::Space;
    struct StepState {
      StepState(StepState&&) = default;
      StepState& operator=(StepState&&) = default;
    };
    void forward(Ctx&, CView e, MView s, Saved&, Arena<Space>&) const;
    void backward(Ctx&, Saved const&, CView ds, MView de, Arena<Space>&) const;
    StepState make_step_state(std::int64_t, std::int64_t) const;
    std::size_t step_workspace(std::int64_t, std::int64_t) const;
    void step(Ctx&, StepState&, CView e, std::int64_t j, MView s, Arena<Space>&) const requires Steps;
  };
};

struct SegmenterArchetype {
  static constexpr char const* kName = "segmenter-archetype";
  static constexpr std::int64_t kSize = 3;
  static std::int64_t segments(std::int64_t t, char const*);
};
struct SegmenterSizeZero {
  static constexpr char const* kName = "size-zero";
  static constexpr std::int64_t kSize = 0;
  static std::int64_t segments(std::int64_t t, char const*);
};
/// Exactly what VariableSegmenter requires; `Drop` removes one member (1 name, 2 ends, 3 layout,
/// 4 max_segments, 5 the string constructor).
template <int Drop = 0>
struct VariableSegmenterArchetype {
  static constexpr char const* kName = "variable-archetype";
  static constexpr std::int64_t kSize = 6;
  static constexpr bool kVariable = true;
  explicit VariableSegmenterArchetype(std::string) requires(Drop != 5);
  explicit VariableSegmenterArchetype(int) requires(Drop == 5);
  char const* name() const requires(Drop != 1);
  std::string const& delimiter() const;
  bool ends(std::span<std::int32_t const>) const requires(Drop != 2);
  void layout(std::span<std::int32_t const>, std::int64_t, std::int64_t, hier::SegmentLayout&) const requires(Drop != 3);
  std::int64_t max_segments(std::int64_t) const requires(Drop != 4);
};

}  // namespace

static_assert(hier::EncoderPolicy<EncoderArchetype, cpu, float>);
static_assert(hier::EncoderPolicy<EncoderArchetype, cpu, double>);
static_assert(hier::CompressionPolicy<EncoderArchetype, cpu, float>);  // the same shape of function
static_assert(!hier::EncoderPolicy<DecoderArchetype<>, cpu, float>);   // forward takes a condition
static_assert(hier::DecoderPolicy<DecoderArchetype<>, cpu, float>);
static_assert(hier::DecoderPolicy<DecoderArchetype<>, cpu, double>);
static_assert(!hier::DecoderPolicy<DecoderArchetype<false>, cpu, float>);  // no step: no cached generation
static_assert(hier::SegmentBackbonePolicy<SegmentBackboneArchetype<>, cpu, float>);
static_assert(!hier::SegmentBackbonePolicy<SegmentBackboneArchetype<false>, cpu, float>);
static_assert(!hier::SegmentBackbonePolicy<EncoderArchetype, cpu, float>);  // no cached step
static_assert(hier::SegmenterPolicy<SegmenterArchetype>);
static_assert(!hier::SegmenterPolicy<SegmenterSizeZero>);
static_assert(!hier::SegmenterPolicy<hier::AvgPool>);
static_assert(hier::SegmenterPolicy<VariableSegmenterArchetype<>>);
static_assert(hier::VariableSegmenter<VariableSegmenterArchetype<>>);
static_assert(!hier::FixedSegmenter<VariableSegmenterArchetype<>>);
static_assert(!hier::SegmenterPolicy<VariableSegmenterArchetype<1>>);
static_assert(!hier::SegmenterPolicy<VariableSegmenterArchetype<2>>);
static_assert(!hier::SegmenterPolicy<VariableSegmenterArchetype<3>>);
static_assert(!hier::SegmenterPolicy<VariableSegmenterArchetype<4>>);
static_assert(!hier::SegmenterPolicy<VariableSegmenterArchetype<5>>);
static_assert(!hier::VariableSegmenter<SegmenterArchetype>);  // no kVariable: the fixed kind

// The library's segment-model policies (models::Hierarchical).
static_assert(hier::SegmenterPolicy<hier::FixedChunks<1>>);
static_assert(hier::SegmenterPolicy<hier::FixedChunks<8>>);
static_assert(hier::SegmenterPolicy<hier::Delimited<64>>);
static_assert(hier::VariableSegmenter<hier::Delimited<1>>);
// Variable segments need an encoder that reads their lengths; both library encoders do.
static_assert(hier::RaggedEncoderModule<hier::EncoderModule<hier::MlpEncoder, cpu, float>, cpu, float>);
static_assert(hier::RaggedEncoderModule<hier::EncoderModule<hier::RnnEncoder, cpu, double>, cpu, double>);
static_assert(!hier::RaggedEncoderModule<hier::EncoderModule<EncoderArchetype, cpu, float>, cpu, float>);
static_assert(hier::EncoderPolicy<hier::MlpEncoder, cpu, float>);
static_assert(hier::EncoderPolicy<hier::RnnEncoder, cpu, double>);
static_assert(hier::SegmentBackbonePolicy<hier::RnnBackbone, cpu, float>);
static_assert(hier::SegmentBackbonePolicy<hier::TransformerBackbone, cpu, double>);
static_assert(hier::DecoderPolicy<hier::RnnDecoder, cpu, float>);
static_assert(hier::DecoderPolicy<hier::TransformerDecoder, cpu, double>);
static_assert(!hier::DecoderPolicy<hier::MlpEncoder, cpu, float>);
static_assert(!hier::EncoderPolicy<hier::RnnDecoder, cpu, float>);
static_assert(!hier::SegmentBackbonePolicy<hier::MlpEncoder, cpu, float>);
static_assert(!hier::DecoderPolicy<EncoderArchetype, cpu, float>);
static_assert(!hier::DecoderPolicy<hier::AvgPool, cpu, float>);

TEST_CASE("policy concepts: the Hourglass instantiates visit_params with the archetypes") {
  using Hg = models::Hourglass<cpu, float, hier::DynamicHierarchy, ShortenArchetype<>, UpsampleArchetype<>>;
  using Visitor = void (*)(std::string const&, nn::Param<float, cpu::Space>&);
  [[maybe_unused]] auto visit = &Hg::template visit_params<Visitor&>;
  // The names the Hourglass writes into its configuration are the policies' kName.
  CHECK(std::string(Hg::shorten_name()) == "shorten-archetype");
  CHECK(std::string(Hg::upsample_name()) == "upsample-archetype");
}

TEST_CASE("policy concepts: the library's policies have distinct names within their kind") {
  // Programs and checkpoints choose a policy by its kName.
  std::set<std::string> shorten{hier::AvgPool::kName, hier::LinearPool::kName, hier::AttentionPool::kName,
                                hier::AttentionPoolLinear::kName};
  std::set<std::string> upsample{hier::Repeat::kName, hier::LinearUp::kName, hier::AttentionUp::kName,
                                 hier::AttentionUpLinear::kName};
  CHECK(shorten.size() == 4);
  CHECK(upsample.size() == 4);
  std::set<std::string> encoders{hier::MlpEncoder::kName, hier::RnnEncoder::kName};
  std::set<std::string> backbones{hier::RnnBackbone::kName, hier::TransformerBackbone::kName};
  std::set<std::string> decoders{hier::RnnDecoder::kName, hier::TransformerDecoder::kName};
  CHECK(encoders.size() == 2);
  CHECK(backbones.size() == 2);
  CHECK(decoders.size() == 2);
  CHECK(std::string(hier::FixedChunks<4>::kName) != hier::FixedChunks<40>::kName);
}

}  // namespace HSEQ_TEST_UNIT
