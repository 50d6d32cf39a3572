// SPDX-License-Identifier: MIT
// The harness cases (test/cuda/harness.cuh) of the shortening and upsampling policies' modules,
// shared by the CUDA tests of hier/'s pooling (avg, linear, attention, attention_linear) and
// upsampling (repeat, linear, attention, attention_linear) modules.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include "cuda/harness.cuh"
#include "hseq/hier/attention_pool.hpp"
#include "hseq/hier/attention_upsample.hpp"
#include "hseq/hier/resample_config.hpp"

namespace hseq::test_cuda_hier {

using namespace hseq::test_cuda_harness;

/// A shortening policy's module: x [B, L, d] (already shifted) -> y [B, L / k, d].
template <class Policy>
struct ShortenCase : MmCase {
  hier::ResampleConfig cfg;
  std::int64_t bsz, len;
  ShortenCase(hier::ResampleConfig c, std::int64_t b, std::int64_t l) : cfg(c), bsz(b), len(l) {
    if constexpr (hier::kAttentionResampling<Policy>) attn_head = c.dim / c.heads;  // any query source
    name = std::string("shorten ") + Policy::kName + ", k " + std::to_string(c.factor) + ", L " + std::to_string(l);
    add_in("x", Shape{b, l, c.dim});
    add_out(Shape{b, l / c.factor, c.dim});
  }
  template <class B, class T>
  auto make() const {
    return std::make_unique<typename Policy::template Module<B, T>>(cfg);
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

/// An upsampling policy's module: y [B, Ls, d], res [B, Ls k, d] -> u [B, Ls k, d]. The residual's
/// gradient is requested only from policies that use it.
template <class Policy>
struct UpsampleCase : MmCase {
  hier::ResampleConfig cfg;
  std::int64_t bsz, len;
  UpsampleCase(hier::ResampleConfig c, std::int64_t b, std::int64_t ls) : cfg(c), bsz(b), len(ls * c.factor) {
    if constexpr (hier::kAttentionResampling<Policy>) attn_head = c.dim / c.heads;  // any query source
    name = std::string("upsample ") + Policy::kName + ", k " + std::to_string(c.factor) + ", Ls " + std::to_string(ls);
    add_in("y", Shape{b, ls, c.dim});
    add_in("res", Shape{b, len, c.dim}, Policy::kUsesResidual);
    add_out(Shape{b, len, c.dim});
  }
  template <class B, class T>
  auto make() const {
    return std::make_unique<typename Policy::template Module<B, T>>(cfg);
  }
  template <class M>
  std::size_t plan(M const& m) const {
    return m.forward_workspace(bsz, len) + m.backward_workspace(bsz, len);
  }
  template <class M, class C, class T, class S>
  void apply(C& ctx, M const& m, MmIo<T, S>& io, Arena<S>& a, bool bw) const {
    auto s = m.forward(ctx, io.in[0], io.in[1], io.out[0], a);
    if (bw) m.backward(ctx, s, io.dout[0], io.din[0], io.din[1], a);
  }
};

}  // namespace hseq::test_cuda_hier
