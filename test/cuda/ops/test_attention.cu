// SPDX-License-Identifier: MIT
// CUDA ops/attention.hpp: attention forward and backward against the CPU for every mask case, every kernel family the
// context can select (checked through its KernelCounts), score biases and the key mass.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cuda/ops/op_checks.cuh"
#include "hseq/ops/attention.hpp"
#include "hseq/ops/attention_mask.hpp"
#include "support/test_unit.hpp"

namespace HSEQ_TEST_UNIT {

using namespace hseq;
using namespace hseq::test_cuda;
using hseq::cuda;  // the backend, not libcu++'s namespace ::cuda
using ops::AttentionDims;
using ops::AttentionMask;

namespace {

// NMSE tolerances of attention: float 1e-7 (as specified for the flash-style kernel, whose online softmax
// rescales and sums in a different order than the CPU's materialised probabilities); double 1e-20.
template <class T>
constexpr double kAttentionTol = std::is_same_v<T, float> ? 1e-7 : 1e-20;

struct AttentionCase {
  char const* name;
  AttentionMask mask;
  std::int64_t batch, heads, tq, tk, prefix, kv_rows;
};

std::vector<AttentionCase> attention_cases() {
  return {
      {"none, prefix 5", AttentionMask::none(), 2, 3, 37, 53, 5, 60},
      // Keys 45..49 are seen by no query: their dK, dV must be exactly zero.
      {"causal, prefix 8, unseen keys", AttentionMask::causal(), 2, 2, 37, 50, 8, 53},
      {"upsampling rates(1, 0, 3, 0), prefix 4", AttentionMask::rates(1, 0, 3, 0), 2, 2, 37, 17, 4, 20},
      {"pooling rates(3, 2, 1, 0), prefix 6", AttentionMask::rates(3, 2, 1, 0), 2, 2, 13, 45, 6, 47},
      {"rates(1, -3, 1, 0): first rows see nothing", AttentionMask::rates(1, -3, 1, 0), 2, 2, 37, 37, 0, 40},
      {"rates(1, -64, 1, 0): a blind block, Tq 130", AttentionMask::rates(1, -64, 1, 0), 1, 2, 130, 70, 0, 71},
      {"causal, Tq 130, Tk 200, prefix 70", AttentionMask::causal(), 1, 2, 130, 200, 70, 203},
  };
}

/// The attention kernels the CUDA ops must dispatch to (ops/cuda/attention.cuh): the tensor-core
/// kernels (3xTF32 in fp32 math, one TF32 product otherwise) or the tiled ones for float head sizes
/// 17..64 when selected (kAuto = kMma), the one-thread-per-row kernels otherwise.
enum class AttentionFamily { kMma3xTf32, kMmaTf32, kTiled, kSimple };
char const* family_name(AttentionFamily f) {
  switch (f) {
    case AttentionFamily::kMma3xTf32: return "mma 3xTF32";
    case AttentionFamily::kMmaTf32: return "mma TF32";
    case AttentionFamily::kTiled: return "tiled";
    default: return "simple";
  }
}
template <class T>
AttentionFamily expected_attention_family(std::int64_t head_dim, hseq::AttentionKernels kernels, hseq::GemmMath math) {
  if (!std::is_same_v<T, float> || head_dim <= 16 || head_dim > 64) return AttentionFamily::kSimple;
  switch (kernels) {
    case hseq::AttentionKernels::kTiled: return AttentionFamily::kTiled;
    case hseq::AttentionKernels::kSimple: return AttentionFamily::kSimple;
    default: return math == hseq::GemmMath::kFp32 ? AttentionFamily::kMma3xTf32 : AttentionFamily::kMmaTf32;
  }
}
/// The attention counters of a context, in AttentionFamily order.
std::vector<std::uint64_t> attention_counts(cuda::Context const& ctx) {
  KernelCounts const& kc = ctx.kernel_counts();
  return {kc.attention_mma_3xtf32, kc.attention_mma_tf32, kc.attention_tiled, kc.attention_simple};
}
/// `n` calls of family `f` and none of the others.
std::vector<std::uint64_t> family_counts(AttentionFamily f, std::uint64_t n) {
  std::vector<std::uint64_t> v(4, 0);
  v[std::size_t(f)] = n;
  return v;
}
/// NMSE against the CPU (fp32) that separates the one-TF32-product attention kernels (~1e-7 .. 1e-6)
/// from the fp32-accurate ones (~1e-13): 100x below the former, 1e4x above the latter.
constexpr double kTf32AttentionFloor = 1e-9;

template <class T>
void check_attention_case(AttentionCase const& c, std::int64_t head_dim,
                          hseq::AttentionKernels kernels = hseq::AttentionKernels::kAuto,
                          hseq::GemmMath math = hseq::GemmMath::kFp32, double tol = kAttentionTol<T>) {
  cpu::Context cctx;
  cuda::Context gctx;
  gctx.set_attention_kernels(kernels);
  gctx.set_gemm_math(math);
  INFO("case ", c.name, ", head_dim ", head_dim, ", kernels ", int(kernels), ", math ", int(math));
  AttentionDims d;
  d.batch = c.batch;
  d.heads = c.heads;
  d.tq = c.tq;
  d.tk = c.tk;
  d.head_dim = head_dim;
  d.prefix = c.prefix;
  d.kv_rows = c.kv_rows;
  std::int64_t const w = d.width(), kvr = d.kv_stride_rows();
  T const scale = T(1.0 / std::sqrt(double(head_dim)));

  auto q = random_normal<T>(Shape{d.batch, d.tq, w}, 40);
  auto kv = random_normal<T>(Shape{d.batch, kvr, 2 * w}, 41);
  // Rows [tk, kv_rows) of each batch element are outside the cache's live part: NaN, never read.
  for (std::int64_t b = 0; b < d.batch; ++b)
    std::fill(kv.data() + (b * kvr + d.tk) * 2 * w, kv.data() + (b + 1) * kvr * 2 * w, nan_v<T>());
  auto dout = random_normal<T>(Shape{d.batch, d.tq, w}, 42);

  // CPU
  auto out = filled<T>(q.shape(), nan_v<T>());
  HostTensor<T> probs(ops::attention_stats_shape(HostSpace{}, d));
  auto dq = filled<T>(q.shape(), nan_v<T>());
  auto dkv = filled<T>(kv.shape(), nan_v<T>());
  HostTensor<T> scratch(Shape{std::max<std::int64_t>(ops::attention_backward_scratch(HostSpace{}, d), 1)});
  ops::attention_forward<T>(cctx, d, c.mask, scale, q.cview(), kv.cview(), out.view(), probs.view());
  ops::attention_backward<T>(cctx, d, c.mask, scale, q.cview(), kv.cview(), out.cview(), probs.cview(), dout.cview(),
                             dq.view(), dkv.view(), scratch.view());

  // GPU (its own forward: the saved statistics differ by design)
  auto gq = to_device(gctx, q);
  auto gkv = to_device(gctx, kv);
  auto gdout = to_device(gctx, dout);
  auto gout = to_device(gctx, filled<T>(q.shape(), nan_v<T>()));
  DeviceTensor<T> gstats(ops::attention_stats_shape(DeviceSpace{}, d));
  auto gdq = to_device(gctx, filled<T>(q.shape(), nan_v<T>()));
  auto gdkv = to_device(gctx, filled<T>(kv.shape(), nan_v<T>()));
  DeviceTensor<T> gscratch(Shape{ops::attention_backward_scratch(DeviceSpace{}, d)});
  ops::attention_forward<T>(gctx, d, c.mask, scale, gq.cview(), gkv.cview(), gout.view(), gstats.view());
  ops::attention_backward<T>(gctx, d, c.mask, scale, gq.cview(), gkv.cview(), gout.cview(), gstats.cview(),
                             gdout.cview(), gdq.view(), gdkv.view(), gscratch.view());
  auto hout = to_host(gctx, gout);
  auto hdq = to_host(gctx, gdq);
  auto hdkv = to_host(gctx, gdkv);

  // The family that ran (forward and backward: one count each) is the one requested.
  AttentionFamily const fam = expected_attention_family<T>(head_dim, kernels, math);
  INFO("expected family ", family_name(fam));
  CHECK(attention_counts(gctx) == family_counts(fam, 2));

  CHECK_NMSE(hout, out, tol);
  CHECK_NMSE(hdq, dq, tol);
  // Precision actually in effect, from the forward output (no cancellation there): the fp32
  // families (3xTF32 split, SIMT) stay at rounding noise (~1e-13), the one-TF32-product kernels
  // must not (operands rounded to 10 mantissa bits: ~1e-7 .. 1e-6, see the kernel-family test).
  if constexpr (std::is_same_v<T, float>) {
    double const e_out = nmse(hout, out), e_dq = nmse(hdq, dq);
    INFO("nmse(out) ", e_out, ", nmse(dq) ", e_dq);
    if (fam == AttentionFamily::kMmaTf32) {
      CHECK(e_out >= kTf32AttentionFloor);
      CHECK(e_dq >= kTf32AttentionFloor);
    } else {
      CHECK(e_out < kTf32AttentionFloor);
    }
  }
  // dkv: only the live rows [0, tk) of each batch element are defined.
  HostTensor<T> live_got(Shape{d.batch, d.tk, 2 * w}), live_want(Shape{d.batch, d.tk, 2 * w});
  for (std::int64_t b = 0; b < d.batch; ++b) {
    std::copy_n(hdkv.data() + b * kvr * 2 * w, d.tk * 2 * w, live_got.data() + b * d.tk * 2 * w);
    std::copy_n(dkv.data() + b * kvr * 2 * w, d.tk * 2 * w, live_want.data() + b * d.tk * 2 * w);
  }
  CHECK_NMSE(live_got, live_want, tol);

  // Rows that see nothing: zero output and zero dq on both sides.
  std::int64_t blind = 0, blind_nonzero_cpu = 0, blind_nonzero_gpu = 0;
  for (std::int64_t b = 0; b < d.batch; ++b)
    for (std::int64_t i = 0; i < d.tq; ++i) {
      if (c.mask.visible(i, d.tk, d.prefix) != 0) continue;
      ++blind;
      std::int64_t off = (b * d.tq + i) * w;
      blind_nonzero_cpu += nonzeros(out.data() + off, w) + nonzeros(dq.data() + off, w);
      blind_nonzero_gpu += nonzeros(hout.data() + off, w) + nonzeros(hdq.data() + off, w);
    }
  CHECK(blind_nonzero_cpu == 0);
  CHECK(blind_nonzero_gpu == 0);
  if (c.mask.kind == AttentionMask::Kind::kRate && c.mask.q_offset < 0) CHECK(blind == d.batch * -c.mask.q_offset);
  // Keys no query sees: zero dK and dV on the GPU.
  std::int64_t const seen = c.mask.visible(d.tq - 1, d.tk, d.prefix);
  std::int64_t unseen_nonzero = 0;
  for (std::int64_t b = 0; b < d.batch; ++b)
    for (std::int64_t j = seen; j < d.tk; ++j) unseen_nonzero += nonzeros(hdkv.data() + (b * kvr + j) * 2 * w, 2 * w);
  CHECK(unseen_nonzero == 0);
}

}  // namespace

TEST_CASE_TEMPLATE("cuda parity: attention forward and backward", T, float, double) {
  for (std::int64_t head_dim : {4, 16, 64, 100})
    for (auto const& c : attention_cases()) check_attention_case<T>(c, head_dim);
}

// Every float kernel family the context can select, on the head sizes they serve (17..64).
// fp32 mode: the tiled SIMT kernels, the 3xTF32 tensor-core kernels and the one-thread-per-row
// kernels all meet the fp32 tolerance. TF32 mode (one TF32 product: operands rounded to 10 mantissa
// bits, relative error 2^-11 ~ 4.9e-4 per operand, partly averaging out over the dot products):
// nmse <= 1e-5 leaves a margin of about 10x over the ~1e-6 expected, and still fails for any
// layout or masking error (those give nmse of order 1). Every call also checks, through the
// context's KernelCounts, that the requested family is the one dispatched, and that the TF32
// kernels' results differ from fp32 (nmse >= kTf32AttentionFloor) while the fp32 families' do not.
TEST_CASE("cuda parity: attention kernel families (tiled, 3xTF32 mma, simple; TF32 mma)") {
  using hseq::AttentionKernels;
  using hseq::GemmMath;
  for (std::int64_t head_dim : {24, 32, 64})
    for (auto const& c : attention_cases()) {
      for (auto k : {AttentionKernels::kTiled, AttentionKernels::kMma, AttentionKernels::kSimple})
        check_attention_case<float>(c, head_dim, k, GemmMath::kFp32, kAttentionTol<float>);
      check_attention_case<float>(c, head_dim, AttentionKernels::kMma, GemmMath::kTf32, 1e-5);
      check_attention_case<float>(c, head_dim, AttentionKernels::kAuto, GemmMath::kBf16, 1e-5);
    }
}

namespace {

// Score biases and the key mass (ops::AttentionScores) on CUDA: the materialising path of
// ops/cuda/attention.cuh (cuBLAS scores, the masked softmax kernels, the embedding gather/scatter
// for the distance table), against the CPU reference on the same inputs. Every mask case of
// attention_cases() (full and causal with a prefix, rates, blind rows, kv_rows > Tk, batch 1 and 2),
// head sizes 5 and 64, and these score setups. The table gradient accumulates into a nonzero
// buffer (+=, like a parameter gradient); the dense gradient starts as NaN (overwritten, zero where
// masked). Tolerances: kAttentionTol (the path materialises the probabilities like the CPU does).
// Attention dropout (`dropout` > 0, a fixed key) also runs on that path: the GPU must drop the same
// weights as the CPU core (a different mask would move the outputs far beyond the tolerance).
struct ScoreSetup {
  char const* name;
  std::int64_t table_d;  ///< D of the [H, D] distance table; 0: none
  bool table_grad;       ///< AttentionScoreGrads::table requested (accumulated onto a nonzero buffer)
  bool dense;            ///< a dense [B, H, Tq, Tk] bias
  bool mass;             ///< the key mass output
  bool dense_grad;       ///< AttentionScoreGrads::dense requested
  std::int64_t q_pos0;   ///< -1: the prefix
  double dropout = 0.0;  ///< attention dropout rate (key kDropKey)
};
constexpr ops::DropoutKey kDropKey{0x0123456789abcdefull, 0x5000000003ull};
std::vector<ScoreSetup> score_setups() {
  return {
      {"table D 7 and its gradient", 7, true, false, false, false, -1},
      {"frozen table D 5 (no gradient) + key mass", 5, false, false, true, false, -1},
      {"dense bias and its gradient", 0, false, true, false, true, -1},
      {"table D 80 + dense + key mass, both gradients, q_pos0 3", 80, true, true, true, true, 3},
      {"key mass only (flash forward and backward)", 0, false, false, true, false, -1},
      {"key mass + dense gradient without a dense bias", 0, false, false, true, true, -1},
      {"attention dropout 0.3 alone", 0, false, false, false, false, -1, 0.3},
      {"attention dropout 0.2 + table D 7 and its gradient + key mass", 7, true, false, true, false, -1, 0.2},
      {"attention dropout 0.5 + dense bias and its gradient", 0, false, true, false, true, -1, 0.5},
  };
}

template <class T>
void check_scored_attention_case(AttentionCase const& c, std::int64_t head_dim, ScoreSetup const& st) {
  cpu::Context cctx;
  cuda::Context gctx;
  INFO("case ", c.name, ", head_dim ", head_dim, ", scores ", st.name);
  AttentionDims d;
  d.batch = c.batch;
  d.heads = c.heads;
  d.tq = c.tq;
  d.tk = c.tk;
  d.head_dim = head_dim;
  d.prefix = c.prefix;
  d.kv_rows = c.kv_rows;
  std::int64_t const w = d.width(), kvr = d.kv_stride_rows();
  T const scale = T(1.0 / std::sqrt(double(head_dim)));
  Shape const dense_shape{d.batch, d.heads, d.tq, d.tk}, mass_shape{d.batch, d.heads, d.tk};

  auto q = random_normal<T>(Shape{d.batch, d.tq, w}, 50);
  auto kv = random_normal<T>(Shape{d.batch, kvr, 2 * w}, 51);
  for (std::int64_t b = 0; b < d.batch; ++b)  // rows [tk, kv_rows): outside the live cache, never read
    std::fill(kv.data() + (b * kvr + d.tk) * 2 * w, kv.data() + (b + 1) * kvr * 2 * w, nan_v<T>());
  auto dout = random_normal<T>(Shape{d.batch, d.tq, w}, 52);
  std::int64_t const dmax = std::max<std::int64_t>(st.table_d, 1);
  auto table = random_normal<T>(Shape{d.heads, dmax}, 53, 0.7);
  auto dense = random_normal<T>(dense_shape, 54, 0.7);
  auto dtable0 = random_normal<T>(Shape{d.heads, dmax}, 55, 0.1);

  // CPU reference
  ops::AttentionScores<T, HostSpace> sc;
  sc.q_pos0 = st.q_pos0;
  auto mass = filled<T>(mass_shape, nan_v<T>());
  if (st.table_d > 0) sc.table = table.cview();
  if (st.dense) sc.dense = dense.cview();
  if (st.mass) sc.key_mass = mass.view();
  sc.dropout = st.dropout;
  sc.dropout_key = kDropKey;
  auto dtable = clone(dtable0);
  auto ddense = filled<T>(dense_shape, nan_v<T>());
  ops::AttentionScoreGrads<T, HostSpace> dsc;
  if (st.table_grad) dsc.table = dtable.view();
  if (st.dense_grad) dsc.dense = ddense.view();
  auto out = filled<T>(q.shape(), nan_v<T>());
  HostTensor<T> probs(ops::attention_stats_shape(HostSpace{}, d));
  auto dq = filled<T>(q.shape(), nan_v<T>());
  auto dkv = filled<T>(kv.shape(), nan_v<T>());
  HostTensor<T> scratch(Shape{std::max<std::int64_t>(ops::attention_backward_scratch(HostSpace{}, d), 1)});
  ops::attention_forward<T>(cctx, d, c.mask, scale, q.cview(), kv.cview(), out.view(), probs.view(), sc);
  ops::attention_backward<T>(cctx, d, c.mask, scale, q.cview(), kv.cview(), out.cview(), probs.cview(), dout.cview(),
                             dq.view(), dkv.view(), scratch.view(), sc, dsc);

  // GPU
  auto gq = to_device(gctx, q);
  auto gkv = to_device(gctx, kv);
  auto gdout = to_device(gctx, dout);
  auto gtable = to_device(gctx, table);
  auto gdense = to_device(gctx, dense);
  auto gmass = to_device(gctx, filled<T>(mass_shape, nan_v<T>()));
  auto gdtable = to_device(gctx, dtable0);
  auto gddense = to_device(gctx, filled<T>(dense_shape, nan_v<T>()));
  ops::AttentionScores<T, DeviceSpace> gsc;
  gsc.q_pos0 = st.q_pos0;
  if (st.table_d > 0) gsc.table = gtable.cview();
  if (st.dense) gsc.dense = gdense.cview();
  if (st.mass) gsc.key_mass = gmass.view();
  gsc.dropout = st.dropout;
  gsc.dropout_key = kDropKey;
  ops::AttentionScoreGrads<T, DeviceSpace> gdsc;
  if (st.table_grad) gdsc.table = gdtable.view();
  if (st.dense_grad) gdsc.dense = gddense.view();
  auto gout = to_device(gctx, filled<T>(q.shape(), nan_v<T>()));
  DeviceTensor<T> gstats(ops::attention_stats_shape(DeviceSpace{}, d));
  auto gdq = to_device(gctx, filled<T>(q.shape(), nan_v<T>()));
  auto gdkv = to_device(gctx, filled<T>(kv.shape(), nan_v<T>()));
  DeviceTensor<T> gscratch(Shape{ops::attention_backward_scratch(DeviceSpace{}, d)});
  ops::attention_forward<T>(gctx, d, c.mask, scale, gq.cview(), gkv.cview(), gout.view(), gstats.view(), gsc);
  ops::attention_backward<T>(gctx, d, c.mask, scale, gq.cview(), gkv.cview(), gout.cview(), gstats.cview(),
                             gdout.cview(), gdq.view(), gdkv.view(), gscratch.view(), gsc, gdsc);
  auto hout = to_host(gctx, gout);
  auto hdq = to_host(gctx, gdq);
  auto hdkv = to_host(gctx, gdkv);

  // Which path ran: the flash kernels (one attention count per call) only without a bias in forward
  // and without a bias or score gradient in backward; the materialising path counts no attention.
  bool const biased = st.table_d > 0 || st.dense || st.dropout > 0;  // dropout also materialises
  std::uint64_t const flash_calls = (biased ? 0 : 1) + (biased || st.table_grad || st.dense_grad ? 0 : 1);
  std::uint64_t counted = 0;
  for (std::uint64_t k : attention_counts(gctx)) counted += k;
  CHECK(counted == flash_calls);

  CHECK_NMSE(hout, out, kAttentionTol<T>);
  CHECK_NMSE(hdq, dq, kAttentionTol<T>);
  HostTensor<T> live_got(Shape{d.batch, d.tk, 2 * w}), live_want(Shape{d.batch, d.tk, 2 * w});
  for (std::int64_t b = 0; b < d.batch; ++b) {
    std::copy_n(hdkv.data() + b * kvr * 2 * w, d.tk * 2 * w, live_got.data() + b * d.tk * 2 * w);
    std::copy_n(dkv.data() + b * kvr * 2 * w, d.tk * 2 * w, live_want.data() + b * d.tk * 2 * w);
  }
  CHECK_NMSE(live_got, live_want, kAttentionTol<T>);
  if (st.mass) {
    auto hmass = to_host(gctx, gmass);
    CHECK_NMSE(hmass, mass, kAttentionTol<T>);
  }
  if (st.table_grad) {  // accumulated onto dtable0 on both sides
    auto hdtable = to_host(gctx, gdtable);
    CHECK_NMSE(hdtable, dtable, kAttentionTol<T>);
  }
  if (st.dense_grad) {
    auto hddense = to_host(gctx, gddense);
    CHECK_NMSE(hddense, ddense, kAttentionTol<T>);
    std::int64_t masked_nonzero = 0;  // dL/dlogits is exactly zero at masked keys
    for (std::int64_t r = 0; r < d.batch * d.heads * d.tq; ++r) {
      std::int64_t vis = c.mask.visible(r % d.tq, d.tk, d.prefix);
      masked_nonzero += nonzeros(hddense.data() + r * d.tk + vis, d.tk - vis);
    }
    CHECK(masked_nonzero == 0);
  }
  // Rows that see nothing: zero output and zero dq; keys no query sees: zero dK and dV.
  std::int64_t blind_nonzero = 0, unseen_nonzero = 0;
  for (std::int64_t b = 0; b < d.batch; ++b)
    for (std::int64_t i = 0; i < d.tq; ++i)
      if (c.mask.visible(i, d.tk, d.prefix) == 0)
        blind_nonzero += nonzeros(hout.data() + (b * d.tq + i) * w, w) + nonzeros(hdq.data() + (b * d.tq + i) * w, w);
  CHECK(blind_nonzero == 0);
  std::int64_t const seen = c.mask.visible(d.tq - 1, d.tk, d.prefix);
  for (std::int64_t b = 0; b < d.batch; ++b)
    for (std::int64_t j = seen; j < d.tk; ++j) unseen_nonzero += nonzeros(hdkv.data() + (b * kvr + j) * 2 * w, 2 * w);
  CHECK(unseen_nonzero == 0);
}

}  // namespace

TEST_CASE_TEMPLATE("cuda parity: attention with score biases, their gradients and the key mass", T, float, double) {
  for (auto const& st : score_setups())
    for (std::int64_t head_dim : {5, 64})
      for (auto const& c : attention_cases()) check_scored_attention_case<T>(c, head_dim, st);
}

// A biased call is repeatable: the second call reuses the grown context scratch and gives the same
// bits (the table gradient accumulates twice, deterministically); bad score shapes throw as on the CPU.
TEST_CASE("cuda attention scores: repeated calls are bit-identical; bad shapes throw naming them") {
  cuda::Context gctx;
  AttentionDims d{2, 3, 19, 23, 8, 4};
  std::int64_t const w = d.width();
  auto gq = to_device(gctx, random_normal<float>(Shape{2, 19, w}, 60));
  auto gkv = to_device(gctx, random_normal<float>(Shape{2, 23, 2 * w}, 61));
  auto gdout = to_device(gctx, random_normal<float>(Shape{2, 19, w}, 62));
  auto gtable = to_device(gctx, random_normal<float>(Shape{3, 6}, 63));
  auto gdense = to_device(gctx, random_normal<float>(Shape{2, 3, 19, 23}, 64));
  DeviceTensor<float> gout(Shape{2, 19, w}), gstats(ops::attention_stats_shape(DeviceSpace{}, d)),
      gmass(Shape{2, 3, 23}), gdq(Shape{2, 19, w}), gdkv(Shape{2, 23, 2 * w}), gddense(Shape{2, 3, 19, 23}),
      gscratch(Shape{ops::attention_backward_scratch(DeviceSpace{}, d)});
  auto gdtable = to_device(gctx, filled<float>(Shape{3, 6}, 0.0f));
  ops::AttentionScores<float, DeviceSpace> sc;
  sc.table = gtable.cview();
  sc.dense = gdense.cview();
  sc.key_mass = gmass.view();
  ops::AttentionScoreGrads<float, DeviceSpace> dsc{gdtable.view(), gddense.view()};
  auto run = [&] {
    ops::attention_forward<float>(gctx, d, AttentionMask::causal(), 0.5f, gq.cview(), gkv.cview(), gout.view(),
                                  gstats.view(), sc);
    ops::attention_backward<float>(gctx, d, AttentionMask::causal(), 0.5f, gq.cview(), gkv.cview(), gout.cview(),
                                   gstats.cview(), gdout.cview(), gdq.view(), gdkv.view(), gscratch.view(), sc, dsc);
    std::vector<HostTensor<float>> r;  // move-only tensors: no initializer list
    r.push_back(to_host(gctx, gout));
    r.push_back(to_host(gctx, gmass));
    r.push_back(to_host(gctx, gdq));
    r.push_back(to_host(gctx, gdkv));
    r.push_back(to_host(gctx, gddense));
    r.push_back(to_host(gctx, gdtable));
    return r;
  };
  auto first = run();
  auto second = run();
  for (std::size_t k = 0; k + 1 < first.size(); ++k) CHECK(bit_mismatches(first[k], second[k]) == 0);
  // The table gradient was accumulated twice: 2 * g, exactly (g + g is exact).
  HostTensor<float> twice(first.back().shape());
  for (std::int64_t k = 0; k < twice.numel(); ++k) twice.data()[k] = 2.0f * first.back().data()[k];
  CHECK(bit_mismatches(second.back(), twice) == 0);
  // The stats of a biased forward are NaN (backward recomputes the probabilities).
  auto hstats = to_host(gctx, gstats);
  std::int64_t finite = 0;
  for (std::int64_t k = 0; k < hstats.numel(); ++k) finite += std::isfinite(hstats.data()[k]) ? 1 : 0;
  CHECK(finite == 0);

  auto bad_table = to_device(gctx, random_normal<float>(Shape{2, 6}, 65));
  ops::AttentionScores<float, DeviceSpace> bad;
  bad.table = bad_table.cview();
  CHECK_THROWS_WITH_AS(ops::attention_forward<float>(gctx, d, AttentionMask::causal(), 0.5f, gq.cview(), gkv.cview(),
                                                     gout.view(), gstats.view(), bad),
                       doctest::Contains("score bias table"), hseq::Error);
  ops::AttentionScores<float, DeviceSpace> bad_mass;
  bad_mass.key_mass = gdq.view();
  CHECK_THROWS_WITH_AS(ops::attention_forward<float>(gctx, d, AttentionMask::causal(), 0.5f, gq.cview(), gkv.cview(),
                                                     gout.view(), gstats.view(), bad_mass),
                       doctest::Contains("key mass"), hseq::Error);
}

}  // namespace HSEQ_TEST_UNIT
