// SPDX-License-Identifier: MIT
// CUDA hier/length_resampler.hpp: LengthReducer and LengthExpander (the length-changing attention of the
// length-reduction autoencoder) with each query source (learned bank, length mix, pooled / repeated input) on the
// GPU against the CPU in float (output, dx, every parameter gradient) and GPU finite differences in double,
// workspace plan == use (the case harness of test/cuda/harness.cuh).
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <string>

#include "cuda/compare.cuh"
#include "cuda/harness.cuh"
#include "hseq/cuda.hpp"
#include "hseq/hier/length_resampler.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda_cmp;
using namespace hseq::test_cuda_harness;
using hier::LengthDirection;
using hier::LengthResamplerConfig;

namespace {

/// A resampler: x [B, n_in, d] -> y [B, n_out, d], n the full-rate length (x's for the reducer,
/// y's for the expander). Both paths of dx (keys/values and the query source) are requested.
template <std::int64_t R, class Q, LengthDirection D>
struct ResamplerCase : MmCase {
  LengthResamplerConfig cfg;
  std::int64_t bsz, len;
  ResamplerCase(LengthResamplerConfig c, std::int64_t b, std::int64_t n) : cfg(c), bsz(b), len(n) {
    attn_head = c.dim / c.heads;
    name = std::string(D == LengthDirection::kReduce ? "LengthReducer" : "LengthExpander") +
           "<R = " + std::to_string(R) + ", " + Q::kName + ">, d " + std::to_string(c.dim) + ", heads " +
           std::to_string(c.heads) + ", window " + std::to_string(c.window) + (c.bias ? "" : ", no biases") +
           ", B " + std::to_string(b) + ", n " + std::to_string(n);
    add_in("x", Shape{b, hier::length_in<R, D>(n), c.dim});
    add_out(Shape{b, hier::length_out<R, D>(n), c.dim});
  }
  template <class B, class T>
  auto make() const {
    return std::make_unique<hier::LengthResampler<B, T, R, Q, D>>(cfg);
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(bsz, len) + m.backward_workspace(bsz, len);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], a);
  }
};

template <std::int64_t R, class Q>
using ReduceCase = ResamplerCase<R, Q, LengthDirection::kReduce>;
template <std::int64_t R, class Q>
using ExpandCase = ResamplerCase<R, Q, LengthDirection::kExpand>;

}  // namespace

// Head size 16: the one-thread-per-row attention kernels in float and double. The window equals n,
// so the bank's every row is used and the mix has its one accepted size.
TEST_CASE_TEMPLATE("cuda modules: LengthReducer and LengthExpander, R = 2 (gradcheck)", Q, hier::QueryBank,
                   hier::LengthMix, hier::PooledQueries) {
  LengthResamplerConfig const big{.dim = 32, .heads = 2, .window = 24}, tiny{.dim = 4, .heads = 2, .window = 8};
  mm_both(ReduceCase<2, Q>(big, 2, 24), ReduceCase<2, Q>(tiny, 2, 8), 90);
  mm_both(ExpandCase<2, Q>(big, 2, 24), ExpandCase<2, Q>(tiny, 2, 8), 91);
}

// Head size 32: the tensor-core attention kernels in float; no projection biases.
TEST_CASE_TEMPLATE("cuda modules: LengthReducer and LengthExpander, R = 4, no biases (gradcheck)", Q, hier::QueryBank,
                   hier::LengthMix, hier::PooledQueries) {
  LengthResamplerConfig const big{.dim = 64, .heads = 2, .window = 32, .bias = false},
      tiny{.dim = 4, .heads = 2, .window = 8, .bias = false};
  mm_both(ReduceCase<4, Q>(big, 2, 32), ReduceCase<4, Q>(tiny, 2, 8), 92);
  mm_both(ExpandCase<4, Q>(big, 2, 32), ExpandCase<4, Q>(tiny, 2, 8), 93);
}

// n < window: the bank's first n_out rows are the queries; the others' gradients stay zero.
TEST_CASE("cuda modules: LengthReducer and LengthExpander, a query bank longer than the input (gradcheck)") {
  LengthResamplerConfig const big{.dim = 32, .heads = 2, .window = 24}, tiny{.dim = 4, .heads = 2, .window = 8};
  mm_both(ReduceCase<2, hier::QueryBank>(big, 2, 16), ReduceCase<2, hier::QueryBank>(tiny, 2, 6), 94);
  mm_both(ExpandCase<2, hier::QueryBank>(big, 2, 16), ExpandCase<2, hier::QueryBank>(tiny, 2, 6), 95);
}

// Lengths R does not divide (23 = 7 * 3 + 2, 7 = 2 * 3 + 1): the padded copy, the partial group's
// mean over its valid rows (a strided-batched GEMM with a ones vector) and the cut expansion.
TEST_CASE_TEMPLATE("cuda modules: LengthReducer and LengthExpander, R = 3 at lengths it does not divide (gradcheck)",
                   Q, hier::QueryBank, hier::LengthMix, hier::PooledQueries) {
  LengthResamplerConfig const big{.dim = 32, .heads = 2, .window = 23, .residual = true},
      tiny{.dim = 4, .heads = 2, .window = 7, .residual = true};
  mm_both(ReduceCase<3, Q>(big, 2, 23), ReduceCase<3, Q>(tiny, 2, 7), 96);
  mm_both(ExpandCase<3, Q>(big, 2, 23), ExpandCase<3, Q>(tiny, 2, 7), 97);
}

}  // namespace HSEQ_TEST_UNIT
