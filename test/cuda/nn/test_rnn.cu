// SPDX-License-Identifier: MIT
// CUDA nn/gru.hpp, nn/lstm.hpp: Gru and Lstm (full and ragged lengths) on the GPU against the CPU in float and GPU
// finite differences in double, workspace plan == use (the case harness of test/cuda/harness.cuh).
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cuda/compare.cuh"
#include "cuda/harness.cuh"
#include "hseq/cuda.hpp"
#include "hseq/nn/gru.hpp"
#include "hseq/nn/lstm.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;

namespace {

/// Gru: L = <y, r> + <h_final, rf>, gradients of x and h0.
struct GruCase : MmCase {
  std::int64_t bsz, t, input, hidden;
  bool bias;
  std::vector<std::int32_t> lengths;  // ragged batch (empty: all t)
  GruCase(std::int64_t b, std::int64_t tt, std::int64_t i, std::int64_t h, bool with_bias)
      : bsz(b), t(tt), input(i), hidden(h), bias(with_bias) {
    name = std::string("Gru(") + std::to_string(i) + " -> " + std::to_string(h) + (bias ? ", bias)" : ", no bias)");
    add_in("x", Shape{b, tt, i});
    add_in("h0", Shape{b, h});
    add_out(Shape{b, tt, h});
    add_out(Shape{b, h});
  }
  template <class B, class T>
  auto make() const {
    using M = nn::Gru<B, T>;
    return std::make_unique<M>(typename M::Config{.input = input, .hidden = hidden, .bias = bias});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.in[1], io.out[0], io.out[1], a, lengths);
    if (bw) m.backward(ctx, s, io.dout[0], io.dout[1], io.din[0], io.din[1], a);
  }
};

/// Lstm: L = <y, r> + <h_final, rh> + <c_final, rc>, gradients of x, h0 and c0.
struct LstmCase : MmCase {
  std::int64_t bsz, t, input, hidden;
  std::vector<std::int32_t> lengths;  // ragged batch (empty: all t)
  LstmCase(std::int64_t b, std::int64_t tt, std::int64_t i, std::int64_t h) : bsz(b), t(tt), input(i), hidden(h) {
    name = "Lstm(" + std::to_string(i) + " -> " + std::to_string(h) + ")";
    add_in("x", Shape{b, tt, i});
    add_in("h0", Shape{b, h});
    add_in("c0", Shape{b, h});
    add_out(Shape{b, tt, h});
    add_out(Shape{b, h});
    add_out(Shape{b, h});
  }
  template <class B, class T>
  auto make() const {
    using M = nn::Lstm<B, T>;
    return std::make_unique<M>(typename M::Config{.input = input, .hidden = hidden});
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(bsz, t) + m.backward_workspace(bsz, t);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], typename M::State{io.in[1], io.in[2]}, io.out[0],
                       typename M::MutState{io.out[1], io.out[2]}, a, lengths);
    if (bw)
      m.backward(ctx, s, io.dout[0], typename M::State{io.dout[1], io.dout[2]}, io.din[0],
                 typename M::MutState{io.din[1], io.din[2]}, a);
  }
};

}  // namespace

TEST_CASE("cuda modules: Gru with and without biases: outputs, final state and all gradients (gradcheck)") {
  for (bool bias : {true, false}) {
    CAPTURE(bias);
    mm_both(GruCase(3, 12, 24, 32, bias), GruCase(2, 4, 3, 5, bias), 17);
  }
}

TEST_CASE("cuda modules: Lstm outputs, final h and c, and all gradients (gradcheck)") {
  mm_both(LstmCase(3, 12, 24, 32), LstmCase(2, 4, 3, 4), 18);
}

TEST_CASE("cuda modules: Gru and Lstm with ragged sequence lengths (gradcheck)") {
  GruCase gf(3, 12, 24, 32, true), gd(3, 4, 3, 5, true);
  gf.lengths = {12, 5, 0};
  gd.lengths = {4, 2, 0};
  gf.name += ", ragged";
  gd.name += ", ragged";
  mm_both(gf, gd, 41);
  LstmCase lf(3, 12, 24, 32), ld(3, 4, 3, 4);
  lf.lengths = {7, 12, 1};
  ld.lengths = {1, 4, 0};
  lf.name += ", ragged";
  ld.name += ", ragged";
  mm_both(lf, ld, 42);
}

}  // namespace HSEQ_TEST_UNIT
