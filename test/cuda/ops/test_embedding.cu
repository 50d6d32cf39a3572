// SPDX-License-Identifier: MIT
// CUDA ops/embedding.hpp: the embedding gather and its deterministic scatter-add match the CPU; an out-of-range id
// throws, and the error does not stick.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "cuda/ops/op_checks.cuh"
#include "hseq/ops/embedding.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda;
using hseq::cuda;  // the backend, not libcu++'s namespace ::cuda

TEST_CASE_TEMPLATE("cuda parity: embedding forward and backward with repeated ids (deterministic)", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const vocab = 300, c = 70, n = 37 * 5;
  auto table = random_normal<T>(Shape{vocab, c}, 60);
  HostTensor<std::int32_t> ids(Shape{5, 37});
  for (std::int64_t i = 0; i < n; ++i) {
    // Half the ids come from {0, .., 4}: many rows scatter into the same table row.
    double u = philox_uniform(61, 0, std::uint64_t(i));
    ids.data()[i] = i % 2 == 0 ? std::int32_t(u * 5) : std::int32_t(u * double(vocab));
  }
  ids.data()[n - 1] = std::int32_t(vocab - 1);
  auto gtable = to_device(gctx, table);
  auto gids = to_device(gctx, ids);

  // Forward: a gather, bit-exact.
  auto out = filled<T>(Shape{5, 37, c}, nan_v<T>());
  auto gout = to_device(gctx, out);
  ops::embedding_forward<T>(cctx, table.cview(), ids.cview(), out.view());
  ops::embedding_forward<T>(gctx, gtable.cview(), gids.cview(), gout.view());
  CHECK(bit_mismatches(to_host(gctx, gout), out) == 0);

  // Backward: accumulates into a nonzero dtable.
  auto dout = random_normal<T>(Shape{5, 37, c}, 62);
  auto dtable0 = random_normal<T>(Shape{vocab, c}, 63);
  auto want = clone(dtable0);
  ops::embedding_backward<T>(cctx, ids.cview(), dout.cview(), want.view());
  auto gdout = to_device(gctx, dout);
  auto gdt1 = to_device(gctx, dtable0);
  auto gdt2 = to_device(gctx, dtable0);
  ops::embedding_backward<T>(gctx, gids.cview(), gdout.cview(), gdt1.view());
  ops::embedding_backward<T>(gctx, gids.cview(), gdout.cview(), gdt2.view());
  auto h1 = to_host(gctx, gdt1), h2 = to_host(gctx, gdt2);
  CHECK_NMSE(h1, want, kTol<T>);
  CHECK(bit_mismatches(h1, h2) == 0);  // same bits on every run despite repeated ids
  // Rows of ids never used keep their initial values exactly.
  std::vector<char> used(std::size_t(vocab), 0);
  for (std::int64_t i = 0; i < n; ++i) used[std::size_t(ids.data()[i])] = 1;
  std::int64_t touched_unused = 0;
  for (std::int64_t r = 0; r < vocab; ++r)
    if (!used[std::size_t(r)]) touched_unused += bit_mismatches(h1.data() + r * c, dtable0.data() + r * c, c);
  CHECK(touched_unused == 0);
}

TEST_CASE_TEMPLATE("cuda parity: embedding throws on an out-of-range id, then works again", T, float, double) {
  cpu::Context cctx;
  cuda::Context gctx;
  std::int64_t const vocab = 300, c = 70, n = 37;
  auto table = random_normal<T>(Shape{vocab, c}, 64);
  auto gtable = to_device(gctx, table);
  HostTensor<std::int32_t> good(Shape{n});
  for (std::int64_t i = 0; i < n; ++i) good.data()[i] = std::int32_t((i * 13) % vocab);
  auto ggood = to_device(gctx, good);
  DeviceTensor<T> gout(Shape{n, c}), gdt(Shape{vocab, c});
  auto dout = random_normal<T>(Shape{n, c}, 65);
  auto gdout = to_device(gctx, dout);
  for (std::int32_t bad_id : {std::int32_t(vocab), std::int32_t(-1), std::int32_t(1 << 30)}) {
    INFO("bad id ", bad_id);
    auto bad = clone(good);
    bad.data()[n / 2] = bad_id;
    auto gbad = to_device(gctx, bad);
    HostTensor<T> out(Shape{n, c});
    CHECK_THROWS_AS(ops::embedding_forward<T>(cctx, table.cview(), bad.cview(), out.view()), hseq::Error);
    CHECK_THROWS_AS(ops::embedding_forward<T>(gctx, gtable.cview(), gbad.cview(), gout.view()), hseq::Error);
    CHECK_THROWS_AS(ops::embedding_backward<T>(gctx, gbad.cview(), gdout.cview(), gdt.view()), hseq::Error);
  }
  // The error state does not stick.
  HostTensor<T> out(Shape{n, c});
  ops::embedding_forward<T>(cctx, table.cview(), good.cview(), out.view());
  CHECK_NOTHROW(ops::embedding_forward<T>(gctx, gtable.cview(), ggood.cview(), gout.view()));
  CHECK(bit_mismatches(to_host(gctx, gout), out) == 0);
}

}  // namespace HSEQ_TEST_UNIT
