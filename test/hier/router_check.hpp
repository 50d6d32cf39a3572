// SPDX-License-Identifier: MIT
// Shared check for the learned boundary routers (test support, not a test file): the router's
// backward (input and every parameter) against finite differences through L = sum_t w_t p_t.
#pragma once

#include <cstdint>
#include <vector>

#include "support/gradcheck.hpp"

namespace hseq::test {

/// x [bsz, len, d] (seed 7), weights w (seed 8); rows of lengths row_len (padding past them gets
/// no gradient). The router's parameters are those of `ps`, already set by the caller.
template <class R>
void check_router_gradients(R const& r, nn::ParamStore<cpu, double>& ps, std::int64_t d, std::int64_t bsz,
                            std::int64_t len, std::vector<std::int32_t> const& row_len) {
  cpu::Context ctx;
  auto x = random_tensor<double>(Shape{bsz, len, d}, 7, 1.0);
  Tensor<double, cpu> dx(Shape{bsz, len, d});
  auto w = random_tensor<double>(Shape{bsz * len}, 8, 1.0);
  Workspace<cpu> ws(r.forward_workspace(bsz, len) + r.backward_workspace(bsz, len));
  typename R::Saved s;
  auto loss = [&] {
    auto a = ws.arena();
    r.forward(ctx, x.cview(), row_len, s, a);
    double l = 0;
    for (std::size_t i = 0; i < s.p.size(); ++i) l += w.data()[i] * s.p[i];
    return l;
  };
  auto grads = [&] {
    auto a = ws.arena();
    r.forward(ctx, x.cview(), row_len, s, a);
    std::vector<double> dp(w.data(), w.data() + bsz * len);
    r.backward(ctx, s, dp, dx.view(), a);
    CHECK(a.high_water() <= r.forward_workspace(bsz, len) + r.backward_workspace(bsz, len));
  };
  GradCheck(ps).input("x", x.view(), dx.view()).run(loss, grads);
}

}  // namespace hseq::test
