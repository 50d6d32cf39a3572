// SPDX-License-Identifier: MIT
/// @file
/// @brief Tensor-core flash attention kernels (forward, dQ, dK/dV) for float with head sizes 32 and 64.
///
/// The same algorithm as attention.cuh and attention_tiled.cuh, with every product on the tensor
/// cores through `mma.sync.m16n8k8` TF32. Each warp owns 16 rows (queries in forward and dQ, keys in
/// dK/dV); operands are staged in padded shared memory so fragment loads are conflict-free.
///
/// Precision: with kSplit each product uses the 3xTF32 split (a = a_hi + a_lo with both
/// parts TF32; a*b ~ a_hi*b_hi + a_hi*b_lo + a_lo*b_hi), which keeps fp32 accuracy (the dropped
/// a_lo*b_lo term is ~2^-22 relative) at three tensor-core MMAs per product; without it, one TF32
/// MMA of operands rounded to TF32 when staged (what the TF32/bf16 GEMM modes use). Both are the
/// default for float head sizes 17..64 (docs/performance.md compares them with the SIMT kernels).
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "hseq/ops/attention_mask.hpp"
#include "hseq/ops/cuda/attention_tiled.cuh"
#include "hseq/ops/cuda/launch.cuh"

namespace hseq::ops::cuda_detail {

inline constexpr int kMmaThreads = 128;  // 4 warps
inline constexpr int kMmaRows = 64;      // rows per block: 16 per warp
inline constexpr int kMmaCols = 32;      // columns per tile (keys in forward/dQ, queries in dK/dV)
inline constexpr int kMmaLdP = kMmaCols + 4;

__device__ inline std::uint32_t tf32_bits(float x) {
  std::uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}
__device__ inline void mma_tf32_raw(float (&c)[4], std::uint32_t const (&a)[4], std::uint32_t const (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
/// Rounds to TF32 (round to nearest, ties away), returned as a float whose low 13 bits are zero.
__device__ inline float tf32_round(float x) { return __uint_as_float(tf32_bits(x)); }

/// c += a * b on a 16x8x8 tile. kSplit: 3xTF32 (fp32 accuracy), splitting the fp32 operands here.
/// Otherwise one TF32 product of operands that were already rounded to TF32 when they were staged
/// (`stage_rows<false>` and the P/dS stores), so the inner loop has no conversions.
template <bool kSplit>
__device__ inline void mma_f32(float (&c)[4], float const (&a)[4], float const (&b)[2]) {
  std::uint32_t ah[4], bh[2];
  if constexpr (kSplit) {
#pragma unroll
    for (int i = 0; i < 4; ++i) ah[i] = tf32_bits(a[i]);
#pragma unroll
    for (int i = 0; i < 2; ++i) bh[i] = tf32_bits(b[i]);
    std::uint32_t al[4], bl[2];
#pragma unroll
    for (int i = 0; i < 4; ++i) al[i] = tf32_bits(a[i] - __uint_as_float(ah[i]));
#pragma unroll
    for (int i = 0; i < 2; ++i) bl[i] = tf32_bits(b[i] - __uint_as_float(bh[i]));
    mma_tf32_raw(c, al, bh);  // small terms first
    mma_tf32_raw(c, ah, bl);
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) ah[i] = __float_as_uint(a[i]);
#pragma unroll
    for (int i = 0; i < 2; ++i) bh[i] = __float_as_uint(b[i]);
  }
  mma_tf32_raw(c, ah, bh);
}
/// What a kernel stores into shared memory for a later MMA: as is (3xTF32 splits it at the MMA),
/// or rounded to TF32 once.
template <bool kSplit>
__device__ inline float mma_operand(float x) {
  if constexpr (kSplit) return x;
  else return tf32_round(x);
}

/// A fragment of the 16x8 block A[r][k0 + k] with A[r][k] = base[r * ld + k].
__device__ inline void frag_a(float (&a)[4], float const* base, int ld, int k0) {
  int const g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  a[0] = base[g * ld + k0 + t];
  a[1] = base[(g + 8) * ld + k0 + t];
  a[2] = base[g * ld + k0 + t + 4];
  a[3] = base[(g + 8) * ld + k0 + t + 4];
}
/// B fragment of the 8x8 block B[k0 + k][n0 + n] with B[k][n] = base[n * ld + k] (n-major storage).
__device__ inline void frag_b_nk(float (&b)[2], float const* base, int ld, int n0, int k0) {
  int const g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  b[0] = base[(n0 + g) * ld + k0 + t];
  b[1] = base[(n0 + g) * ld + k0 + t + 4];
}
/// B fragment with B[k][n] = base[k * ld + n] (k-major storage).
__device__ inline void frag_b_kn(float (&b)[2], float const* base, int ld, int k0, int n0) {
  int const g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  b[0] = base[(k0 + t) * ld + n0 + g];
  b[1] = base[(k0 + t + 4) * ld + n0 + g];
}
__device__ inline float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ inline float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
/// Rows [first, first + n) of src (row stride ld) into dst (row stride ldd), columns < dh, times
/// mul, as MMA operands (`mma_operand`); zeros outside. 16-byte loads when every row is aligned.
template <bool kSplit>
__device__ inline void stage_rows(float* dst, int ldd, float const* src, std::int64_t ld, std::int64_t first,
                                  std::int64_t rows, std::int64_t dh, int n, int kd, float mul) {
  bool const vec = (dh % 4 == 0) && (ld % 4 == 0) && (reinterpret_cast<std::uintptr_t>(src) % 16 == 0);
  if (vec) {
    int const q4 = kd / 4;
    for (int e = threadIdx.x; e < n * q4; e += kMmaThreads) {
      int r = e / q4, d = (e % q4) * 4;
      std::int64_t i = first + r;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (i < rows && d < dh) v = *reinterpret_cast<float4 const*>(src + i * ld + d);
      *reinterpret_cast<float4*>(dst + r * ldd + d) =
          make_float4(mma_operand<kSplit>(v.x * mul), mma_operand<kSplit>(v.y * mul), mma_operand<kSplit>(v.z * mul),
                      mma_operand<kSplit>(v.w * mul));
    }
    return;
  }
  for (int e = threadIdx.x; e < n * kd; e += kMmaThreads) {
    int r = e / kd, d = e % kd;
    std::int64_t i = first + r;
    dst[r * ldd + d] = (i < rows && d < dh) ? mma_operand<kSplit>(src[i * ld + d] * mul) : 0.f;
  }
}

template <int kD>
constexpr int mma_forward_smem() {
  return int(sizeof(float)) * (kMmaRows * (kD + 4) + kMmaCols * (kD + 4) + kMmaCols * (kD + 8) + 4 * 16 * kMmaLdP);
}
template <int kD>
constexpr int mma_dq_smem() {
  return int(sizeof(float)) * (2 * kMmaRows * (kD + 4) + 2 * kMmaCols * (kD + 4) + 4 * 16 * kMmaLdP);
}
template <int kD>
constexpr int mma_dkv_smem() {
  return int(sizeof(float)) * (2 * kMmaRows * (kD + 4) + 2 * kMmaCols * (kD + 4) + 2 * 4 * 16 * kMmaLdP) +
         3 * kMmaCols * int(sizeof(float));
}

template <int kD, bool kSplit>
__global__ void __launch_bounds__(kMmaThreads) flash_forward_mma_kernel(AttnArgs a, AttentionMask mask, float scale,
                                                                        float const* __restrict__ q,
                                                                        float const* __restrict__ kv,
                                                                        float* __restrict__ out,
                                                                        float* __restrict__ lse) {
  constexpr int kLdQ = kD + 4, kLdK = kD + 4, kLdV = kD + 8, kNt = kD / 8, kKs = kD / 8;
  extern __shared__ float4 smem4[];
  float* qs = reinterpret_cast<float*>(smem4);  // [64][kD+4]  scaled queries
  float* ks = qs + kMmaRows * kLdQ;             // [32][kD+4]  keys
  float* vs = ks + kMmaCols * kLdK;             // [32][kD+8]  values
  int const warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  float* ps = vs + kMmaCols * kLdV + warp * 16 * kMmaLdP;  // [16][36] this warp's probabilities
  std::int64_t const p = blockIdx.y, b = p / a.heads, h = p % a.heads;
  std::int64_t const i0 = (std::int64_t(gridDim.x) - 1 - blockIdx.x) * kMmaRows;
  float const* kbase = kv + b * a.kv_rows * 2 * a.w + h * a.dh;
  stage_rows<kSplit>(qs, kLdQ, q + b * a.tq * a.w + h * a.dh, a.w, i0, a.tq, a.dh, kMmaRows, kD, scale);
  std::int64_t const ra = i0 + warp * 16 + g, rb = ra + 8;
  std::int64_t const visa = ra < a.tq ? mask.visible(ra, a.tk, a.prefix) : 0;
  std::int64_t const visb = rb < a.tq ? mask.visible(rb, a.tk, a.prefix) : 0;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, o[kNt][4];
#pragma unroll
  for (int n = 0; n < kNt; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  std::int64_t const last = (i0 + kMmaRows < a.tq ? i0 + kMmaRows : a.tq) - 1;
  std::int64_t const kend = mask.visible(last, a.tk, a.prefix);
  __syncthreads();
  float qf[kKs][4];
#pragma unroll
  for (int k = 0; k < kKs; ++k) frag_a(qf[k], qs + warp * 16 * kLdQ, kLdQ, k * 8);
  for (std::int64_t j0 = 0; j0 < kend; j0 += kMmaCols) {
    __syncthreads();
    stage_rows<kSplit>(ks, kLdK, kbase, 2 * a.w, j0, kend, a.dh, kMmaCols, kD, 1.f);
    stage_rows<kSplit>(vs, kLdV, kbase + a.w, 2 * a.w, j0, kend, a.dh, kMmaCols, kD, 1.f);
    __syncthreads();
    float s[4][4];
#pragma unroll
    for (int n = 0; n < 4; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int k = 0; k < kKs; ++k)
#pragma unroll
      for (int n = 0; n < 4; ++n) {
        float bf[2];
        frag_b_nk(bf, ks, kLdK, n * 8, k * 8);
        mma_f32<kSplit>(s[n], qf[k], bf);
      }
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < 4; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        std::int64_t key = j0 + n * 8 + 2 * t + (e & 1);
        if (key >= (e < 2 ? visa : visb)) s[n][e] = -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
      }
    float corr[2], rs[2] = {0.f, 0.f}, mn[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mn[r] = fmaxf(m[r], quad_max(mx[r]));
      corr[r] = mn[r] == -INFINITY ? 1.f : __expf(m[r] - mn[r]);
    }
#pragma unroll
    for (int n = 0; n < 4; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        int r = e >> 1;
        float pv = mn[r] == -INFINITY ? 0.f : __expf(s[n][e] - mn[r]);
        s[n][e] = pv;
        rs[r] += pv;
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l[r] = l[r] * corr[r] + quad_sum(rs[r]);
      m[r] = mn[r];
    }
#pragma unroll
    for (int n = 0; n < kNt; ++n) {
      o[n][0] *= corr[0];
      o[n][1] *= corr[0];
      o[n][2] *= corr[1];
      o[n][3] *= corr[1];
    }
#pragma unroll
    for (int n = 0; n < 4; ++n) {
      *reinterpret_cast<float2*>(ps + g * kMmaLdP + n * 8 + 2 * t) = make_float2(mma_operand<kSplit>(s[n][0]), mma_operand<kSplit>(s[n][1]));
      *reinterpret_cast<float2*>(ps + (g + 8) * kMmaLdP + n * 8 + 2 * t) = make_float2(mma_operand<kSplit>(s[n][2]), mma_operand<kSplit>(s[n][3]));
    }
    __syncwarp();
#pragma unroll
    for (int k = 0; k < kMmaCols / 8; ++k) {
      float af[4];
      frag_a(af, ps, kMmaLdP, k * 8);
#pragma unroll
      for (int n = 0; n < kNt; ++n) {
        float bf[2];
        frag_b_kn(bf, vs, kLdV, k * 8, n * 8);
        mma_f32<kSplit>(o[n], af, bf);
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    std::int64_t i = r == 0 ? ra : rb;
    if (i >= a.tq) continue;
    float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
    float* orow = out + (b * a.tq + i) * a.w + h * a.dh;
#pragma unroll
    for (int n = 0; n < kNt; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        int col = n * 8 + 2 * t + e;
        if (col < a.dh) orow[col] = o[n][2 * r + e] * inv;
      }
    if (t == 0) lse[p * a.tq + i] = l[r] > 0.f ? m[r] + logf(l[r]) : -INFINITY;
  }
}

template <int kD, bool kSplit>
__global__ void __launch_bounds__(kMmaThreads) flash_dq_mma_kernel(AttnArgs a, AttentionMask mask, float scale,
                                                                   float const* __restrict__ q,
                                                                   float const* __restrict__ kv,
                                                                   float const* __restrict__ lse,
                                                                   float const* __restrict__ dd,
                                                                   float const* __restrict__ dout,
                                                                   float* __restrict__ dq) {
  constexpr int kLd = kD + 4, kNt = kD / 8, kKs = kD / 8;
  extern __shared__ float4 smem4[];
  float* qs = reinterpret_cast<float*>(smem4);  // [64][kD+4] scaled queries
  float* dos = qs + kMmaRows * kLd;             // [64][kD+4] dO
  float* ks = dos + kMmaRows * kLd;             // [32][kD+4] keys
  float* vs = ks + kMmaCols * kLd;              // [32][kD+4] values
  int const warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  float* dss = vs + kMmaCols * kLd + warp * 16 * kMmaLdP;  // [16][36] this warp's dS
  std::int64_t const p = blockIdx.y, b = p / a.heads, h = p % a.heads;
  std::int64_t const i0 = (std::int64_t(gridDim.x) - 1 - blockIdx.x) * kMmaRows;
  float const* kbase = kv + b * a.kv_rows * 2 * a.w + h * a.dh;
  stage_rows<kSplit>(qs, kLd, q + b * a.tq * a.w + h * a.dh, a.w, i0, a.tq, a.dh, kMmaRows, kD, scale);
  stage_rows<kSplit>(dos, kLd, dout + b * a.tq * a.w + h * a.dh, a.w, i0, a.tq, a.dh, kMmaRows, kD, 1.f);
  std::int64_t const ra = i0 + warp * 16 + g, rb = ra + 8;
  std::int64_t const vis[2] = {ra < a.tq ? mask.visible(ra, a.tk, a.prefix) : 0,
                               rb < a.tq ? mask.visible(rb, a.tk, a.prefix) : 0};
  float const li[2] = {vis[0] > 0 ? lse[p * a.tq + ra] : 0.f, vis[1] > 0 ? lse[p * a.tq + rb] : 0.f};
  float const di[2] = {ra < a.tq ? dd[p * a.tq + ra] : 0.f, rb < a.tq ? dd[p * a.tq + rb] : 0.f};
  float acc[kNt][4];
#pragma unroll
  for (int n = 0; n < kNt; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
  std::int64_t const last = (i0 + kMmaRows < a.tq ? i0 + kMmaRows : a.tq) - 1;
  std::int64_t const kend = mask.visible(last, a.tk, a.prefix);
  __syncthreads();
  float qf[kKs][4], df[kKs][4];
#pragma unroll
  for (int k = 0; k < kKs; ++k) {
    frag_a(qf[k], qs + warp * 16 * kLd, kLd, k * 8);
    frag_a(df[k], dos + warp * 16 * kLd, kLd, k * 8);
  }
  for (std::int64_t j0 = 0; j0 < kend; j0 += kMmaCols) {
    __syncthreads();
    stage_rows<kSplit>(ks, kLd, kbase, 2 * a.w, j0, kend, a.dh, kMmaCols, kD, 1.f);
    stage_rows<kSplit>(vs, kLd, kbase + a.w, 2 * a.w, j0, kend, a.dh, kMmaCols, kD, 1.f);
    __syncthreads();
    float s[4][4], dp[4][4];
#pragma unroll
    for (int n = 0; n < 4; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.f;
#pragma unroll
    for (int k = 0; k < kKs; ++k)
#pragma unroll
      for (int n = 0; n < 4; ++n) {
        float bf[2];
        frag_b_nk(bf, ks, kLd, n * 8, k * 8);
        mma_f32<kSplit>(s[n], qf[k], bf);
        frag_b_nk(bf, vs, kLd, n * 8, k * 8);
        mma_f32<kSplit>(dp[n], df[k], bf);
      }
#pragma unroll
    for (int n = 0; n < 4; ++n) {
      float v[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        int r = e >> 1;
        std::int64_t key = j0 + n * 8 + 2 * t + (e & 1);
        float pr = key < vis[r] ? __expf(s[n][e] - li[r]) : 0.f;
        v[e] = pr * (dp[n][e] - di[r]);
      }
      *reinterpret_cast<float2*>(dss + g * kMmaLdP + n * 8 + 2 * t) = make_float2(mma_operand<kSplit>(v[0]), mma_operand<kSplit>(v[1]));
      *reinterpret_cast<float2*>(dss + (g + 8) * kMmaLdP + n * 8 + 2 * t) = make_float2(mma_operand<kSplit>(v[2]), mma_operand<kSplit>(v[3]));
    }
    __syncwarp();
#pragma unroll
    for (int k = 0; k < kMmaCols / 8; ++k) {
      float af[4];
      frag_a(af, dss, kMmaLdP, k * 8);
#pragma unroll
      for (int n = 0; n < kNt; ++n) {
        float bf[2];
        frag_b_kn(bf, ks, kLd, k * 8, n * 8);
        mma_f32<kSplit>(acc[n], af, bf);
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    std::int64_t i = r == 0 ? ra : rb;
    if (i >= a.tq) continue;
    float* row = dq + (b * a.tq + i) * a.w + h * a.dh;
#pragma unroll
    for (int n = 0; n < kNt; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        int col = n * 8 + 2 * t + e;
        if (col < a.dh) row[col] = acc[n][2 * r + e] * scale;
      }
  }
}

template <int kD, bool kSplit>
__global__ void __launch_bounds__(kMmaThreads) flash_dkv_mma_kernel(AttnArgs a, AttentionMask mask, float scale,
                                                                    float const* __restrict__ q,
                                                                    float const* __restrict__ kv,
                                                                    float const* __restrict__ lse,
                                                                    float const* __restrict__ dd,
                                                                    float const* __restrict__ dout,
                                                                    float* __restrict__ dkv) {
  constexpr int kLd = kD + 4, kNt = kD / 8, kKs = kD / 8;
  extern __shared__ float4 smem4[];
  float* kst = reinterpret_cast<float*>(smem4);  // [64][kD+4] keys
  float* vst = kst + kMmaRows * kLd;             // [64][kD+4] values
  float* qs = vst + kMmaRows * kLd;              // [32][kD+4] scaled queries of the tile
  float* dos = qs + kMmaCols * kLd;              // [32][kD+4] dO of the tile
  float* pts = dos + kMmaCols * kLd;             // [4][16][36] P^T per warp
  float* dsts = pts + 4 * 16 * kMmaLdP;          // [4][16][36] dS^T per warp
  float* lses = dsts + 4 * 16 * kMmaLdP;         // [32]
  float* dds = lses + kMmaCols;                  // [32]
  int* viss = reinterpret_cast<int*>(dds + kMmaCols);  // [32]
  int const warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  float* pt = pts + warp * 16 * kMmaLdP;
  float* dst = dsts + warp * 16 * kMmaLdP;
  std::int64_t const p = blockIdx.y, b = p / a.heads, h = p % a.heads;
  std::int64_t const j0 = std::int64_t(blockIdx.x) * kMmaRows;
  float const* kbase = kv + b * a.kv_rows * 2 * a.w + h * a.dh;
  float const* qbase = q + b * a.tq * a.w + h * a.dh;
  float const* dobase = dout + b * a.tq * a.w + h * a.dh;
  stage_rows<kSplit>(kst, kLd, kbase, 2 * a.w, j0, a.tk, a.dh, kMmaRows, kD, 1.f);
  stage_rows<kSplit>(vst, kLd, kbase + a.w, 2 * a.w, j0, a.tk, a.dh, kMmaRows, kD, 1.f);
  std::int64_t const ka = j0 + warp * 16 + g, kb = ka + 8;  // this thread's two key rows
  std::int64_t lo = 0, hi = a.tq;  // first query that sees key j0
  while (lo < hi) {
    std::int64_t mid = (lo + hi) / 2;
    if (mask.visible(mid, a.tk, a.prefix) > j0) hi = mid;
    else lo = mid + 1;
  }
  __syncthreads();
  float kf[kKs][4], vf[kKs][4];
#pragma unroll
  for (int k = 0; k < kKs; ++k) {
    frag_a(kf[k], kst + warp * 16 * kLd, kLd, k * 8);
    frag_a(vf[k], vst + warp * 16 * kLd, kLd, k * 8);
  }
  float dk[kNt][4], dv[kNt][4];
#pragma unroll
  for (int n = 0; n < kNt; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.f;
  for (std::int64_t i0 = lo; i0 < a.tq; i0 += kMmaCols) {
    __syncthreads();
    stage_rows<kSplit>(qs, kLd, qbase, a.w, i0, a.tq, a.dh, kMmaCols, kD, scale);
    stage_rows<kSplit>(dos, kLd, dobase, a.w, i0, a.tq, a.dh, kMmaCols, kD, 1.f);
    for (int c = threadIdx.x; c < kMmaCols; c += kMmaThreads) {
      std::int64_t i = i0 + c;
      std::int64_t vis = i < a.tq ? mask.visible(i, a.tk, a.prefix) : 0;
      viss[c] = int(vis);
      lses[c] = vis > 0 ? lse[p * a.tq + i] : 0.f;
      dds[c] = i < a.tq ? dd[p * a.tq + i] : 0.f;
    }
    __syncthreads();
    float s[4][4], dp[4][4];
#pragma unroll
    for (int n = 0; n < 4; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.f;
#pragma unroll
    for (int k = 0; k < kKs; ++k)
#pragma unroll
      for (int n = 0; n < 4; ++n) {
        float bf[2];
        frag_b_nk(bf, qs, kLd, n * 8, k * 8);
        mma_f32<kSplit>(s[n], kf[k], bf);  // S^T = K (scale Q)^T
        frag_b_nk(bf, dos, kLd, n * 8, k * 8);
        mma_f32<kSplit>(dp[n], vf[k], bf);  // dP^T = V dO^T
      }
#pragma unroll
    for (int n = 0; n < 4; ++n) {
      float pv[4], dv4[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        int qc = n * 8 + 2 * t + (e & 1);
        std::int64_t key = (e < 2) ? ka : kb;
        float pr = key < viss[qc] ? __expf(s[n][e] - lses[qc]) : 0.f;
        pv[e] = pr;
        dv4[e] = pr * (dp[n][e] - dds[qc]);
      }
      *reinterpret_cast<float2*>(pt + g * kMmaLdP + n * 8 + 2 * t) = make_float2(mma_operand<kSplit>(pv[0]), mma_operand<kSplit>(pv[1]));
      *reinterpret_cast<float2*>(pt + (g + 8) * kMmaLdP + n * 8 + 2 * t) = make_float2(mma_operand<kSplit>(pv[2]), mma_operand<kSplit>(pv[3]));
      *reinterpret_cast<float2*>(dst + g * kMmaLdP + n * 8 + 2 * t) = make_float2(mma_operand<kSplit>(dv4[0]), mma_operand<kSplit>(dv4[1]));
      *reinterpret_cast<float2*>(dst + (g + 8) * kMmaLdP + n * 8 + 2 * t) = make_float2(mma_operand<kSplit>(dv4[2]), mma_operand<kSplit>(dv4[3]));
    }
    __syncwarp();
#pragma unroll
    for (int k = 0; k < kMmaCols / 8; ++k) {
      float ap[4], ad[4];
      frag_a(ap, pt, kMmaLdP, k * 8);
      frag_a(ad, dst, kMmaLdP, k * 8);
#pragma unroll
      for (int n = 0; n < kNt; ++n) {
        float bf[2];
        frag_b_kn(bf, dos, kLd, k * 8, n * 8);
        mma_f32<kSplit>(dv[n], ap, bf);  // dV += P^T dO
        frag_b_kn(bf, qs, kLd, k * 8, n * 8);
        mma_f32<kSplit>(dk[n], ad, bf);  // dK += dS^T (scale Q)
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    std::int64_t j = r == 0 ? ka : kb;
    if (j >= a.tk) continue;
    float* row = dkv + (b * a.kv_rows + j) * 2 * a.w + h * a.dh;
#pragma unroll
    for (int n = 0; n < kNt; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        int col = n * 8 + 2 * t + e;
        if (col < a.dh) {
          row[col] = dk[n][2 * r + e];
          row[a.w + col] = dv[n][2 * r + e];
        }
      }
  }
}

}  // namespace hseq::ops::cuda_detail
