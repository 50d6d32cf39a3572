// SPDX-License-Identifier: MIT
// models::Hierarchical: "no allocation inside the training loop" (docs/design.md, workspace
// protocol). The parts' Saved structs hold per-layer vectors; they live in the model's Trace and are
// reused, so only the first step may allocate. Counted by replacing the global operator new of the
// test executable (this is the only file that does; the counter only counts while `g_counting` is
// set, so every other test is unaffected apart from one relaxed atomic load per allocation).
#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>

#include "hseq/models/hierarchical.hpp"
#include "hseq/train/trainer.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocs{0};
void* counted_alloc(std::size_t n, std::size_t align) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (n + align - 1) / align * align)
                                              : std::malloc(n);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace
}  // namespace HSEQ_TEST_UNIT

// The replacements must be at global scope.
using HSEQ_TEST_UNIT::counted_alloc;
void* operator new(std::size_t n) { return counted_alloc(n, 0); }
void* operator new[](std::size_t n) { return counted_alloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_alloc(n, std::size_t(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_alloc(n, std::size_t(a)); }
// The nothrow forms too (std::stable_sort's temporary buffer uses them): with only the throwing
// forms replaced, a runtime that provides its own nothrow new (AddressSanitizer's) pairs its
// allocation with the free() below, an alloc-dealloc mismatch.
void* operator new(std::size_t n, std::nothrow_t const&) noexcept {
  try {
    return counted_alloc(n, 0);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::nothrow_t const& t) noexcept { return operator new(n, t); }
void* operator new(std::size_t n, std::align_val_t a, std::nothrow_t const&) noexcept {
  try {
    return counted_alloc(n, std::size_t(a));
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t a, std::nothrow_t const& t) noexcept { return operator new(n, a, t); }
// GCC, seeing these deletes inlined into other test files of the same batch (HSEQ_TEST_UNITY),
// takes free() after operator new for a mismatch; here new is malloc, so it is not one.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::nothrow_t const&) noexcept { std::free(p); }
void operator delete[](void* p, std::nothrow_t const&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, std::nothrow_t const&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, std::nothrow_t const&) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace HSEQ_TEST_UNIT {

using namespace hseq;

namespace {
/// Heap allocations (operator new) during training steps 2..5 of model M, with `phases` (empty:
/// end-to-end). An IEM-enabled model gets a proposal from the training text.
template <class M>
long allocations_in_steps_2_to_5(typename M::Config mc, std::vector<train::Phase> phases = {}) {
  cpu::Context ctx;
  std::string text;
  for (int i = 0; i < 100; ++i) text += "abcd efgh abcd ijkl ";
  auto data = io::TextDataset::from_string(text, "repetitive", 0.1);
  M m(mc);
  if (mc.iem_enabled()) {
    if constexpr (M::kVariable) m.set_iem_proposal(hier::SegmentProposal(data.text(io::TextDataset::Split::kTrain), m.segmenter()));
    else m.set_iem_proposal(hier::SegmentProposal(data.text(io::TextDataset::Split::kTrain), M::kSegment));
  }
  nn::ParamStore<cpu, float> ps(m);
  ps.init(ctx, 1);
  train::TrainerConfig tc;
  tc.batch = 2;
  tc.seq_len = 16;
  tc.steps = 5;
  tc.warmup = 1;
  tc.eval_every = 0;
  tc.phases = std::move(phases);
  train::Trainer<cpu, float, M> trainer(ctx, m, ps, data, tc);
  trainer.step(ctx);  // the first step sizes the Trace's vectors
  g_allocs = 0;
  g_counting = true;
  for (int s = 1; s < 5; ++s) trainer.step(ctx);
  g_counting = false;
  return g_allocs.load();
}
}  // namespace

TEST_CASE("hierarchical: training steps 2..5 allocate nothing on the heap (HRED, HAED)") {
  g_counting = true;  // the counter itself works
  { std::string* s = new std::string(100, 'x'); delete s; }
  g_counting = false;
  REQUIRE(g_allocs.load() >= 1);
  typename models::Hred<cpu, float, 4>::Config hc{.dim = 16, .heads = 2, .layers = 2, .decoder_layers = 2, .context = 16};
  CHECK(allocations_in_steps_2_to_5<models::Hred<cpu, float, 4>>(hc) == 0);
  hc.cell = nn::RnnKind::kLstm;
  CHECK(allocations_in_steps_2_to_5<models::Hred<cpu, float, 4>>(hc) == 0);
  typename models::Haed<cpu, float, 4>::Config ac{.dim = 16, .heads = 2, .layers = 2, .decoder_layers = 2, .context = 16};
  CHECK(allocations_in_steps_2_to_5<models::Haed<cpu, float, 4>>(ac) == 0);
  CHECK(allocations_in_steps_2_to_5<models::Haed<cpu, float, 4, hier::TransformerDecoder>>(
            {.dim = 16, .heads = 2, .layers = 2, .decoder_layers = 2, .context = 16}) == 0);
}

TEST_CASE("hierarchical: IEM and decoder-phase training steps 2..5 allocate nothing on the heap") {
  // One objective per run: the first step of an objective sizes the vectors that objective uses.
  std::vector<train::Phase> iem{{"iem", 5, {"decoder.*", "start", "ln_f.*"}, {}}};
  std::vector<train::Phase> dec{{"decoder", 5, {"encoder.*", "backbone.*", "iem.*"}, {}}};
  typename models::Haed<cpu, float, 4>::Config ac{.dim = 16, .heads = 2, .layers = 2, .decoder_layers = 2,
                                                  .context = 16, .iem_negatives = 8, .iem_in_batch = true};
  CHECK(allocations_in_steps_2_to_5<models::Haed<cpu, float, 4>>(ac, iem) == 0);
  CHECK(allocations_in_steps_2_to_5<models::Haed<cpu, float, 4>>(ac, dec) == 0);
  typename models::Hred<cpu, float, 4>::Config hc{.dim = 16, .heads = 2, .layers = 2, .decoder_layers = 2,
                                                  .context = 16, .iem_negatives = 8};
  CHECK(allocations_in_steps_2_to_5<models::Hred<cpu, float, 4>>(hc, iem) == 0);
}

TEST_CASE("hierarchical: delimited segments: training steps 2..5 allocate nothing (the layout reserves the worst case)") {
  // Lines of the training text ("abcd efgh abcd ijkl " has no newline: segments of MaxLen 8, and the
  // random crops end their last segment early) and spaces (every crop has its own layout).
  using L = models::Hierarchical<cpu, float, hier::Delimited<8>, hier::RnnEncoder, hier::RnnBackbone, hier::RnnDecoder>;
  using A = models::Hierarchical<cpu, float, hier::Delimited<8>, hier::MlpEncoder, hier::TransformerBackbone,
                                 hier::TransformerDecoder>;
  L::Config lc{.dim = 16, .heads = 2, .layers = 2, .decoder_layers = 2, .context = 16};
  CHECK(allocations_in_steps_2_to_5<L>(lc) == 0);
  lc.delimiter = " ";
  lc.cell = nn::RnnKind::kLstm;
  CHECK(allocations_in_steps_2_to_5<L>(lc) == 0);
  A::Config ac{.dim = 16, .heads = 2, .layers = 2, .decoder_layers = 2, .context = 16};
  ac.delimiter = " ";
  CHECK(allocations_in_steps_2_to_5<A>(ac) == 0);
  std::vector<train::Phase> dec{{"decoder", 5, {"encoder.*", "backbone.*"}, {}}};
  CHECK(allocations_in_steps_2_to_5<A>(ac, dec) == 0);
  // The IEM objective over delimited segments (variable-length positives and negatives).
  std::vector<train::Phase> iem{{"iem", 5, {"decoder.*", "start", "ln_f.*"}, {}}};
  ac.iem_negatives = 8;
  ac.iem_in_batch = true;
  CHECK(allocations_in_steps_2_to_5<A>(ac, iem) == 0);
  lc.iem_negatives = 8;
  CHECK(allocations_in_steps_2_to_5<L>(lc, iem) == 0);
}

}  // namespace HSEQ_TEST_UNIT
