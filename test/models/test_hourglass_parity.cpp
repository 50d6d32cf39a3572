// SPDX-License-Identifier: MIT
// PyTorch parity of Hourglass (attention + attention, average + repeat, and linear + linear, and
// attention + attention with closing norms and an untied head; two
// nested levels; a length that needs padding; select + repeat and the segment mean over two nested
// rule levels; two nested learned routers, without and with EMA de-chunking; an MLP
// boundary predictor around a router;
// position-indexed upsampling): fixtures written by tools/gen_hourglass_fixture.py
// from the PyTorch twin in tools/torch_hourglass.py. Same comparison and tolerance as the
// TransformerLm parity test (relative L2 error per tensor <= 1e-4 in fp32 with a floor for
// cancelled gradients, losses element-wise). The fixture's references are computed in float64
// from float32 parameters.
#include <doctest/doctest.h>

#include <string>

#include "hseq/io/safetensors.hpp"
#include "hseq/hier/avg_pool.hpp"
#include "hseq/hier/linear_upsample.hpp"
#include "hseq/hier/select_pool.hpp"
#include "hseq/models/hourglass.hpp"
#include "support/parity.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

#ifndef HSEQ_SOURCE_DIR
#error "HSEQ_SOURCE_DIR must point at the source tree (set by test/CMakeLists.txt)"
#endif

using namespace hseq;

namespace {

template <class Sh, class Up>
void parity(std::string const& file) {
  using M = models::Hourglass<cpu, float, hier::DynamicHierarchy, Sh, Up>;
  CAPTURE(file);
  auto f = io::SafetensorsFile::load(std::string(HSEQ_SOURCE_DIR) + "/test/fixtures/" + file);
  auto cfg = M::config_from_json(f.metadata("config"));
  if (!cfg.hierarchy.dynamic())  // (rule levels take any length: nothing to pad)
    REQUIRE(std::stoll(f.metadata("seq_len")) % cfg.hierarchy.total_factor() != 0);  // the fixture exercises padding
  M m(cfg);
  nn::ParamStore<cpu, float> ps(m);
  int compared = test::check_parity(f, m, ps);
  // Every PyTorch parameter has an hseq counterpart and vice versa.
  int torch_params = 0;
  for (auto const& n : f.names()) torch_params += n.rfind("param.", 0) == 0;
  CHECK(compared == torch_params);
}
}  // namespace

TEST_CASE("hourglass parity: attention pooling + attention upsampling match PyTorch") {
  parity<hier::AttentionPool, hier::AttentionUp>("hourglass_attention_attention.safetensors");
}

TEST_CASE("hourglass parity: average pooling + repeat upsampling match PyTorch") {
  parity<hier::AvgPool, hier::Repeat>("hourglass_avg_repeat.safetensors");
}

// Width 8 against factors 2: the linear pooling's [k d] concatenation and the linear upsampling's
// [k d] projection (read as [k, d]) are checked against the twin's reshapes.
TEST_CASE("hourglass parity: linear pooling + linear upsampling match PyTorch") {
  parity<hier::LinearPool, hier::LinearUp>("hourglass_linear_linear.safetensors");
}

// The closing LayerNorms of every stack (trax; the default since checkpoint version 2) and an
// untied head, read from the fixture's configuration keys "closing_norm" and "tied".
TEST_CASE("hourglass parity: closing norms and an untied head match PyTorch") {
  using M = models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::AttentionPool, hier::AttentionUp>;
  auto f = io::SafetensorsFile::load(std::string(HSEQ_SOURCE_DIR) + "/test/fixtures/hourglass_closing_untied.safetensors");
  auto cfg = M::config_from_json(f.metadata("config"));
  REQUIRE(cfg.closing_norm);
  REQUIRE(!cfg.tied);
  parity<hier::AttentionPool, hier::AttentionUp>("hourglass_closing_untied.safetensors");
}

// Two nested data-dependent levels (spacelike segments of at most 5 bytes, then pairs of them) over
// two rows of text that close their segments at different positions: the twin segments with its
// own implementation of the rules (tools/torch_hourglass.py), select pooling, repeat upsampling.
TEST_CASE("hourglass parity: rule levels (space/5, then fixed:2) with select + repeat match PyTorch") {
  using M = models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::Select, hier::Repeat>;
  auto f = io::SafetensorsFile::load(std::string(HSEQ_SOURCE_DIR) +
                                     "/test/fixtures/hourglass_rules_select_repeat.safetensors");
  auto cfg = M::config_from_json(f.metadata("config"));
  REQUIRE(cfg.hierarchy.to_string() == "1@1 1@space/5 1@fixed:2 1@space/5 1@1");
  parity<hier::Select, hier::Repeat>("hourglass_rules_select_repeat.safetensors");
}

// The segment mean over the same two nested rule levels (avg pooling over data-dependent segments).
TEST_CASE("hourglass parity: rule levels with the segment mean (avg) + repeat match PyTorch") {
  parity<hier::AvgPool, hier::Repeat>("hourglass_rules_avg_repeat.safetensors");
}

// H-Net's cosine router on two nested levels: the boundary probabilities, the straight-through
// confidence (its gradient reaches the router) and the ratio loss (in the loss: ce + 0.5 ratio),
// against the twin's own implementation. The generator checks that no decision sits within 1e-3 of
// 1/2 in any of the six forwards, so fp32 decides as the float64 reference does.
TEST_CASE("hourglass parity: learned routers (router:3, then router:2) with select + repeat match PyTorch") {
  using M = models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::Select, hier::Repeat>;
  auto f = io::SafetensorsFile::load(std::string(HSEQ_SOURCE_DIR) + "/test/fixtures/hourglass_rules_router.safetensors");
  auto cfg = M::config_from_json(f.metadata("config"));
  REQUIRE(cfg.hierarchy.to_string() == "1@1 1@router:3 1@router:2 1@router:3 1@1");
  REQUIRE(cfg.ratio_weight == 0.5);
  parity<hier::Select, hier::Repeat>("hourglass_rules_router.safetensors");
}

// The same routers with H-Net's EMA de-chunking (the twin writes the recurrence; hseq the unrolled
// matrix): the smoothed segment outputs and the router's second gradient path through P_j.
TEST_CASE("hourglass parity: learned routers with EMA de-chunking match PyTorch") {
  using M = models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::Select, hier::Repeat>;
  auto f = io::SafetensorsFile::load(std::string(HSEQ_SOURCE_DIR) +
                                     "/test/fixtures/hourglass_rules_router_ema.safetensors");
  REQUIRE(M::config_from_json(f.metadata("config")).dechunk == "ema");
  parity<hier::Select, hier::Repeat>("hourglass_rules_router_ema.safetensors");
}

// Dynamic Token Pooling's MLP boundary predictor on the outer level (about half its positions
// emit: the generator centres its output bias), H-Net's router inside, EMA de-chunking.
TEST_CASE("hourglass parity: an MLP boundary predictor (mlp:3) around a router, with EMA de-chunking, matches PyTorch") {
  using M = models::Hourglass<cpu, float, hier::DynamicHierarchy, hier::Select, hier::Repeat>;
  auto f = io::SafetensorsFile::load(std::string(HSEQ_SOURCE_DIR) + "/test/fixtures/hourglass_rules_mlp.safetensors");
  REQUIRE(M::config_from_json(f.metadata("config")).hierarchy.to_string() == "1@1 1@mlp:3 1@router:2 1@mlp:3 1@1");
  parity<hier::Select, hier::Repeat>("hourglass_rules_mlp.safetensors");
}

// AU-Net's position-indexed unpooling (linear upsampling over segments) on the two nested rule levels.
TEST_CASE("hourglass parity: rule levels with select + position-indexed (linear) upsampling match PyTorch") {
  parity<hier::Select, hier::LinearUp>("hourglass_rules_select_linear.safetensors");
}

// Attention pooling over each segment's bytes and cross-attention unpooling to the closed segments
// (the programs' default policies) on the two nested rule levels: the host-built score biases.
TEST_CASE("hourglass parity: rule levels with attention pooling and unpooling match PyTorch") {
  parity<hier::AttentionPool, hier::AttentionUp>("hourglass_rules_attention.safetensors");
}

}  // namespace HSEQ_TEST_UNIT
