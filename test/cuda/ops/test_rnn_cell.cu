// SPDX-License-Identifier: MIT
// CUDA ops/rnn_cell.hpp: the GRU and LSTM cells, forward and backward on strided matrices, match the CPU and leave the
// padding untouched.
#include <doctest/doctest.h>

#include <cstdint>

#include "cuda/ops/op_checks.cuh"
#include "hseq/ops/rnn_cell.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda;
using hseq::cuda;  // the backend, not libcu++'s namespace ::cuda

TEST_CASE_TEMPLATE("cuda parity: gru cell forward and backward on strided Mats", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const bsz = 13, hd = 70;
  // xp is one time step of a batch-first [B, 5, 3H] buffer (ld 5 * 3H); the rest have small pads.
  auto xp = random_mat<T>(bsz, 3 * hd, 5 * 3 * hd, 110);
  auto gh = random_mat<T>(bsz, 3 * hd, 3 * hd + 4, 111);
  auto hprev = random_mat<T>(bsz, hd, hd + 3, 112);
  auto gates0 = random_mat<T>(bsz, 4 * hd, 4 * hd + 2, 113);
  fill_window(gates0, nan_v<T>());
  auto h0 = random_mat<T>(bsz, hd, hd + 1, 114);
  fill_window(h0, nan_v<T>());

  auto gates = clone(gates0);
  auto h = clone(h0);
  auto gxp = to_device(gctx, xp), ggh = to_device(gctx, gh), ghprev = to_device(gctx, hprev);
  auto ggates = to_device(gctx, gates0), gh_out = to_device(gctx, h0);
  ops::gru_cell_forward<T>(cctx, xp.cmat(), gh.cmat(), hprev.cmat(), gates.mat(), h.mat());
  ops::gru_cell_forward<T>(gctx, gxp.cmat(), ggh.cmat(), ghprev.cmat(), ggates.mat(), gh_out.mat());
  auto hg = to_host(gctx, ggates), hh = to_host(gctx, gh_out);
  CHECK_NMSE(window(hg), window(gates), kTol<T>);
  CHECK_NMSE(window(hh), window(h), kTol<T>);
  CHECK(outside_bit_mismatches(hg, gates0) == 0);
  CHECK(outside_bit_mismatches(hh, h0) == 0);

  // Backward from identical inputs (the CPU's gates on both sides).
  auto dh = random_mat<T>(bsz, hd, hd + 6, 115);
  auto dxp0 = random_mat<T>(bsz, 3 * hd, 3 * hd + 1, 116);
  auto dgh0 = random_mat<T>(bsz, 3 * hd, 2 * 3 * hd, 117);
  auto dhp0 = random_mat<T>(bsz, hd, hd + 5, 118);
  fill_window(dxp0, nan_v<T>());
  fill_window(dgh0, nan_v<T>());
  fill_window(dhp0, nan_v<T>());
  auto dxp = clone(dxp0), dgh = clone(dgh0), dhp = clone(dhp0);
  auto gdh = to_device(gctx, dh), ggates_in = to_device(gctx, gates);
  auto gdxp = to_device(gctx, dxp0), gdgh = to_device(gctx, dgh0), gdhp = to_device(gctx, dhp0);
  ops::gru_cell_backward<T>(cctx, dh.cmat(), hprev.cmat(), gates.cmat(), dxp.mat(), dgh.mat(), dhp.mat());
  ops::gru_cell_backward<T>(gctx, gdh.cmat(), ghprev.cmat(), ggates_in.cmat(), gdxp.mat(), gdgh.mat(), gdhp.mat());
  auto r_dxp = to_host(gctx, gdxp), r_dgh = to_host(gctx, gdgh), r_dhp = to_host(gctx, gdhp);
  CHECK_NMSE(window(r_dxp), window(dxp), kTol<T>);
  CHECK_NMSE(window(r_dgh), window(dgh), kTol<T>);
  CHECK_NMSE(window(r_dhp), window(dhp), kTol<T>);
  CHECK(outside_bit_mismatches(r_dxp, dxp0) == 0);
  CHECK(outside_bit_mismatches(r_dgh, dgh0) == 0);
  CHECK(outside_bit_mismatches(r_dhp, dhp0) == 0);
}

TEST_CASE_TEMPLATE("cuda parity: lstm cell forward and backward on strided Mats", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const bsz = 13, hd = 70;
  auto xp = random_mat<T>(bsz, 4 * hd, 3 * 4 * hd, 120);  // a time step of [B, 3, 4H]
  auto gh = random_mat<T>(bsz, 4 * hd, 4 * hd + 4, 121);
  auto cprev = random_mat<T>(bsz, hd, hd + 3, 122);
  auto acts0 = random_mat<T>(bsz, 4 * hd, 4 * hd + 2, 123);
  auto c0 = random_mat<T>(bsz, hd, hd + 1, 124);
  auto h0 = random_mat<T>(bsz, hd, hd + 7, 125);
  fill_window(acts0, nan_v<T>());
  fill_window(c0, nan_v<T>());
  fill_window(h0, nan_v<T>());

  auto acts = clone(acts0), cc = clone(c0), h = clone(h0);
  auto gxp = to_device(gctx, xp), ggh = to_device(gctx, gh), gcprev = to_device(gctx, cprev);
  auto gacts = to_device(gctx, acts0), gc = to_device(gctx, c0), ghh = to_device(gctx, h0);
  ops::lstm_cell_forward<T>(cctx, xp.cmat(), gh.cmat(), cprev.cmat(), acts.mat(), cc.mat(), h.mat());
  ops::lstm_cell_forward<T>(gctx, gxp.cmat(), ggh.cmat(), gcprev.cmat(), gacts.mat(), gc.mat(), ghh.mat());
  auto r_acts = to_host(gctx, gacts), r_c = to_host(gctx, gc), r_h = to_host(gctx, ghh);
  CHECK_NMSE(window(r_acts), window(acts), kTol<T>);
  CHECK_NMSE(window(r_c), window(cc), kTol<T>);
  CHECK_NMSE(window(r_h), window(h), kTol<T>);
  CHECK(outside_bit_mismatches(r_acts, acts0) == 0);
  CHECK(outside_bit_mismatches(r_c, c0) == 0);
  CHECK(outside_bit_mismatches(r_h, h0) == 0);

  // Backward from identical inputs (the CPU's c and acts on both sides).
  auto dh = random_mat<T>(bsz, hd, hd + 2, 126);
  auto dc = random_mat<T>(bsz, hd, hd + 9, 127);
  auto dg0 = random_mat<T>(bsz, 4 * hd, 4 * hd + 3, 128);
  auto dcp0 = random_mat<T>(bsz, hd, hd + 4, 129);
  fill_window(dg0, nan_v<T>());
  fill_window(dcp0, nan_v<T>());
  auto dg = clone(dg0), dcp = clone(dcp0);
  auto gdh = to_device(gctx, dh), gdc = to_device(gctx, dc), gc_in = to_device(gctx, cc),
       gacts_in = to_device(gctx, acts);
  auto gdg = to_device(gctx, dg0), gdcp = to_device(gctx, dcp0);
  ops::lstm_cell_backward<T>(cctx, dh.cmat(), dc.cmat(), cprev.cmat(), cc.cmat(), acts.cmat(), dg.mat(), dcp.mat());
  ops::lstm_cell_backward<T>(gctx, gdh.cmat(), gdc.cmat(), gcprev.cmat(), gc_in.cmat(), gacts_in.cmat(), gdg.mat(),
                             gdcp.mat());
  auto r_dg = to_host(gctx, gdg), r_dcp = to_host(gctx, gdcp);
  CHECK_NMSE(window(r_dg), window(dg), kTol<T>);
  CHECK_NMSE(window(r_dcp), window(dcp), kTol<T>);
  CHECK(outside_bit_mismatches(r_dg, dg0) == 0);
  CHECK(outside_bit_mismatches(r_dcp, dcp0) == 0);
}

}  // namespace HSEQ_TEST_UNIT
