// SPDX-License-Identifier: MIT
/// @file
/// @brief Register-tiled fp32 flash attention kernels (forward, dQ, dK/dV) for head sizes 32 and 64.
///
/// Same algorithm and results (up to rounding) as the one-thread-per-row kernels in attention.cuh,
/// organised like a SIMT GEMM: 128 threads per block, each owning a 4 x 4 micro-tile of the score
/// tile and a 4 x (head/8) slice of the output, with operands staged in shared memory (transposed
/// where a thread reads a column), so every 16-byte shared load feeds 4 to 16 FMAs. Row statistics
/// of the online softmax are combined across the 8 threads of a row with warp shuffles.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "hseq/ops/attention_mask.hpp"
#include "hseq/ops/cuda/launch.cuh"

namespace hseq::ops::cuda_detail {

struct AttnArgs {
  std::int64_t batch, heads, tq, tk, dh, prefix, kv_rows, w;
};

inline constexpr int kTiledThreads = 128;
inline constexpr int kTileRows = 64;  // query rows (forward, dQ) or key rows (dK/dV) per block
inline constexpr int kTileCols = 32;  // key columns (forward, dQ) or query columns (dK/dV) per tile
inline constexpr int kTilePad = kTileCols + 4;

__device__ inline float row_max8(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 4));
}
__device__ inline float row_sum8(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  v += __shfl_xor_sync(0xffffffffu, v, 2);
  return v + __shfl_xor_sync(0xffffffffu, v, 4);
}
__device__ inline float f4(float4 v, int i) { return i == 0 ? v.x : (i == 1 ? v.y : (i == 2 ? v.z : v.w)); }

/// dst[d * n + r] = src row (first + r), column d, times mul (0 outside [0, rows) x [0, dh)).
__device__ inline void load_transposed(float* dst, float const* src, std::int64_t ld, std::int64_t first,
                                       std::int64_t rows, std::int64_t dh, int n, int kd, float mul) {
  for (int e = threadIdx.x; e < n * kd; e += kTiledThreads) {
    int r = e % n, d = e / n;
    std::int64_t i = first + r;
    dst[d * n + r] = (i < rows && d < dh) ? src[i * ld + d] * mul : 0.f;
  }
}
/// dst[r * kd + d] = src row (first + r), column d, times mul.
__device__ inline void load_rows(float* dst, float const* src, std::int64_t ld, std::int64_t first, std::int64_t rows,
                                 std::int64_t dh, int n, int kd, float mul) {
  for (int e = threadIdx.x; e < n * kd; e += kTiledThreads) {
    int r = e / kd, d = e % kd;
    std::int64_t i = first + r;
    dst[r * kd + d] = (i < rows && d < dh) ? src[i * ld + d] * mul : 0.f;
  }
}

/// s[r][c] = sum_d a[d][ra + r] * b[d][cb + c] (a: [kD][na], b: [kD][nb], both transposed tiles).
template <int kD>
__device__ inline void micro_gemm_tt(float (&s)[4][4], float const* a, int na, int ra, float const* b, int nb, int cb) {
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int c = 0; c < 4; ++c) s[r][c] = 0.f;
#pragma unroll 8
  for (int d = 0; d < kD; ++d) {
    float4 x = *reinterpret_cast<float4 const*>(a + d * na + ra);
    float4 y = *reinterpret_cast<float4 const*>(b + d * nb + cb);
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) s[r][c] += f4(x, r) * f4(y, c);
  }
}

/// acc[r][c*4+e] += sum_j p[(rp + r) * kTilePad + j] * v[j * kD + c*32 + cv + e] over j < kTileCols.
template <int kD>
__device__ inline void micro_gemm_pv(float (&acc)[4][kD / 8], float const* p, int rp, float const* v, int cv) {
  constexpr int kC = kD / 32;
#pragma unroll 2
  for (int j = 0; j < kTileCols; j += 4) {
    float4 pr[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) pr[r] = *reinterpret_cast<float4 const*>(p + (rp + r) * kTilePad + j);
#pragma unroll
    for (int jj = 0; jj < 4; ++jj)
#pragma unroll
      for (int c = 0; c < kC; ++c) {
        float4 x = *reinterpret_cast<float4 const*>(v + (j + jj) * kD + c * 32 + cv);
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          float pv = f4(pr[r], jj);
          acc[r][c * 4 + 0] += pv * x.x;
          acc[r][c * 4 + 1] += pv * x.y;
          acc[r][c * 4 + 2] += pv * x.z;
          acc[r][c * 4 + 3] += pv * x.w;
        }
      }
  }
}

template <int kD>
constexpr int tiled_forward_smem() {
  return int(sizeof(float)) * (kD * kTileRows + 2 * kD * kTileCols + kTileRows * kTilePad);
}
template <int kD>
constexpr int tiled_dq_smem() {
  return int(sizeof(float)) * (2 * kD * kTileRows + 3 * kD * kTileCols + kTileRows * kTilePad);
}
template <int kD>
constexpr int tiled_dkv_smem() {
  return int(sizeof(float)) * (2 * kD * kTileRows + 4 * kD * kTileCols + 2 * kTileRows * kTilePad + 3 * kTileCols);
}

template <int kD>
__global__ void __launch_bounds__(kTiledThreads) flash_forward_tiled_kernel(AttnArgs a, AttentionMask mask, float scale,
                                                                            float const* __restrict__ q,
                                                                            float const* __restrict__ kv,
                                                                            float* __restrict__ out,
                                                                            float* __restrict__ lse) {
  constexpr int kC = kD / 32;
  extern __shared__ float4 smem4[];
  float* qt = reinterpret_cast<float*>(smem4);  // [kD][64]   scaled queries, transposed
  float* kt = qt + kD * kTileRows;              // [kD][32]   keys, transposed
  float* vs = kt + kD * kTileCols;              // [32][kD]   values
  float* ps = vs + kTileCols * kD;              // [64][36]   probabilities of the tile
  int const tid = threadIdx.x, ty = tid / 8, tx = tid % 8;
  std::int64_t const p = blockIdx.y, b = p / a.heads, h = p % a.heads;
  std::int64_t const i0 = (std::int64_t(gridDim.x) - 1 - blockIdx.x) * kTileRows;  // heaviest blocks first
  float const* kbase = kv + b * a.kv_rows * 2 * a.w + h * a.dh;
  load_transposed(qt, q + b * a.tq * a.w + h * a.dh, a.w, i0, a.tq, a.dh, kTileRows, kD, scale);
  std::int64_t vis[4];
  float m[4], l[4], acc[4][kD / 8];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    std::int64_t i = i0 + ty * 4 + r;
    vis[r] = i < a.tq ? mask.visible(i, a.tk, a.prefix) : 0;
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int c = 0; c < kD / 8; ++c) acc[r][c] = 0.f;
  }
  std::int64_t const last = (i0 + kTileRows < a.tq ? i0 + kTileRows : a.tq) - 1;
  std::int64_t const kend = mask.visible(last, a.tk, a.prefix);
  for (std::int64_t j0 = 0; j0 < kend; j0 += kTileCols) {
    __syncthreads();
    load_transposed(kt, kbase, 2 * a.w, j0, kend, a.dh, kTileCols, kD, 1.f);
    load_rows(vs, kbase + a.w, 2 * a.w, j0, kend, a.dh, kTileCols, kD, 1.f);
    __syncthreads();
    float s[4][4];
    micro_gemm_tt<kD>(s, qt, kTileRows, ty * 4, kt, kTileCols, tx * 4);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        if (j0 + tx * 4 + c >= vis[r]) s[r][c] = -INFINITY;
        mx = fmaxf(mx, s[r][c]);
      }
      float mn = fmaxf(m[r], row_max8(mx));
      float corr = mn == -INFINITY ? 1.f : __expf(m[r] - mn);
      float rs = 0.f;
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        s[r][c] = mn == -INFINITY ? 0.f : __expf(s[r][c] - mn);
        rs += s[r][c];
      }
      l[r] = l[r] * corr + row_sum8(rs);
      m[r] = mn;
#pragma unroll
      for (int c = 0; c < kD / 8; ++c) acc[r][c] *= corr;
      *reinterpret_cast<float4*>(ps + (ty * 4 + r) * kTilePad + tx * 4) = make_float4(s[r][0], s[r][1], s[r][2], s[r][3]);
    }
    __syncthreads();
    micro_gemm_pv<kD>(acc, ps, ty * 4, vs, tx * 4);
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    std::int64_t i = i0 + ty * 4 + r;
    if (i >= a.tq) continue;
    float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
    float* orow = out + (b * a.tq + i) * a.w + h * a.dh;
#pragma unroll
    for (int c = 0; c < kC; ++c)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        int col = c * 32 + tx * 4 + e;
        if (col < a.dh) orow[col] = acc[r][c * 4 + e] * inv;
      }
    if (tx == 0) lse[p * a.tq + i] = l[r] > 0.f ? m[r] + logf(l[r]) : -INFINITY;
  }
}

template <int kD>
__global__ void __launch_bounds__(kTiledThreads) flash_dq_tiled_kernel(AttnArgs a, AttentionMask mask, float scale,
                                                                       float const* __restrict__ q,
                                                                       float const* __restrict__ kv,
                                                                       float const* __restrict__ lse,
                                                                       float const* __restrict__ dd,
                                                                       float const* __restrict__ dout,
                                                                       float* __restrict__ dq) {
  constexpr int kC = kD / 32;
  extern __shared__ float4 smem4[];
  float* qt = reinterpret_cast<float*>(smem4);  // [kD][64] scaled queries, transposed
  float* dot = qt + kD * kTileRows;             // [kD][64] dO, transposed
  float* kt = dot + kD * kTileRows;             // [kD][32] keys, transposed
  float* vt = kt + kD * kTileCols;              // [kD][32] values, transposed
  float* ks = vt + kD * kTileCols;              // [32][kD] keys
  float* ds = ks + kTileCols * kD;              // [64][36] dS of the tile
  int const tid = threadIdx.x, ty = tid / 8, tx = tid % 8;
  std::int64_t const p = blockIdx.y, b = p / a.heads, h = p % a.heads;
  std::int64_t const i0 = (std::int64_t(gridDim.x) - 1 - blockIdx.x) * kTileRows;
  float const* kbase = kv + b * a.kv_rows * 2 * a.w + h * a.dh;
  load_transposed(qt, q + b * a.tq * a.w + h * a.dh, a.w, i0, a.tq, a.dh, kTileRows, kD, scale);
  load_transposed(dot, dout + b * a.tq * a.w + h * a.dh, a.w, i0, a.tq, a.dh, kTileRows, kD, 1.f);
  std::int64_t vis[4];
  float li[4], di[4], acc[4][kD / 8];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    std::int64_t i = i0 + ty * 4 + r;
    vis[r] = i < a.tq ? mask.visible(i, a.tk, a.prefix) : 0;
    li[r] = vis[r] > 0 ? lse[p * a.tq + i] : 0.f;
    di[r] = i < a.tq ? dd[p * a.tq + i] : 0.f;
#pragma unroll
    for (int c = 0; c < kD / 8; ++c) acc[r][c] = 0.f;
  }
  std::int64_t const last = (i0 + kTileRows < a.tq ? i0 + kTileRows : a.tq) - 1;
  std::int64_t const kend = mask.visible(last, a.tk, a.prefix);
  for (std::int64_t j0 = 0; j0 < kend; j0 += kTileCols) {
    __syncthreads();
    load_transposed(kt, kbase, 2 * a.w, j0, kend, a.dh, kTileCols, kD, 1.f);
    load_transposed(vt, kbase + a.w, 2 * a.w, j0, kend, a.dh, kTileCols, kD, 1.f);
    load_rows(ks, kbase, 2 * a.w, j0, kend, a.dh, kTileCols, kD, 1.f);
    __syncthreads();
    float s[4][4], dp[4][4];
    micro_gemm_tt<kD>(s, qt, kTileRows, ty * 4, kt, kTileCols, tx * 4);
    micro_gemm_tt<kD>(dp, dot, kTileRows, ty * 4, vt, kTileCols, tx * 4);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        bool ok = j0 + tx * 4 + c < vis[r];
        float pr = ok ? __expf(s[r][c] - li[r]) : 0.f;
        s[r][c] = pr * (dp[r][c] - di[r]);
      }
      *reinterpret_cast<float4*>(ds + (ty * 4 + r) * kTilePad + tx * 4) = make_float4(s[r][0], s[r][1], s[r][2], s[r][3]);
    }
    __syncthreads();
    micro_gemm_pv<kD>(acc, ds, ty * 4, ks, tx * 4);
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    std::int64_t i = i0 + ty * 4 + r;
    if (i >= a.tq) continue;
    float* row = dq + (b * a.tq + i) * a.w + h * a.dh;
#pragma unroll
    for (int c = 0; c < kC; ++c)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        int col = c * 32 + tx * 4 + e;
        if (col < a.dh) row[col] = acc[r][c * 4 + e] * scale;
      }
  }
}

template <int kD>
__global__ void __launch_bounds__(kTiledThreads) flash_dkv_tiled_kernel(AttnArgs a, AttentionMask mask, float scale,
                                                                        float const* __restrict__ q,
                                                                        float const* __restrict__ kv,
                                                                        float const* __restrict__ lse,
                                                                        float const* __restrict__ dd,
                                                                        float const* __restrict__ dout,
                                                                        float* __restrict__ dkv) {
  constexpr int kC = kD / 32;
  extern __shared__ float4 smem4[];
  float* kt = reinterpret_cast<float*>(smem4);  // [kD][64] keys, transposed
  float* vt = kt + kD * kTileRows;              // [kD][64] values, transposed
  float* qt = vt + kD * kTileRows;              // [kD][32] scaled queries, transposed
  float* dot = qt + kD * kTileCols;             // [kD][32] dO, transposed
  float* qs = dot + kD * kTileCols;             // [32][kD] scaled queries
  float* dos = qs + kTileCols * kD;             // [32][kD] dO
  float* pt = dos + kTileCols * kD;             // [64][36] P^T of the tile
  float* dst = pt + kTileRows * kTilePad;       // [64][36] dS^T of the tile
  float* lses = dst + kTileRows * kTilePad;     // [32]
  float* dds = lses + kTileCols;                // [32]
  float* viss = dds + kTileCols;                // [32] visible key counts (exact in float below 2^24)
  int const tid = threadIdx.x, ty = tid / 8, tx = tid % 8;
  std::int64_t const p = blockIdx.y, b = p / a.heads, h = p % a.heads;
  std::int64_t const j0 = std::int64_t(blockIdx.x) * kTileRows;
  float const* kbase = kv + b * a.kv_rows * 2 * a.w + h * a.dh;
  float const* qbase = q + b * a.tq * a.w + h * a.dh;
  float const* dobase = dout + b * a.tq * a.w + h * a.dh;
  load_transposed(kt, kbase, 2 * a.w, j0, a.tk, a.dh, kTileRows, kD, 1.f);
  load_transposed(vt, kbase + a.w, 2 * a.w, j0, a.tk, a.dh, kTileRows, kD, 1.f);
  // First query that sees key j0 (visible is non-decreasing in the query index).
  std::int64_t lo = 0, hi = a.tq;
  while (lo < hi) {
    std::int64_t mid = (lo + hi) / 2;
    if (mask.visible(mid, a.tk, a.prefix) > j0) hi = mid;
    else lo = mid + 1;
  }
  float dk[4][kD / 8], dv[4][kD / 8];
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int c = 0; c < kD / 8; ++c) dk[r][c] = dv[r][c] = 0.f;
  for (std::int64_t i0 = lo; i0 < a.tq; i0 += kTileCols) {
    __syncthreads();
    load_transposed(qt, qbase, a.w, i0, a.tq, a.dh, kTileCols, kD, scale);
    load_transposed(dot, dobase, a.w, i0, a.tq, a.dh, kTileCols, kD, 1.f);
    load_rows(qs, qbase, a.w, i0, a.tq, a.dh, kTileCols, kD, scale);
    load_rows(dos, dobase, a.w, i0, a.tq, a.dh, kTileCols, kD, 1.f);
    for (int c = tid; c < kTileCols; c += kTiledThreads) {
      std::int64_t i = i0 + c;
      std::int64_t vis = i < a.tq ? mask.visible(i, a.tk, a.prefix) : 0;
      viss[c] = float(vis);
      lses[c] = vis > 0 ? lse[p * a.tq + i] : 0.f;
      dds[c] = i < a.tq ? dd[p * a.tq + i] : 0.f;
    }
    __syncthreads();
    float s[4][4], dp[4][4];
    micro_gemm_tt<kD>(s, kt, kTileRows, ty * 4, qt, kTileCols, tx * 4);   // S^T [keys, queries]
    micro_gemm_tt<kD>(dp, vt, kTileRows, ty * 4, dot, kTileCols, tx * 4);  // dP^T
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      float prow[4], dsrow[4];
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        int qc = tx * 4 + c;
        bool ok = float(j0 + ty * 4 + r) < viss[qc];
        float pr = ok ? __expf(s[r][c] - lses[qc]) : 0.f;
        prow[c] = pr;
        dsrow[c] = pr * (dp[r][c] - dds[qc]);
      }
      *reinterpret_cast<float4*>(pt + (ty * 4 + r) * kTilePad + tx * 4) = make_float4(prow[0], prow[1], prow[2], prow[3]);
      *reinterpret_cast<float4*>(dst + (ty * 4 + r) * kTilePad + tx * 4) =
          make_float4(dsrow[0], dsrow[1], dsrow[2], dsrow[3]);
    }
    __syncthreads();
    micro_gemm_pv<kD>(dv, pt, ty * 4, dos, tx * 4);  // dV += P^T dO
    micro_gemm_pv<kD>(dk, dst, ty * 4, qs, tx * 4);  // dK += dS^T (scale Q)
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    std::int64_t j = j0 + ty * 4 + r;
    if (j >= a.tk) continue;
    float* row = dkv + (b * a.kv_rows + j) * 2 * a.w + h * a.dh;
#pragma unroll
    for (int c = 0; c < kC; ++c)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        int col = c * 32 + tx * 4 + e;
        if (col < a.dh) {
          row[col] = dk[r][c * 4 + e];
          row[a.w + col] = dv[r][c * 4 + e];
        }
      }
  }
}

/// Opts a kernel into `bytes` of dynamic shared memory (a cheap attribute set; done per launch so
/// that it holds on whichever device is current).
template <class K>
void allow_smem(K kernel, int bytes) {
  if (bytes > 48 * 1024) HSEQ_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

}  // namespace hseq::ops::cuda_detail
