// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "hseq/nn/linear.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/nn/transformer_block.hpp"
#include "support/gradcheck.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;

namespace {
// Two parameters with the same name: binding must refuse.
struct Twin {
  nn::Param<float, HostSpace> a{Shape{2}, nn::InitSpec::zeros()}, b{Shape{3}, nn::InitSpec::zeros()};
  template <class F>
  void visit_params(F&& f, std::string const& prefix = "") {
    f(prefix + "w", a);
    f(prefix + "w", b);
  }
};
}  // namespace

TEST_CASE("parameter: the store binds aligned views, names them, and finds them") {
  cpu::Context ctx;
  nn::TransformerBlock<cpu, float> m({.dim = 8, .heads = 2});
  nn::ParamStore<cpu, float> ps(m, "block0.");
  REQUIRE(ps.entries().size() == 14);
  CHECK(ps.entries().front().name == "block0.ln1.weight");
  CHECK(ps.find("block0.attn.kv.weight").shape == Shape{16, 8});
  std::int64_t expected = 0;
  for (auto const& e : ps.entries()) {
    CHECK(e.offset % nn::ParamStore<cpu, float>::kAlign == 0);
    CHECK(e.param->value.data == ps.values().data + e.offset);
    CHECK(e.param->grad.data == ps.grads().data + e.offset);
    expected += e.param->shape.numel();
  }
  CHECK(ps.count() == expected);
  CHECK_THROWS_WITH_AS(ps.find("block0.nope"), doctest::Contains("block0.ln1.weight"), Error);
  Twin twin;
  nn::ParamStore<cpu, float> bad;
  CHECK_THROWS_WITH_AS(bad.bind(twin), doctest::Contains("duplicate parameter name 'w'"), Error);
}

TEST_CASE("parameter: initialisation is deterministic per seed and follows each InitSpec") {
  cpu::Context ctx;
  nn::TransformerBlock<cpu, float> m1({.dim = 8, .heads = 2}), m2({.dim = 8, .heads = 2});
  nn::ParamStore<cpu, float> p1(m1), p2(m2);
  p1.init(ctx, 42);
  p2.init(ctx, 42);
  for (std::int64_t i = 0; i < p1.values().numel(); ++i) REQUIRE(p1.values()[i] == p2.values()[i]);
  p2.init(ctx, 43);
  bool differs = false;
  for (std::int64_t i = 0; i < p1.values().numel(); ++i) differs |= p1.values()[i] != p2.values()[i];
  CHECK(differs);
  auto gain = p1.find("ln1.weight").value, bias = p1.find("ln1.bias").value;
  for (std::int64_t i = 0; i < gain.numel(); ++i) {
    CHECK(gain[i] == 1.f);
    CHECK(bias[i] == 0.f);
  }
  CHECK_FALSE(p1.find("ln1.weight").decay);
  CHECK(p1.find("mlp.fc1.weight").decay);
  p1.zero_grad(ctx);
  for (std::int64_t i = 0; i < p1.grads().numel(); ++i) REQUIRE(p1.grads()[i] == 0.f);
}

TEST_CASE("parameter: binding on the caller's context gives the layout of the host binding, all zero") {
  cpu::Context ctx;
  nn::TransformerBlock<cpu, float> m1({.dim = 8, .heads = 2}), m2({.dim = 8, .heads = 2});
  nn::ParamStore<cpu, float> p1(ctx, m1, "b."), p2(m2, "b.");
  REQUIRE(p1.entries().size() == p2.entries().size());
  for (std::size_t k = 0; k < p1.entries().size(); ++k) {
    CHECK(p1.entries()[k].name == p2.entries()[k].name);
    CHECK(p1.entries()[k].offset == p2.entries()[k].offset);
    CHECK(p1.entries()[k].param->value.data == p1.values().data + p1.entries()[k].offset);
  }
  // Rebinding over a store whose buffers were written zeroes the new ones, padding included.
  p1.init(ctx, 3);
  for (std::int64_t i = 0; i < p1.grads().numel(); ++i) p1.grads()[i] = 1.0f;
  p1.bind(ctx, m1, "b.");
  for (std::int64_t i = 0; i < p1.values().numel(); ++i) {
    REQUIRE(p1.values()[i] == 0.0f);
    REQUIRE(p1.grads()[i] == 0.0f);
  }
  Twin twin;
  nn::ParamStore<cpu, float> bad;
  CHECK_THROWS_WITH_AS(bad.bind(ctx, twin), doctest::Contains("duplicate parameter name 'w'"), Error);
}

TEST_CASE("parameter: glob patterns match names with * and ? only") {
  CHECK(nn::glob_match("blocks.0.*", "blocks.0.attn.q.weight"));
  CHECK_FALSE(nn::glob_match("blocks.0.*", "blocks.10.attn.q.weight"));
  CHECK(nn::glob_match("*.bias", "blocks.1.mlp.fc1.bias"));
  CHECK_FALSE(nn::glob_match("*.bias", "blocks.1.mlp.fc1.bias_x"));
  CHECK(nn::glob_match("blocks.?.ln1.*", "blocks.3.ln1.weight"));
  CHECK_FALSE(nn::glob_match("blocks.?.ln1.*", "blocks.12.ln1.weight"));
  CHECK(nn::glob_match("*attn*weight", "blocks.0.attn.kv.weight"));
  CHECK(nn::glob_match("head.weight", "head.weight"));  // no wildcard: the exact name
  CHECK_FALSE(nn::glob_match("head.weight", "head.weight2"));
  CHECK_FALSE(nn::glob_match("head", "head.weight"));
  CHECK(nn::glob_match("*", ""));
  CHECK(nn::glob_match("a**b", "ab"));
  CHECK_FALSE(nn::glob_match("a*b", "a"));
}

TEST_CASE("parameter: set_frozen and set_lr_scale apply to the matching parameters and refuse a pattern matching none") {
  nn::TransformerBlock<cpu, float> m({.dim = 8, .heads = 2});
  nn::ParamStore<cpu, float> ps(m, "b.");
  for (auto const& e : ps.entries()) {  // the defaults change nothing
    CHECK_FALSE(e.param->frozen);
    CHECK(e.param->lr_scale == 1.0);
  }
  CHECK(ps.count_matching("b.attn.*") == 6);  // q, kv, out: weight and bias each
  CHECK(ps.set_frozen("b.attn.*", true) == 6);
  CHECK(ps.set_lr_scale("*.bias", 0.5) == ps.count_matching("*.bias"));
  for (auto const& e : ps.entries()) {
    CAPTURE(e.name);
    CHECK(e.param->frozen == (e.name.rfind("b.attn.", 0) == 0));
    CHECK(e.param->lr_scale == (nn::glob_match("*.bias", e.name) ? 0.5 : 1.0));
  }
  CHECK(ps.set_frozen("b.attn.q.*", false) == 2);
  CHECK_FALSE(ps.find("b.attn.q.weight").frozen);
  CHECK(ps.find("b.attn.kv.weight").frozen);
  CHECK_THROWS_WITH_AS(ps.set_frozen("attn.*", true),
                       doctest::Contains("set_frozen: pattern 'attn.*' matches no parameter (known: b.ln1.weight"), Error);
  CHECK_THROWS_WITH_AS(ps.set_lr_scale("nope", 2.0), doctest::Contains("set_lr_scale: pattern 'nope'"), Error);
  CHECK_THROWS_AS(ps.set_lr_scale("*", -1.0), Error);
  CHECK(ps.find("b.ln1.weight").lr_scale == 1.0);  // a refused call changes nothing
}

}  // namespace HSEQ_TEST_UNIT
