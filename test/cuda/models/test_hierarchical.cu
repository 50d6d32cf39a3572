// SPDX-License-Identifier: MIT
// CUDA models/hierarchical.hpp: HRED and HAED (models::Hierarchical with fixed and delimited segments) on the GPU
// against the CPU, GPU finite differences in double, causality, and cached logits.
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/compare.cuh"
#include "cuda/models/model_checks.cuh"
#include "hseq/cuda.hpp"
#include "hseq/hier/delimited.hpp"
#include "hseq/models/hierarchical.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_models;

namespace {

/// HRED/HAED (models::Hierarchical) over segments of 4 bytes (or of the segmenter Seg, e.g.
/// hier::Delimited<6> ended by the byte `delimiter`) with the given encoder, backbone and decoder
/// policies.
template <class Enc, class Bb, class Dec, class Seg = hier::FixedChunks<4>>
struct HierSpec {
  std::int64_t vocab = 64, dim = 16, heads = 2, layers = 2, decoder_layers = 1, context = 48;
  nn::RnnKind cell = nn::RnnKind::kGru;
  std::string delimiter = std::string(1, char(3));  // a variable segmenter's: id 3 (random ids hit it)
  static constexpr std::int64_t kSegment = Seg::kSize;
  // A variable segmenter plans for its worst case (every byte a delimiter): a batch carves less.
  static constexpr bool kExactPlan = !hier::VariableSegmenter<Seg>;
  // Attention runs only in a Transformer backbone or decoder (0: none may be dispatched).
  std::int64_t head_size() const {
    bool const attention = std::is_same_v<Bb, hier::TransformerBackbone> || std::is_same_v<Dec, hier::TransformerDecoder>;
    return attention ? dim / heads : 0;
  }
  std::string name() const {
    return std::string("Hierarchical (encoder ") + Enc::kName + ", backbone " + Bb::kName + ", decoder " + Dec::kName +
           ", cell " + nn::rnn_kind_name(cell) + ", d " + std::to_string(dim) + ", K " + std::to_string(kSegment) +
           (kExactPlan ? ")" : ", delimited by id " + std::to_string(int(delimiter[0])) + ")");
  }
  template <class B, class T>
  auto make() const {
    using M = models::Hierarchical<B, T, Seg, Enc, Bb, Dec>;
    typename M::Config c;
    c.delimiter = delimiter;  // (fixed segmenters ignore it)
    c.vocab = vocab;
    c.dim = dim;
    c.heads = heads;
    c.layers = layers;
    c.decoder_layers = decoder_layers;
    c.cell = cell;
    c.context = context;
    return std::make_unique<M>(c);
  }
};
using HredSpec = HierSpec<hier::RnnEncoder, hier::RnnBackbone, hier::RnnDecoder>;
using HaedRnnSpec = HierSpec<hier::MlpEncoder, hier::TransformerBackbone, hier::RnnDecoder>;
using HaedTransformerSpec = HierSpec<hier::MlpEncoder, hier::TransformerBackbone, hier::TransformerDecoder>;
using HredDelimitedSpec = HierSpec<hier::RnnEncoder, hier::RnnBackbone, hier::RnnDecoder, hier::Delimited<6>>;
using HaedDelimitedSpec =
    HierSpec<hier::MlpEncoder, hier::TransformerBackbone, hier::TransformerDecoder, hier::Delimited<6>>;

}  // namespace

TEST_CASE("cuda models: HRED and HAED on the GPU match the CPU (GRU, LSTM, both decoders)") {
  mm_compare_model(HredSpec{}, 2, 36, 71);
  HredSpec lstm;
  lstm.cell = nn::RnnKind::kLstm;
  mm_compare_model(lstm, 2, 36, 72);
  mm_compare_model(HaedRnnSpec{}, 2, 36, 73);
  mm_compare_model(HaedTransformerSpec{}, 2, 36, 74);
  // Head size 32: the tensor-core float attention kernels in the backbone and decoder.
  HaedTransformerSpec wide;
  wide.dim = 64;
  mm_compare_model(wide, 2, 44, 75);
}

// Three segments at least: with two, only the backbone's first step reaches a logit, which leaves an
// RNN backbone's recurrent weights (zero initial state) and a Transformer backbone's queries (one key)
// with exactly zero gradients, and the gradient check refuses zero gradients.
TEST_CASE("cuda models: gradcheck of tiny HRED and HAED on the GPU in double") {
  HredSpec hred;
  hred.vocab = 11;
  hred.dim = 8;
  hred.layers = 1;
  hred.context = 12;
  mm_gradcheck_model(hred, 2, 12, 81, 5);
  HaedTransformerSpec haed;
  haed.vocab = 11;
  haed.dim = 8;
  haed.layers = 1;
  haed.context = 12;
  mm_gradcheck_model(haed, 2, 12, 82, 5);
}

TEST_CASE("cuda models: HRED and HAED on the GPU are causal by perturbation (rows >= p change, rows < p keep bits)") {
  std::vector<std::int64_t> const positions{0, 1, 3, 4, 5, 15, 16, 17, 30, 31};
  mm_causality(HredSpec{}, 32, positions, 91);
  mm_causality(HaedRnnSpec{}, 32, positions, 92);
  mm_causality(HaedTransformerSpec{}, 32, positions, 93);
}

TEST_CASE("cuda models: HRED and HAED cached logits on the GPU equal the full forward") {
  // Prefill 7: a partial segment, then byte by byte across segment boundaries.
  for (double rel : {mm_cached_vs_full<double>(HredSpec{}, 20, 7, 95), mm_cached_vs_full<double>(HaedRnnSpec{}, 20, 7, 96),
                     mm_cached_vs_full<double>(HaedTransformerSpec{}, 20, 7, 97)}) {
    INFO("worst relative difference ", rel);
    CHECK(rel <= kCachedRelDouble);
  }
  double rel = mm_cached_vs_full<float>(HaedTransformerSpec{}, 24, 5, 98);
  INFO("HAED (Transformer decoder), float: worst relative difference ", rel);
  CHECK(rel <= kCachedRelFloat);
}

// Variable segments (hier::Delimited, ended by id 3 or after 6 bytes): the layout is computed on the
// host and the padded grid is gathered with the embedding ops, so the GPU runs the same composition.
// (Causality is checked on the CPU, test/models/test_hierarchical_delimited.cpp: a change that moves
// a boundary changes the grid's shape, and another GEMM shape may round the earlier rows otherwise.)
TEST_CASE("cuda models: delimited HRED and HAED on the GPU match the CPU, pass gradcheck, and cache == full") {
  mm_compare_model(HredDelimitedSpec{.vocab = 12}, 2, 30, 111);
  mm_compare_model(HaedDelimitedSpec{.vocab = 12}, 2, 30, 112);
  // 18 bytes: at least three segments of at most 6 (see the fixed-size gradcheck above).
  HredDelimitedSpec hred{.vocab = 11, .dim = 8, .layers = 1, .context = 18};
  mm_gradcheck_model(hred, 2, 18, 113, 5);
  HaedDelimitedSpec haed{.vocab = 11, .dim = 8, .layers = 1, .context = 18};
  mm_gradcheck_model(haed, 2, 18, 114, 5);
  for (double rel : {mm_cached_vs_full<double>(HredDelimitedSpec{.vocab = 12}, 20, 7, 115),
                     mm_cached_vs_full<double>(HaedDelimitedSpec{.vocab = 12}, 20, 7, 116)}) {
    INFO("worst relative difference ", rel);
    CHECK(rel <= kCachedRelDouble);
  }
  // Rule segments ("@word": ids 9..11 are whitespace bytes, so random ids of a 12-id vocabulary
  // end words): the same composition with the layout from hier::ByteRule.
  HaedDelimitedSpec words{.vocab = 12};
  words.delimiter = "@word";
  mm_compare_model(words, 2, 30, 117);
  double rel = mm_cached_vs_full<double>(words, 20, 7, 118);
  INFO("@word: worst relative difference ", rel);
  CHECK(rel <= kCachedRelDouble);
}

}  // namespace HSEQ_TEST_UNIT
