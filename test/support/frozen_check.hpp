// SPDX-License-Identifier: MIT
/// @file
/// @brief The frozen-parameter check shared by the nn module tests: freezing a parameter zeroes
/// exactly its gradient and changes nothing else.
#pragma once

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/tensor_view.hpp"
#include "hseq/nn/parameter.hpp"

namespace frozen_check {
/// Runs `run` (zero the gradients, forward, backward; returns the input gradients) with nothing
/// frozen, then with each parameter of `names` frozen alone: the frozen parameter's gradient must
/// stay exactly zero (and be non-zero unfrozen, so the check can fail), the input gradients and
/// every other parameter's gradient bit-identical.
template <class T, class Run>
void check(hseq::nn::ParamStore<hseq::cpu, T>& ps, Run run, std::vector<std::string> const& names) {
  auto grads = [&] { return std::vector<T>(ps.grads().begin(), ps.grads().end()); };
  auto dx0 = run();
  auto g0 = grads();
  for (auto const& name : names) {
    CAPTURE(name);
    ps.set_frozen(name, true);
    auto dx1 = run();
    auto g1 = grads();
    ps.set_frozen(name, false);
    CHECK(dx1 == dx0);
    for (auto const& e : ps.entries()) {
      CAPTURE(e.name);
      bool moved = false;
      for (std::int64_t i = 0; i < e.param->shape.numel(); ++i) {
        std::size_t k = std::size_t(e.offset + i);
        if (e.name == name) {
          REQUIRE(g1[k] == T(0));
          moved |= g0[k] != T(0);
        } else {
          REQUIRE(g1[k] == g0[k]);
        }
      }
      if (e.name == name) CHECK(moved);
    }
  }
}
template <class T>
std::vector<T> values_of(hseq::View<T, hseq::HostSpace> v) {
  return std::vector<T>(v.data, v.data + v.numel());
}
}  // namespace frozen_check
