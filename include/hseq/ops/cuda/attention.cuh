// SPDX-License-Identifier: MIT
/// @file
/// @brief Flash-style fused attention on CUDA, forward and backward, with the rate-aware masks.
///
/// Never materialises the Tq x Tk scores. Forward streams key/value tiles through shared memory and
/// keeps an online softmax per query row (one thread per row: q and the output accumulator live in
/// registers, keys and values are read as broadcasts); it saves the row's log-sum-exp [B, H, Tq].
/// Backward recomputes the probabilities from the log-sum-exp: one kernel computes
/// D = rowsum(dO * O), one accumulates dQ per query row over key tiles, one accumulates dK and dV per
/// key row over query tiles. There are no atomics, so gradients are bit-reproducible. Key tiles past
/// the last key a query block can see (`AttentionMask::visible` is non-decreasing) are skipped, and
/// query tiles before the first query a key tile is visible to, so causal attention costs about half.
/// Head sizes up to 128 are supported (compiled for 16, 32, 64 and 128, padded with zeros). For float
/// with head sizes 17..64 the tensor-core kernels of attention_mma.cuh run (3xTF32, i.e. fp32
/// accuracy, by default; one TF32 product when the context opted into TF32/bf16 GEMMs);
/// `cuda::Context::set_attention_kernels` (or HSEQ_CUDA_ATTENTION=mma|tiled|simple) selects the
/// register-tiled or one-thread-per-row SIMT kernels instead, for comparisons.
///
/// Score biases, attention dropout and the key mass (`AttentionScores`, see ops/attention.hpp) take a
/// materialising path instead, composed of existing ops only (cuBLAS GEMMs, the masked softmax
/// kernels, the dropout kernel, thrust adds, the embedding gather and scatter-add kernels): per batch
/// element it holds the [H, Tq, Tk] scores in the context's grow-only scratch, and backward
/// recomputes them (see attention_forward). No new kernel: a fused biased flash kernel may replace it
/// once one has been verified on a GPU. This path has been compiled, not yet run on a GPU
/// (test/cuda/ops/test_attention.cu holds its CPU parity cases; attention dropout: compiled only).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "hseq/ops/attention.hpp"
#include "hseq/ops/cuda/attention_mma.cuh"
#include "hseq/ops/cuda/attention_tiled.cuh"
#include "hseq/ops/cuda/launch.cuh"
#include "hseq/ops/dropout.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/embedding.hpp"
#include "hseq/ops/gemm.hpp"
#include "hseq/ops/softmax.hpp"

namespace hseq::ops {

/// What the CUDA `attention_forward` saves for backward: the log-sum-exp of each query row [B, H, Tq]
/// (natural log of the masked, scaled softmax normaliser; -inf for a row that sees nothing).
inline Shape attention_stats_shape(DeviceSpace, AttentionDims const& d) { return Shape{d.batch, d.heads, d.tq}; }
/// Scratch elements of the CUDA `attention_backward`: D = rowsum(dO * O) [B, H, Tq].
inline std::int64_t attention_backward_scratch(DeviceSpace, AttentionDims const& d) {
  return d.batch * d.heads * d.tq;
}

namespace cuda_detail {

inline constexpr int kAttnRows = 64;  // query rows per block (forward, dQ); key rows per block (dK/dV) when they fit

/// Key rows per shared-memory tile in the forward and dQ kernels.
template <class T, int kD>
constexpr int attn_key_tile() {
  return kD * int(sizeof(T)) >= 1024 ? 16 : 32;
}
/// Key rows per block of the dK/dV kernel: each thread owns one key row, kept in shared memory.
template <class T, int kD>
constexpr int attn_dkv_rows() {
  return 2 * 64 * (kD + 4) * int(sizeof(T)) <= 36 * 1024 ? 64 : (2 * 32 * (kD + 4) * int(sizeof(T)) <= 36 * 1024 ? 32 : 16);
}
/// Query rows per tile of the dK/dV kernel (what fits next to the key rows in 45 KiB).
template <class T, int kD>
constexpr int attn_dkv_query_tile() {
  constexpr int self = 2 * attn_dkv_rows<T, kD>() * (kD + 4) * int(sizeof(T));
  constexpr int per = (2 * kD + 3) * int(sizeof(T));
  return self + 32 * per <= 45 * 1024 ? 32 : (self + 16 * per <= 45 * 1024 ? 16 : (self + 8 * per <= 45 * 1024 ? 8 : 4));
}

inline AttnArgs attn_args(AttentionDims const& d) {
  return {d.batch, d.heads, d.tq, d.tk, d.head_dim, d.prefix, d.kv_stride_rows(), d.width()};
}

template <class T>
__device__ inline T neg_inf() {
  return -INFINITY;
}

/// Forward: block (query block, b*H + h), one thread per query row.
template <class T, int kD, int kBc>
__global__ void __launch_bounds__(kAttnRows) flash_forward_kernel(AttnArgs a, AttentionMask mask, T scale,
                                                                  T const* __restrict__ q, T const* __restrict__ kv,
                                                                  T* __restrict__ out, T* __restrict__ lse) {
  __shared__ alignas(16) T ks[kBc][kD];
  __shared__ alignas(16) T vs[kBc][kD];
  std::int64_t const qblk = std::int64_t(gridDim.x) - 1 - blockIdx.x;  // heaviest (latest) blocks first
  std::int64_t const p = blockIdx.y, b = p / a.heads, h = p % a.heads;
  std::int64_t const i0 = qblk * kAttnRows, i = i0 + threadIdx.x;
  bool const active = i < a.tq;
  std::int64_t const vis = active ? mask.visible(i, a.tk, a.prefix) : 0;
  std::int64_t const last = (i0 + kAttnRows < a.tq ? i0 + kAttnRows : a.tq) - 1;
  std::int64_t const kend = mask.visible(last, a.tk, a.prefix);
  T const* kbase = kv + b * a.kv_rows * 2 * a.w + h * a.dh;
  T qr[kD], acc[kD];
#pragma unroll
  for (int d = 0; d < kD; ++d) {
    qr[d] = (active && d < a.dh) ? q[(b * a.tq + i) * a.w + h * a.dh + d] * scale : T(0);
    acc[d] = T(0);
  }
  T m = neg_inf<T>(), l = T(0);
  for (std::int64_t j0 = 0; j0 < kend; j0 += kBc) {
    __syncthreads();
    for (int e = threadIdx.x; e < kBc * kD; e += kAttnRows) {
      int r = e / kD, c = e % kD;
      std::int64_t j = j0 + r;
      bool ok = j < kend && c < a.dh;
      ks[r][c] = ok ? kbase[j * 2 * a.w + c] : T(0);
      vs[r][c] = ok ? kbase[j * 2 * a.w + a.w + c] : T(0);
    }
    __syncthreads();
    if (j0 >= vis) continue;
    std::int64_t const jn = vis - j0;  // visible keys in this tile (may exceed kBc)
    T s[kBc];
    T mt = m;
#pragma unroll
    for (int jj = 0; jj < kBc; ++jj) {
      T x = T(0);
#pragma unroll
      for (int d = 0; d < kD; ++d) x += qr[d] * ks[jj][d];
      s[jj] = jj < jn ? x : neg_inf<T>();
      mt = s[jj] > mt ? s[jj] : mt;
    }
    T corr = exp(m - mt);  // m = -inf on the first tile: corr = 0, and l, acc are 0 anyway
    l *= corr;
#pragma unroll
    for (int d = 0; d < kD; ++d) acc[d] *= corr;
#pragma unroll
    for (int jj = 0; jj < kBc; ++jj) {
      T pj = exp(s[jj] - mt);
      l += pj;
#pragma unroll
      for (int d = 0; d < kD; ++d) acc[d] += pj * vs[jj][d];
    }
    m = mt;
  }
  if (!active) return;
  T inv = l > T(0) ? T(1) / l : T(0);
  T* orow = out + (b * a.tq + i) * a.w + h * a.dh;
#pragma unroll
  for (int d = 0; d < kD; ++d)
    if (d < a.dh) orow[d] = acc[d] * inv;
  lse[p * a.tq + i] = l > T(0) ? m + log(l) : neg_inf<T>();
}

/// D[b, h, i] = sum_d dO[b, i, h, d] * O[b, i, h, d].
template <class T>
__global__ void flash_rowdot_kernel(AttnArgs a, T const* __restrict__ dout, T const* __restrict__ out, T* __restrict__ dd) {
  std::int64_t n = a.batch * a.heads * a.tq;
  for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t p = e / a.tq, i = e % a.tq, b = p / a.heads, h = p % a.heads;
    std::int64_t off = (b * a.tq + i) * a.w + h * a.dh;
    T s = T(0);
    for (std::int64_t d = 0; d < a.dh; ++d) s += dout[off + d] * out[off + d];
    dd[e] = s;
  }
}

/// dQ: one thread per query row, key/value tiles through shared memory.
template <class T, int kD, int kBc>
__global__ void __launch_bounds__(kAttnRows) flash_dq_kernel(AttnArgs a, AttentionMask mask, T scale,
                                                             T const* __restrict__ q, T const* __restrict__ kv,
                                                             T const* __restrict__ lse, T const* __restrict__ dd,
                                                             T const* __restrict__ dout, T* __restrict__ dq) {
  __shared__ alignas(16) T ks[kBc][kD];
  __shared__ alignas(16) T vs[kBc][kD];
  std::int64_t const qblk = std::int64_t(gridDim.x) - 1 - blockIdx.x;
  std::int64_t const p = blockIdx.y, b = p / a.heads, h = p % a.heads;
  std::int64_t const i0 = qblk * kAttnRows, i = i0 + threadIdx.x;
  bool const active = i < a.tq;
  std::int64_t const vis = active ? mask.visible(i, a.tk, a.prefix) : 0;
  std::int64_t const last = (i0 + kAttnRows < a.tq ? i0 + kAttnRows : a.tq) - 1;
  std::int64_t const kend = mask.visible(last, a.tk, a.prefix);
  T const* kbase = kv + b * a.kv_rows * 2 * a.w + h * a.dh;
  std::int64_t const off = (b * a.tq + i) * a.w + h * a.dh;
  T qr[kD], dor[kD], acc[kD];
#pragma unroll
  for (int d = 0; d < kD; ++d) {
    bool ok = active && d < a.dh;
    qr[d] = ok ? q[off + d] * scale : T(0);
    dor[d] = ok ? dout[off + d] : T(0);
    acc[d] = T(0);
  }
  T const li = vis > 0 ? lse[p * a.tq + i] : T(0);
  T const di = active ? dd[p * a.tq + i] : T(0);
  for (std::int64_t j0 = 0; j0 < kend; j0 += kBc) {
    __syncthreads();
    for (int e = threadIdx.x; e < kBc * kD; e += kAttnRows) {
      int r = e / kD, c = e % kD;
      std::int64_t j = j0 + r;
      bool ok = j < kend && c < a.dh;
      ks[r][c] = ok ? kbase[j * 2 * a.w + c] : T(0);
      vs[r][c] = ok ? kbase[j * 2 * a.w + a.w + c] : T(0);
    }
    __syncthreads();
    if (j0 >= vis) continue;
    std::int64_t const jn = vis - j0;
#pragma unroll
    for (int jj = 0; jj < kBc; ++jj) {
      if (jj >= jn) break;
      // Four partial sums per dot product: independent FMA chains hide the FMA latency.
      T s4[4] = {T(0), T(0), T(0), T(0)}, dp4[4] = {T(0), T(0), T(0), T(0)};
#pragma unroll
      for (int d = 0; d < kD; ++d) {
        s4[d & 3] += qr[d] * ks[jj][d];
        dp4[d & 3] += dor[d] * vs[jj][d];
      }
      T s = (s4[0] + s4[1]) + (s4[2] + s4[3]), dp = (dp4[0] + dp4[1]) + (dp4[2] + dp4[3]);
      T ds = exp(s - li) * (dp - di);
#pragma unroll
      for (int d = 0; d < kD; ++d) acc[d] += ds * ks[jj][d];
    }
  }
  if (!active) return;
#pragma unroll
  for (int d = 0; d < kD; ++d)
    if (d < a.dh) dq[off + d] = acc[d] * scale;
}

/// dK, dV: one thread per key row (its key and value in shared memory, its gradients in registers),
/// query tiles through shared memory from the first query that can see this block's first key.
template <class T, int kD, int kRows, int kBq>
__global__ void __launch_bounds__(kRows) flash_dkv_kernel(AttnArgs a, AttentionMask mask, T scale,
                                                          T const* __restrict__ q, T const* __restrict__ kv,
                                                          T const* __restrict__ lse, T const* __restrict__ dd,
                                                          T const* __restrict__ dout, T* __restrict__ dkv) {
  constexpr int kPad = kD + 4;  // row padding: conflict-free 16-byte loads of a thread's own row
  __shared__ alignas(16) T kself[kRows][kPad];
  __shared__ alignas(16) T vself[kRows][kPad];
  __shared__ alignas(16) T qs[kBq][kD];
  __shared__ alignas(16) T dos[kBq][kD];
  __shared__ T ls[kBq], ds_[kBq];
  __shared__ std::int64_t viss[kBq];
  std::int64_t const p = blockIdx.y, b = p / a.heads, h = p % a.heads;
  std::int64_t const j0 = std::int64_t(blockIdx.x) * kRows, j = j0 + threadIdx.x;
  bool const active = j < a.tk;
  T const* kbase = kv + b * a.kv_rows * 2 * a.w + h * a.dh;
  for (int e = threadIdx.x; e < kRows * kD; e += kRows) {
    int r = e / kD, c = e % kD;
    std::int64_t jj = j0 + r;
    bool ok = jj < a.tk && c < a.dh;
    kself[r][c] = ok ? kbase[jj * 2 * a.w + c] : T(0);
    vself[r][c] = ok ? kbase[jj * 2 * a.w + a.w + c] : T(0);
  }
  // First query that sees key j0: visible(i) > j0 (visible is non-decreasing in i).
  std::int64_t lo = 0, hi = a.tq;
  while (lo < hi) {
    std::int64_t mid = (lo + hi) / 2;
    if (mask.visible(mid, a.tk, a.prefix) > j0) hi = mid;
    else lo = mid + 1;
  }
  std::int64_t const istart = lo;
  T dk[kD], dv[kD];
#pragma unroll
  for (int d = 0; d < kD; ++d) dk[d] = dv[d] = T(0);
  for (std::int64_t i0 = istart; i0 < a.tq; i0 += kBq) {
    __syncthreads();
    for (int e = threadIdx.x; e < kBq * kD; e += kRows) {
      int r = e / kD, c = e % kD;
      std::int64_t i = i0 + r;
      bool ok = i < a.tq && c < a.dh;
      std::int64_t off = (b * a.tq + i) * a.w + h * a.dh + c;
      qs[r][c] = ok ? q[off] * scale : T(0);
      dos[r][c] = ok ? dout[off] : T(0);
    }
    for (int r = threadIdx.x; r < kBq; r += kRows) {
      std::int64_t i = i0 + r;
      bool ok = i < a.tq;
      std::int64_t vis = ok ? mask.visible(i, a.tk, a.prefix) : 0;
      viss[r] = vis;
      ls[r] = vis > 0 ? lse[p * a.tq + i] : T(0);
      ds_[r] = ok ? dd[p * a.tq + i] : T(0);
    }
    __syncthreads();
    if (!active) continue;
    for (int r = 0; r < kBq; ++r) {
      if (j >= viss[r]) continue;
      T s4[4] = {T(0), T(0), T(0), T(0)}, dp4[4] = {T(0), T(0), T(0), T(0)};
#pragma unroll
      for (int d = 0; d < kD; ++d) {
        s4[d & 3] += qs[r][d] * kself[threadIdx.x][d];
        dp4[d & 3] += dos[r][d] * vself[threadIdx.x][d];
      }
      T s = (s4[0] + s4[1]) + (s4[2] + s4[3]), dp = (dp4[0] + dp4[1]) + (dp4[2] + dp4[3]);
      T pr = exp(s - ls[r]);
      T dsr = pr * (dp - ds_[r]);
#pragma unroll
      for (int d = 0; d < kD; ++d) {
        dv[d] += pr * dos[r][d];
        dk[d] += dsr * qs[r][d];  // qs holds scale * q: dK = scale * dS^T Q
      }
    }
  }
  if (!active) return;
  T* dkrow = dkv + (b * a.kv_rows + j) * 2 * a.w + h * a.dh;
#pragma unroll
  for (int d = 0; d < kD; ++d)
    if (d < a.dh) {
      dkrow[d] = dk[d];
      dkrow[a.w + d] = dv[d];
    }
}

/// Calls f(std::integral_constant<int, kD>) with the smallest compiled head size >= dh.
template <class F>
void dispatch_head_dim(std::int64_t dh, char const* who, F&& f) {
  if (dh <= 16) f(std::integral_constant<int, 16>{});
  else if (dh <= 32) f(std::integral_constant<int, 32>{});
  else if (dh <= 64) f(std::integral_constant<int, 64>{});
  else if (dh <= 128) f(std::integral_constant<int, 128>{});
  else HSEQ_FAIL(who << ": head size " << dh << " is not supported on CUDA (at most 128)");
}

/// The kernels float attention with head sizes 17..64 uses on this context (AttentionKernels):
/// kAuto is the tensor-core MMA kernels, 3xTF32 in fp32 mode and one TF32 product when the GEMMs run
/// in TF32 or bf16 (on an H100, 3xTF32 beat the register-tiled SIMT kernels: docs/performance.md).
inline AttentionKernels attention_kernels(cuda::Context const& ctx) {
  AttentionKernels k = ctx.attention_kernels();
  return k == AttentionKernels::kAuto ? AttentionKernels::kMma : k;
}

inline dim3 attn_grid(std::int64_t rows, std::int64_t per_block, std::int64_t bh, char const* who) {
  std::int64_t blocks = (rows + per_block - 1) / per_block;
  HSEQ_CHECK(blocks <= 2147483647 && bh <= 65535, who << ": " << bh << " batch x heads exceeds the grid limit of 65535");
  return dim3(unsigned(blocks), unsigned(bh));
}

// ---------------------------------------------------------------------------------------------
// Score biases and the key mass: a materialising path composed of existing ops (cuBLAS GEMMs, the
// masked softmax and its backward, thrust adds, the embedding gather and scatter-add kernels).
// ---------------------------------------------------------------------------------------------

/// Where the materialising path keeps its temporaries in the context's grow-only scratch
/// (`cuda::Context::scratch`; no allocation once it has grown). n = Tq * Tk.
///   ids   int32 [n]     clamped distance index of (i, j), i * Tk + j (with a table)
///   keys  int32 [n]     the same indices sorted, stable (with a table gradient)
///   pos   int32 [n]     the positions in that order: the runs embedding_segments_kernel sums
///   bias  T [H, n]      the table bias table[h, ids], the same for every batch element (with a table)
///   probs T [H, n]      logits, then probabilities, of the current batch element
///   dprob T [H, n]      dP, then dS = dL/dlogits (backward)
///   dsum  T [H, n]      dS summed over the batch (backward, table gradient, batch > 1)
///   ones  T [H, Tq]     for the key mass (forward; one row per head: no zero batch stride)
/// Only ops that do not use the context's scratch themselves run while these pieces are live.
struct ScoredAttentionScratch {
  std::int32_t* ids = nullptr;
  std::int32_t* keys = nullptr;
  std::int32_t* pos = nullptr;
  void* bias = nullptr;
  void* probs = nullptr;
  void* dprob = nullptr;
  void* dsum = nullptr;
  void* ones = nullptr;
};

/// Carves the pieces (see ScoredAttentionScratch) out of ctx.scratch, uploads the host-built
/// distance index (and, with `sorted`, its stable counting sort by distance) and gathers the table
/// bias [H, Tq, Tk] once per call (it does not depend on the batch element). The upload
/// synchronises the stream once (cuda::upload).
template <class T>
ScoredAttentionScratch scored_attention_scratch(cuda::Context& ctx, AttentionDims const& d,
                                                AttentionScores<T, DeviceSpace> const& sc, bool backward, bool sorted,
                                                bool dsum) {
  std::int64_t const n = d.tq * d.tk, hn = d.heads * n;
  bool const table = !sc.table.empty();
  HSEQ_CHECK(n <= std::int64_t(std::numeric_limits<std::int32_t>::max()),
             "attention (score bias): Tq * Tk = " << n << " exceeds the 32-bit index of the table bias");
  std::int64_t const nidx = table ? (sorted ? 3 * n : n) : 0;
  ScratchPlan plan;
  std::size_t const ids_at = plan.add<std::int32_t>(nidx);
  std::size_t const bias_at = plan.add<T>(table ? hn : 0);
  std::size_t const probs_at = plan.add<T>(hn);
  std::size_t const dprob_at = plan.add<T>(backward ? hn : 0);
  std::size_t const dsum_at = plan.add<T>(dsum ? hn : 0);
  std::size_t const ones_at = plan.add<T>(!backward && !sc.key_mass.empty() ? d.heads * d.tq : 0);
  void* base = ctx.scratch(plan.total());
  ScoredAttentionScratch s;
  s.probs = at<void>(base, probs_at);
  if (backward) s.dprob = at<void>(base, dprob_at);
  if (dsum) s.dsum = at<void>(base, dsum_at);
  if (!backward && !sc.key_mass.empty()) {
    s.ones = at<void>(base, ones_at);
    ops::fill<T>(ctx, View<T, DeviceSpace>(static_cast<T*>(s.ones), Shape{d.heads, d.tq}), T(1));
  }
  if (table && n > 0) {
    std::int64_t const dmax = sc.table.size(1), q0 = sc.origin(d.prefix);
    std::vector<std::int32_t> host(std::size_t(nidx), 0);
    for (std::int64_t i = 0; i < d.tq; ++i)
      for (std::int64_t j = 0; j < d.tk; ++j)
        host[std::size_t(i * d.tk + j)] = std::int32_t(detail::distance_index(q0 + i, j, dmax));
    if (sorted) {  // stable counting sort: runs of equal distance, positions ascending in each run
      std::vector<std::int64_t> start(std::size_t(dmax) + 1, 0);
      for (std::int64_t e = 0; e < n; ++e) ++start[std::size_t(host[std::size_t(e)]) + 1];
      for (std::int64_t k = 0; k < dmax; ++k) start[std::size_t(k) + 1] += start[std::size_t(k)];
      for (std::int64_t e = 0; e < n; ++e) {
        std::int32_t key = host[std::size_t(e)];
        std::int64_t slot = start[std::size_t(key)]++;
        host[std::size_t(n + slot)] = key;
        host[std::size_t(2 * n + slot)] = std::int32_t(e);
      }
    }
    s.ids = at<std::int32_t>(base, ids_at);
    if (sorted) {
      s.keys = s.ids + n;
      s.pos = s.ids + 2 * n;
    }
    cuda::upload<std::int32_t>(ctx, s.ids, host.data(), host.size());
    s.bias = at<void>(base, bias_at);
    for (std::int64_t h = 0; h < d.heads; ++h) {  // bias[h] = table[h, ids]: the table's row h as a [D, 1] table
      embedding_forward_kernel<T><<<grid_for(n), kThreads, 0, ctx.stream()>>>(sc.table.data + h * dmax, s.ids,
                                                                              static_cast<T*>(s.bias) + h * n, n, 1);
      HSEQ_CUDA_LAUNCH_CHECK("attention (score bias gather)");
    }
  }
  return s;
}

/// probs [H, Tq, Tk] of batch element b: softmax over the visible keys of
/// scale Q K^T + bias + dense[b] (masked entries exactly zero).
template <class T>
void scored_attention_probs(cuda::Context& ctx, AttentionDims const& d, AttentionMask mask, T scale,
                            View<T const, DeviceSpace> q, View<T const, DeviceSpace> kv,
                            AttentionScores<T, DeviceSpace> const& sc, ScoredAttentionScratch const& s,
                            std::int64_t b) {
  std::int64_t const w = d.width(), dh = d.head_dim, n = d.tq * d.tk, hn = d.heads * n;
  T* probs = static_cast<T*>(s.probs);
  T const* qb = q.data + b * d.tq * w;
  T const* kb = kv.data + b * d.kv_stride_rows() * 2 * w;
  // S = scale Q K^T per head (heads are column blocks: batch stride dh).
  ops::gemm_strided_batched<T>(ctx, d.heads, Trans::kNo, {qb, d.tq, dh, w}, dh, Trans::kYes, {kb, d.tk, dh, 2 * w}, dh,
                               {probs, d.tq, d.tk, d.tk}, n, scale, T(0));
  View<T, DeviceSpace> pv(probs, Shape{d.heads, d.tq, d.tk});
  if (s.bias != nullptr) ops::add<T>(ctx, pv, View<T const, DeviceSpace>(static_cast<T const*>(s.bias), pv.shape), pv);
  if (!sc.dense.empty()) ops::add<T>(ctx, pv, View<T const, DeviceSpace>(sc.dense.data + b * hn, pv.shape), pv);
  ops::softmax_forward<T>(ctx, pv, pv, mask, T(1), d.prefix);
}

/// Forward with a score bias and/or the key mass (see attention_forward).
template <class T>
void scored_attention_forward(cuda::Context& ctx, AttentionDims const& d, AttentionMask mask, T scale,
                              View<T const, DeviceSpace> q, View<T const, DeviceSpace> kv, View<T, DeviceSpace> out,
                              AttentionScores<T, DeviceSpace> const& sc, bool write_out) {
  std::int64_t const w = d.width(), dh = d.head_dim, n = d.tq * d.tk;
  ScoredAttentionScratch const s = scored_attention_scratch<T>(ctx, d, sc, false, false, false);
  T* probs = static_cast<T*>(s.probs);
  for (std::int64_t b = 0; b < d.batch; ++b) {
    scored_attention_probs<T>(ctx, d, mask, scale, q, kv, sc, s, b);
    if (!sc.key_mass.empty())  // mass[b, h, :] = ones^T P[h] (column sums; masked entries are zero)
      ops::gemm_strided_batched<T>(ctx, d.heads, Trans::kNo, {static_cast<T const*>(s.ones), 1, d.tq, d.tq}, d.tq,
                                   Trans::kNo, {probs, d.tq, d.tk, d.tk}, n,
                                   {sc.key_mass.data + b * d.heads * d.tk, 1, d.tk, d.tk}, d.tk, T(1), T(0));
    if (write_out) {  // out = P V (P' V with attention dropout: P dropped in place, after the key mass)
      if (sc.drops()) {
        View<T, DeviceSpace> pv(probs, Shape{d.heads, d.tq, d.tk});
        ops::dropout_forward<T>(ctx, pv, pv, sc.dropout, sc.dropout_key.sub(std::uint64_t(b)));
      }
      T const* vb = kv.data + b * d.kv_stride_rows() * 2 * w + w;
      ops::gemm_strided_batched<T>(ctx, d.heads, Trans::kNo, {probs, d.tq, d.tk, d.tk}, n, Trans::kNo,
                                   {vb, d.tk, dh, 2 * w}, dh, {out.data + b * d.tq * w, d.tq, dh, w}, dh, T(1), T(0));
    }
  }
}

/// Backward with a score bias and/or score gradients (see attention_backward).
template <class T>
void scored_attention_backward(cuda::Context& ctx, AttentionDims const& d, AttentionMask mask, T scale,
                               View<T const, DeviceSpace> q, View<T const, DeviceSpace> kv,
                               View<T const, DeviceSpace> dout, View<T, DeviceSpace> dq, View<T, DeviceSpace> dkv,
                               AttentionScores<T, DeviceSpace> const& sc,
                               AttentionScoreGrads<T, DeviceSpace> const& dsc) {
  std::int64_t const w = d.width(), dh = d.head_dim, n = d.tq * d.tk, hn = d.heads * n, kvr = d.kv_stride_rows();
  bool const table_grad = !dsc.table.empty() && n > 0;
  bool const use_dsum = table_grad && d.batch > 1;
  ScoredAttentionScratch const s = scored_attention_scratch<T>(ctx, d, sc, true, table_grad, use_dsum);
  T* probs = static_cast<T*>(s.probs);
  T* ds = static_cast<T*>(s.dprob);
  View<T, DeviceSpace> pv(probs, Shape{d.heads, d.tq, d.tk}), dsv(ds, pv.shape);
  for (std::int64_t b = 0; b < d.batch; ++b) {
    scored_attention_probs<T>(ctx, d, mask, scale, q, kv, sc, s, b);
    T const* qb = q.data + b * d.tq * w;
    T const* kb = kv.data + b * kvr * 2 * w;
    T const* vb = kb + w;
    T const* dob = dout.data + b * d.tq * w;
    T* dkb = dkv.data + b * kvr * 2 * w;
    // dP = dO V^T;  dV = P^T dO (overwrites the first tk rows)
    ops::gemm_strided_batched<T>(ctx, d.heads, Trans::kNo, {dob, d.tq, dh, w}, dh, Trans::kYes, {vb, d.tk, dh, 2 * w},
                                 dh, {ds, d.tq, d.tk, d.tk}, n, T(1), T(0));
    if (sc.drops()) {
      // Attention dropout (the mask regenerated from its key): dP = (dO V^T) * keep / (1 - p); the
      // softmax backward below needs the undropped P, so dV = P'^T dO comes after it.
      ops::dropout_backward<T>(ctx, dsv, dsv, sc.dropout, sc.dropout_key.sub(std::uint64_t(b)));
    } else {
      ops::gemm_strided_batched<T>(ctx, d.heads, Trans::kYes, {probs, d.tq, d.tk, d.tk}, n, Trans::kNo,
                                   {dob, d.tq, dh, w}, dh, {dkb + w, d.tk, dh, 2 * w}, dh, T(1), T(0));
    }
    // dS = dL/dlogits = P (dP - rowsum(P dP)) over the visible keys, zero where masked (in place).
    ops::softmax_backward<T>(ctx, pv, dsv, dsv, mask, T(1), d.prefix);
    if (sc.drops()) {  // P' = P * keep / (1 - p) in place (P is not needed after this), dV = P'^T dO
      ops::dropout_forward<T>(ctx, pv, pv, sc.dropout, sc.dropout_key.sub(std::uint64_t(b)));
      ops::gemm_strided_batched<T>(ctx, d.heads, Trans::kYes, {probs, d.tq, d.tk, d.tk}, n, Trans::kNo,
                                   {dob, d.tq, dh, w}, dh, {dkb + w, d.tk, dh, 2 * w}, dh, T(1), T(0));
    }
    if (!dsc.dense.empty()) ops::copy<T>(ctx, dsv, View<T, DeviceSpace>(dsc.dense.data + b * hn, pv.shape));
    if (use_dsum) {
      View<T, DeviceSpace> sumv(static_cast<T*>(s.dsum), pv.shape);
      if (b == 0)
        ops::copy<T>(ctx, dsv, sumv);
      else
        ops::add<T>(ctx, sumv, dsv, sumv);
    }
    // dQ = scale dS K;  dK = scale dS^T Q (overwrites the first tk rows)
    ops::gemm_strided_batched<T>(ctx, d.heads, Trans::kNo, {ds, d.tq, d.tk, d.tk}, n, Trans::kNo, {kb, d.tk, dh, 2 * w},
                                 dh, {dq.data + b * d.tq * w, d.tq, dh, w}, dh, scale, T(0));
    ops::gemm_strided_batched<T>(ctx, d.heads, Trans::kYes, {ds, d.tq, d.tk, d.tk}, n, Trans::kNo, {qb, d.tq, dh, w},
                                 dh, {dkb, d.tk, dh, 2 * w}, dh, scale, T(0));
  }
  if (table_grad) {  // dtable[h, k] += sum of dS[h] over the positions of distance k (run order: deterministic)
    HSEQ_CHECK(n <= 2147483647, "attention_backward (score bias): " << n << " scores exceed one grid");
    T const* src = use_dsum ? static_cast<T const*>(s.dsum) : ds;
    std::int64_t const dmax = dsc.table.size(1);
    for (std::int64_t h = 0; h < d.heads; ++h) {
      embedding_segments_kernel<T>
          <<<unsigned(n), 32, 0, ctx.stream()>>>(s.keys, s.pos, src + h * n, dsc.table.data + h * dmax, n, 1);
      HSEQ_CUDA_LAUNCH_CHECK("attention_backward (score bias table gradient)");
    }
  }
}

}  // namespace cuda_detail

/// out = softmax(mask(scale Q K^T)) V per head, flash-style; saves the row log-sum-exp in `stats`
/// ([B, H, Tq], see `attention_stats_shape(DeviceSpace{}, d)`).
///
/// Score biases (`sc.table`, `sc.dense`): a materialising path instead of the flash kernels, composed
/// of existing ops (no kernel of its own): per batch element, for all heads at once, the logits
/// [H, Tq, Tk] = scale Q K^T (cuBLAS, strided-batched over the heads) + the table bias (gathered once
/// per call by the embedding gather kernel from a host-built clamped-distance index) + dense[b]
/// (thrust add), then the masked softmax kernel (masked entries exactly zero) and out = P V
/// (cuBLAS). `stats` then holds no log-sum-exp: it is filled with NaN, and `attention_backward`
/// recomputes the probabilities (so it must get the same `sc`). The key mass alone keeps the flash
/// forward (and valid stats) and recomputes the unbiased probabilities only for the mass; the mass is
/// ones^T P per head (a cuBLAS GEMM, so it follows the context's GemmMath in float). Temporaries
/// (about 2 H Tq Tk elements, plus Tq Tk int32 with a table) live in the context's grow-only scratch
/// (`cuda::Context::scratch`): no allocation once it has grown. With a table the call synchronises
/// the stream once (upload of the index). Compiled and documented, not yet run on a GPU.
///
/// Attention dropout (`sc.dropout` > 0) also takes the materialising path: after the softmax (and
/// the key mass, which stays undropped) ops::dropout_forward drops batch element b's [H, Tq, Tk]
/// probabilities in place with key sc.dropout_key.sub(b) before out = P' V, the mask of the CPU
/// core (ops/attention.hpp); stats are NaN and backward regenerates P and the mask.
template <class T>
void attention_forward(cuda::Context& ctx, AttentionDims const& d, AttentionMask mask, T scale,
                       View<T const, DeviceSpace> q, View<T const, DeviceSpace> kv, View<T, DeviceSpace> out,
                       View<T, DeviceSpace> stats, AttentionScores<T, DeviceSpace> const& sc = {}) {
  detail::check_attention(d, q, kv, out, "attention_forward");
  detail::check_scores(d, sc, "attention_forward");
  HSEQ_CHECK(stats.shape == attention_stats_shape(DeviceSpace{}, d),
             "attention_forward: stats " << stats.shape << " is not [B, H, Tq] = " << attention_stats_shape(DeviceSpace{}, d));
  if (sc.has_bias() || sc.drops()) {
    if (d.batch * d.heads == 0) return;
    ops::fill<T>(ctx, stats, std::numeric_limits<T>::quiet_NaN());  // unused: backward recomputes P
    cuda_detail::scored_attention_forward<T>(ctx, d, mask, scale, q, kv, out, sc, true);
    return;
  }
  if (!sc.key_mass.empty() && d.batch * d.heads > 0)  // stream order: before the flash forward, same stream
    cuda_detail::scored_attention_forward<T>(ctx, d, mask, scale, q, kv, out, sc, false);
  if (d.batch * d.heads * d.tq == 0) return;
  auto args = cuda_detail::attn_args(d);
  cuda_detail::dispatch_head_dim(d.head_dim, "attention_forward", [&](auto kd) {
    constexpr int kD = decltype(kd)::value;
    constexpr int kBc = cuda_detail::attn_key_tile<T, kD>();
    dim3 grid = cuda_detail::attn_grid(d.tq, cuda_detail::kAttnRows, d.batch * d.heads, "attention_forward");
    if constexpr (std::is_same_v<T, float> && (kD == 32 || kD == 64)) {
      auto kernels = cuda_detail::attention_kernels(ctx);
      if (kernels == AttentionKernels::kMma) {
        auto launch = [&](auto kernel) {
          constexpr int kSmem = cuda_detail::mma_forward_smem<kD>();
          cuda_detail::allow_smem(kernel, kSmem);
          kernel<<<grid, cuda_detail::kMmaThreads, kSmem, ctx.stream()>>>(args, mask, scale, q.data, kv.data, out.data,
                                                                           stats.data);
          HSEQ_CUDA_LAUNCH_CHECK("attention_forward (mma)");
        };
        if (ctx.gemm_math() == GemmMath::kFp32) {
          ++ctx.kernel_counts_mut().attention_mma_3xtf32;
          launch(cuda_detail::flash_forward_mma_kernel<kD, true>);
        } else {
          ++ctx.kernel_counts_mut().attention_mma_tf32;
          launch(cuda_detail::flash_forward_mma_kernel<kD, false>);
        }
        return;
      }
      if (kernels == AttentionKernels::kTiled) {
        ++ctx.kernel_counts_mut().attention_tiled;
        constexpr int kSmem = cuda_detail::tiled_forward_smem<kD>();
        cuda_detail::allow_smem(cuda_detail::flash_forward_tiled_kernel<kD>, kSmem);
        cuda_detail::flash_forward_tiled_kernel<kD><<<grid, cuda_detail::kTiledThreads, kSmem, ctx.stream()>>>(
            args, mask, scale, q.data, kv.data, out.data, stats.data);
        HSEQ_CUDA_LAUNCH_CHECK("attention_forward (tiled)");
        return;
      }
    }
    ++ctx.kernel_counts_mut().attention_simple;
    cuda_detail::flash_forward_kernel<T, kD, kBc><<<grid, cuda_detail::kAttnRows, 0, ctx.stream()>>>(
        args, mask, scale, q.data, kv.data, out.data, stats.data);
    HSEQ_CUDA_LAUNCH_CHECK("attention_forward");
  });
}

/// Gradients of the attention core (dq and the first tk rows of dkv are overwritten). `out` and
/// `stats` are forward's output and saved log-sum-exp; `scratch` holds
/// `attention_backward_scratch(DeviceSpace{}, d)` elements.
///
/// With a score bias (`sc.has_bias()`) or score gradients (`dsc.any()`): the materialising path
/// (see attention_forward), which ignores `out`, `stats` and `scratch` (their shapes are still
/// checked) and recomputes P per batch element: dP = dO V^T, dV = P^T dO, dS = dL/dlogits by the
/// masked softmax backward kernel (zero where masked), dQ = scale dS K, dK = scale dS^T Q (cuBLAS).
/// `dsc.dense` [B, H, Tq, Tk] is overwritten with dS; `dsc.table` [H, D] is accumulated (+=) with
/// dS summed over the batch (thrust adds) and then over the positions of each clamped distance by
/// the embedding scatter-add kernel (runs of a host-built stable sort: deterministic, no atomics).
/// The key mass has no gradient: a call with only `sc.key_mass` runs the flash backward. With
/// attention dropout: dP = (dO V^T) * keep / (1 - p) (ops::dropout_backward), dS from the undropped
/// P, then P' = P * keep / (1 - p) in place and dV = P'^T dO.
/// Temporaries (about 3 H Tq Tk elements, 4 with a table gradient and B > 1, plus up to 3 Tq Tk
/// int32) live in the context's grow-only scratch. Compiled and documented, not yet run on a GPU.
template <class T>
void attention_backward(cuda::Context& ctx, AttentionDims const& d, AttentionMask mask, T scale,
                        View<T const, DeviceSpace> q, View<T const, DeviceSpace> kv, View<T const, DeviceSpace> out,
                        View<T const, DeviceSpace> stats, View<T const, DeviceSpace> dout, View<T, DeviceSpace> dq,
                        View<T, DeviceSpace> dkv, View<T, DeviceSpace> scratch,
                        AttentionScores<T, DeviceSpace> const& sc = {}, AttentionScoreGrads<T, DeviceSpace> const& dsc = {}) {
  detail::check_attention(d, q, kv, dq, "attention_backward");
  detail::check_scores(d, sc, "attention_backward");
  detail::check_score_grads(d, sc, dsc, "attention_backward");
  bool const scored = sc.has_bias() || sc.drops() || dsc.any();
  HSEQ_CHECK((scored && out.empty()) || out.shape == q.shape,
             "attention_backward: out " << out.shape << " differs from q " << q.shape
                                        << " (the CUDA backward needs forward's output)");
  HSEQ_CHECK(stats.shape == attention_stats_shape(DeviceSpace{}, d),
             "attention_backward: stats " << stats.shape << " is not [B, H, Tq]");
  HSEQ_CHECK(dout.shape == q.shape && dkv.shape == kv.shape,
             "attention_backward: dout " << dout.shape << " / dkv " << dkv.shape << " must match q " << q.shape
                                         << " / kv " << kv.shape);
  HSEQ_CHECK(scratch.numel() >= attention_backward_scratch(DeviceSpace{}, d),
             "attention_backward: scratch of " << scratch.numel() << " elements, need "
                                               << attention_backward_scratch(DeviceSpace{}, d));
  if (d.batch * d.heads == 0) return;
  if (scored) {
    cuda_detail::scored_attention_backward<T>(ctx, d, mask, scale, q, kv, dout, dq, dkv, sc, dsc);
    return;
  }
  auto args = cuda_detail::attn_args(d);
  std::int64_t bh = d.batch * d.heads;
  if (d.tq > 0) {
    cuda_detail::flash_rowdot_kernel<T><<<cuda_detail::grid_for(bh * d.tq), cuda_detail::kThreads, 0, ctx.stream()>>>(
        args, dout.data, out.data, scratch.data);
    HSEQ_CUDA_LAUNCH_CHECK("attention_backward (rowsum)");
  }
  cuda_detail::dispatch_head_dim(d.head_dim, "attention_backward", [&](auto kd) {
    constexpr int kD = decltype(kd)::value;
    constexpr int kBc = cuda_detail::attn_key_tile<T, kD>();
    if constexpr (std::is_same_v<T, float> && (kD == 32 || kD == 64)) {
      auto kernels = cuda_detail::attention_kernels(ctx);
      if (kernels == AttentionKernels::kMma) {
        auto launch = [&](auto dq_kernel, auto dkv_kernel) {
          constexpr int kSmemQ = cuda_detail::mma_dq_smem<kD>(), kSmemKv = cuda_detail::mma_dkv_smem<kD>();
          cuda_detail::allow_smem(dq_kernel, kSmemQ);
          cuda_detail::allow_smem(dkv_kernel, kSmemKv);
          if (d.tq > 0) {
            dim3 grid = cuda_detail::attn_grid(d.tq, cuda_detail::kMmaRows, bh, "attention_backward");
            dq_kernel<<<grid, cuda_detail::kMmaThreads, kSmemQ, ctx.stream()>>>(args, mask, scale, q.data, kv.data,
                                                                                stats.data, scratch.data, dout.data,
                                                                                dq.data);
            HSEQ_CUDA_LAUNCH_CHECK("attention_backward (mma dq)");
          }
          if (d.tk > 0) {
            dim3 grid = cuda_detail::attn_grid(d.tk, cuda_detail::kMmaRows, bh, "attention_backward");
            dkv_kernel<<<grid, cuda_detail::kMmaThreads, kSmemKv, ctx.stream()>>>(args, mask, scale, q.data, kv.data,
                                                                                  stats.data, scratch.data, dout.data,
                                                                                  dkv.data);
            HSEQ_CUDA_LAUNCH_CHECK("attention_backward (mma dk, dv)");
          }
        };
        if (ctx.gemm_math() == GemmMath::kFp32) {
          ++ctx.kernel_counts_mut().attention_mma_3xtf32;
          launch(cuda_detail::flash_dq_mma_kernel<kD, true>, cuda_detail::flash_dkv_mma_kernel<kD, true>);
        } else {
          ++ctx.kernel_counts_mut().attention_mma_tf32;
          launch(cuda_detail::flash_dq_mma_kernel<kD, false>, cuda_detail::flash_dkv_mma_kernel<kD, false>);
        }
        return;
      }
      if (kernels == AttentionKernels::kTiled) {
        ++ctx.kernel_counts_mut().attention_tiled;
        constexpr int kSmemQ = cuda_detail::tiled_dq_smem<kD>(), kSmemKv = cuda_detail::tiled_dkv_smem<kD>();
        cuda_detail::allow_smem(cuda_detail::flash_dq_tiled_kernel<kD>, kSmemQ);
        cuda_detail::allow_smem(cuda_detail::flash_dkv_tiled_kernel<kD>, kSmemKv);
        if (d.tq > 0) {
          dim3 grid = cuda_detail::attn_grid(d.tq, cuda_detail::kTileRows, bh, "attention_backward");
          cuda_detail::flash_dq_tiled_kernel<kD><<<grid, cuda_detail::kTiledThreads, kSmemQ, ctx.stream()>>>(
              args, mask, scale, q.data, kv.data, stats.data, scratch.data, dout.data, dq.data);
          HSEQ_CUDA_LAUNCH_CHECK("attention_backward (tiled dq)");
        }
        if (d.tk > 0) {
          dim3 grid = cuda_detail::attn_grid(d.tk, cuda_detail::kTileRows, bh, "attention_backward");
          cuda_detail::flash_dkv_tiled_kernel<kD><<<grid, cuda_detail::kTiledThreads, kSmemKv, ctx.stream()>>>(
              args, mask, scale, q.data, kv.data, stats.data, scratch.data, dout.data, dkv.data);
          HSEQ_CUDA_LAUNCH_CHECK("attention_backward (tiled dk, dv)");
        }
        return;
      }
    }
    ++ctx.kernel_counts_mut().attention_simple;
    if (d.tq > 0) {
      dim3 grid = cuda_detail::attn_grid(d.tq, cuda_detail::kAttnRows, bh, "attention_backward");
      cuda_detail::flash_dq_kernel<T, kD, kBc><<<grid, cuda_detail::kAttnRows, 0, ctx.stream()>>>(
          args, mask, scale, q.data, kv.data, stats.data, scratch.data, dout.data, dq.data);
      HSEQ_CUDA_LAUNCH_CHECK("attention_backward (dq)");
    }
    if (d.tk > 0) {
      constexpr int kRows = cuda_detail::attn_dkv_rows<T, kD>();
      constexpr int kBq = cuda_detail::attn_dkv_query_tile<T, kD>();
      dim3 grid = cuda_detail::attn_grid(d.tk, kRows, bh, "attention_backward");
      cuda_detail::flash_dkv_kernel<T, kD, kRows, kBq><<<grid, kRows, 0, ctx.stream()>>>(
          args, mask, scale, q.data, kv.data, stats.data, scratch.data, dout.data, dkv.data);
      HSEQ_CUDA_LAUNCH_CHECK("attention_backward (dk, dv)");
    }
  });
}

}  // namespace hseq::ops
