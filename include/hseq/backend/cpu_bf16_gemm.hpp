// SPDX-License-Identifier: MIT
/// @file
/// @brief The resources behind the CPU backend's bf16 GEMMs: fp32 -> bf16 rounding, the conversion
/// scratch, and with oneDNN (HSEQ_USE_DNNL) the cached matmul primitives that multiply bf16
/// operands with fp32 accumulation and output on AVX512-BF16 / AMX. ops/gemm.hpp composes them
/// into `ops::gemm` under `GemmMath::kBf16` (the math of `hseq::cpu_bf16`).
///
/// Two paths compute the same arithmetic (bf16 operands, fp32 products and sums):
/// - kOneDnn: oneDNN's matmul on bf16 copies of the operands, where this build has oneDNN and the
///   CPU has bf16 instructions (probed once per process by creating a small bf16 primitive);
/// - kEmulated: the operands rounded to bf16 and widened back, then the fp32 GEMM. No faster than
///   fp32 (slower by the rounding pass): it exists so that a cpu_bf16 program runs, and its
///   numerics can be tested, on any CPU. The environment variable HSEQ_CPU_BF16 chooses: "auto"
///   (or unset: oneDNN where available), "emulate", or "onednn" (an error where unavailable).
///
/// Why hooks: nvcc cannot parse oneDNN's header, and CUDA translation units include this one too.
/// Everything defined here for every compiler is identical in every translation unit; oneDNN's
/// part (the block at the end, host compilers only) registers its functions in
/// `detail::cpu_dnnl_hooks()` during static initialisation. A program with at least one host
/// translation unit that includes this header with HSEQ_USE_DNNL has oneDNN everywhere; one with
/// none (all CUDA) runs the emulation.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "hseq/backend/cpu.hpp"
#include "hseq/core/error.hpp"

namespace hseq {

/// Round-to-nearest-even of an fp32 value to bf16 (its upper 16 bits), as the hardware conversion
/// (VCVTNEPS2BF16) does: NaN stays a (quiet) NaN, values past bf16's largest finite become infinite.
inline std::uint16_t float_to_bf16(float f) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return std::uint16_t(u >> 16);
}
/// The fp32 value of a bf16 (exact).
inline float bf16_to_float(std::uint16_t h) { return std::bit_cast<float>(std::uint32_t(h) << 16); }
/// f rounded to the nearest bf16, as an fp32 value.
inline float round_to_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

/// How the CPU backend computes its bf16 GEMMs (see the file comment).
enum class CpuBf16Path { kOneDnn, kEmulated };

inline char const* cpu_bf16_path_name(CpuBf16Path p) { return p == CpuBf16Path::kOneDnn ? "onednn" : "emulated"; }

namespace detail {
/// oneDNN's functions, registered by the host-compiled block at the end of this header (null
/// without oneDNN). `matmul`: C[m, n] = alpha * op(A) * op(B) + beta * C with A stored [m, k]
/// (ta false) or [k, m] (ta true), leading dimension lda, B likewise [k, n] or [n, k]; operands
/// bf16 (`bf16`) or fp32; C fp32, not read when beta == 0.
struct CpuDnnlHooks {
  bool (*bf16_supported)() = nullptr;
  void* (*create)() = nullptr;
  void (*destroy)(void*) = nullptr;
  void (*matmul)(void* state, bool bf16, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k,
                 void const* a, std::int64_t lda, void const* b, std::int64_t ldb, float* c, std::int64_t ldc,
                 float alpha, float beta) = nullptr;
  char const* (*last_impl)(void const* state) = nullptr;
};
inline CpuDnnlHooks& cpu_dnnl_hooks() {
  static CpuDnnlHooks hooks;
  return hooks;
}
}  // namespace detail

/// Whether this program has oneDNN (a host translation unit built with HSEQ_USE_DNNL).
inline bool cpu_onednn_linked() noexcept { return detail::cpu_dnnl_hooks().matmul != nullptr; }

/// Whether this program has oneDNN and this CPU runs its bf16 matmul (probed once, then cached).
inline bool cpu_bf16_onednn_available() noexcept {
  static bool const ok = cpu_onednn_linked() && detail::cpu_dnnl_hooks().bf16_supported();
  return ok;
}

/// The path a new context takes: HSEQ_CPU_BF16 ("auto" or unset, "emulate", "onednn"). An unknown
/// value, or "onednn" where it is unavailable, throws: a benchmark must not silently measure the
/// emulation.
inline CpuBf16Path cpu_bf16_path_from_env() {
  char const* e = std::getenv("HSEQ_CPU_BF16");
  std::string_view v = e == nullptr ? "" : e;
  if (v.empty() || v == "auto") return cpu_bf16_onednn_available() ? CpuBf16Path::kOneDnn : CpuBf16Path::kEmulated;
  if (v == "emulate") return CpuBf16Path::kEmulated;
  if (v == "onednn") {
    char const* why = cpu_onednn_linked()
                          ? "this CPU has no AVX512-BF16 / AMX-BF16 instructions"
                          : "hseq was built without oneDNN: install libdnnl-dev and configure with HSEQ_USE_DNNL=ON";
    HSEQ_CHECK(cpu_bf16_onednn_available(),
               "environment variable HSEQ_CPU_BF16=onednn: oneDNN's bf16 matmul is not available here (" << why << ")");
    return CpuBf16Path::kOneDnn;
  }
  HSEQ_FAIL("environment variable HSEQ_CPU_BF16: unknown value '" << v << "' (known: auto, emulate, onednn)");
}

namespace detail {

/// The bf16 GEMM resources of one cpu::Context: conversion scratch (grows, never shrinks: after
/// the first training step nothing is allocated here) and, with oneDNN, one primitive per GEMM
/// shape with its argument memories, created on first use.
class CpuBf16Gemm {
 public:
  CpuBf16Gemm() : path_(cpu_bf16_path_from_env()) {}
  CpuBf16Gemm(CpuBf16Gemm const&) = delete;
  CpuBf16Gemm& operator=(CpuBf16Gemm const&) = delete;
  ~CpuBf16Gemm() {
    if (dnnl_ != nullptr) cpu_dnnl_hooks().destroy(dnnl_);
  }

  CpuBf16Path path() const { return path_; }
  /// Tests compare the two paths on one machine; kOneDnn throws where it is unavailable.
  void set_path(CpuBf16Path p) {
    HSEQ_CHECK(p != CpuBf16Path::kOneDnn || cpu_bf16_onednn_available(),
               "CpuBf16Gemm::set_path: oneDNN's bf16 matmul is not available in this build or on this CPU");
    path_ = p;
  }

  /// The [rows, cols] matrix at src (leading dimension ld) rounded to bf16, as a compact fp32
  /// matrix (leading dimension cols) in scratch `slot` (0 or 1, one per operand). Valid until the
  /// next call with the same slot.
  float const* rounded(int slot, float const* src, std::int64_t rows, std::int64_t cols, std::int64_t ld) {
    std::vector<float>& dst = rounded_[slot];
    grow(dst, rows * cols);
    float* out = dst.data();
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelElements)
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j) out[i * cols + j] = round_to_bf16(src[i * ld + j]);
    return out;
  }

  /// The [rows, cols] matrix at src (leading dimension ld) as compact bf16 in scratch `slot`.
  std::uint16_t const* to_bf16(int slot, float const* src, std::int64_t rows, std::int64_t cols, std::int64_t ld) {
    std::vector<std::uint16_t>& dst = half_[slot];
    grow(dst, rows * cols);
    std::uint16_t* out = dst.data();
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelElements)
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j) out[i * cols + j] = float_to_bf16(src[i * ld + j]);
    return out;
  }

  /// The transpose of the [rows, cols] matrix at src (leading dimension ld), converted: a compact
  /// bf16 [cols, rows] matrix, in 32 x 32 tiles so that both sides stay in cache lines.
  std::uint16_t const* to_bf16_transposed(int slot, float const* src, std::int64_t rows, std::int64_t cols,
                                          std::int64_t ld) {
    std::vector<std::uint16_t>& dst = half_[slot];
    grow(dst, rows * cols);
    std::uint16_t* out = dst.data();
    constexpr std::int64_t kTile = 32;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelElements)
    for (std::int64_t j0 = 0; j0 < cols; j0 += kTile)
      for (std::int64_t i0 = 0; i0 < rows; i0 += kTile)
        for (std::int64_t j = j0; j < std::min(j0 + kTile, cols); ++j)
          for (std::int64_t i = i0; i < std::min(i0 + kTile, rows); ++i) out[j * rows + i] = float_to_bf16(src[i * ld + j]);
    return out;
  }

  /// C[m, n] = alpha * op(A) * op(B) + beta * C by a oneDNN matmul (C is not read when beta == 0).
  /// A is stored [m, k] (ta false) or [k, m] (ta true) with leading dimension lda; B likewise
  /// [k, n] or [n, k]. With `bf16` the operands are first converted to compact bf16 copies; without,
  /// oneDNN multiplies the fp32 operands in place, which is how the tests check the strides,
  /// transposes and epilogue of this code on CPUs without bf16 instructions. Throws without oneDNN.
  void matmul(bool bf16, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, float const* a,
              std::int64_t lda, float const* b, std::int64_t ldb, float* c, std::int64_t ldc, float alpha, float beta) {
    HSEQ_CHECK(cpu_onednn_linked(), "CpuBf16Gemm::matmul: this program has no oneDNN (HSEQ_USE_DNNL)");
    if (dnnl_ == nullptr) dnnl_ = cpu_dnnl_hooks().create();
    void const* ap = a;
    void const* bp = b;
    if (bf16) {
      // A is copied as op(A), row-major [m, k] (transposed while converting when ta): oneDNN's
      // brgemm kernels take the activations that way. B keeps its orientation ([k, n] or, as
      // nn::Linear's weights, [n, k]): both are weight layouts the kernels take.
      ap = ta ? to_bf16_transposed(0, a, k, m, lda) : to_bf16(0, a, m, k, lda);
      bp = to_bf16(1, b, tb ? n : k, tb ? k : n, ldb);
      ta = false;
      lda = k;
      ldb = tb ? k : n;
    }
    cpu_dnnl_hooks().matmul(dnnl_, bf16, ta, tb, m, n, k, ap, lda, bp, ldb, c, ldc, alpha, beta);
  }

  /// oneDNN's name of the implementation of the latest matmul ("brg:avx512_core_amx_bf16", ...;
  /// empty before the first): what the benchmarks print as the kernel that ran.
  char const* last_impl() const { return dnnl_ == nullptr ? "" : cpu_dnnl_hooks().last_impl(dnnl_); }

 private:
  static constexpr std::int64_t kParallelElements = std::int64_t(1) << 15;

  template <class V>
  static void grow(V& v, std::int64_t n) {
    if (std::int64_t(v.size()) < n) v.resize(std::size_t(n));
  }

  CpuBf16Path path_;
  std::vector<float> rounded_[2];
  std::vector<std::uint16_t> half_[2];
  void* dnnl_ = nullptr;  // oneDNN's state (primitives by shape), through cpu_dnnl_hooks()
};

/// The bf16 GEMM resources of ctx, created on its first bf16 GEMM.
inline CpuBf16Gemm& bf16_gemm_of(cpu::Context& ctx) {
  if (!ctx.bf16_gemm_)
    ctx.bf16_gemm_ = std::unique_ptr<CpuBf16Gemm, void (*)(CpuBf16Gemm*)>(new CpuBf16Gemm(),
                                                                           [](CpuBf16Gemm* p) { delete p; });
  return *ctx.bf16_gemm_;
}

}  // namespace detail
}  // namespace hseq

// ---------------------------------------------------------------------------------------------
// oneDNN's part: host compilers only (see the file comment).
#if defined(HSEQ_USE_DNNL) && !defined(__CUDACC__)
#include <map>
#include <tuple>
#include <unordered_map>

#include <oneapi/dnnl/dnnl.hpp>

namespace hseq::detail {

/// One oneDNN engine and stream, and a primitive per GEMM shape with its argument memories.
class CpuDnnlState {
 public:
  void matmul(bool bf16, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, void const* a,
              std::int64_t lda, void const* b, std::int64_t ldb, float* c, std::int64_t ldc, float alpha, float beta) {
    Key key{bf16, ta, tb, m, n, k, lda, ldb, ldc, alpha, beta};
    auto it = primitives_.find(key);
    if (it == primitives_.end()) it = primitives_.emplace(key, make_entry(key)).first;
    Entry& e = it->second;
    e.args.at(DNNL_ARG_SRC).set_data_handle(const_cast<void*>(a));
    e.args.at(DNNL_ARG_WEIGHTS).set_data_handle(const_cast<void*>(b));
    e.args.at(DNNL_ARG_DST).set_data_handle(c);
    if (scratchpad_.size() < e.scratchpad_bytes) scratchpad_.resize(e.scratchpad_bytes);
    e.args.at(DNNL_ARG_SCRATCHPAD).set_data_handle(scratchpad_.data());
    e.prim.execute(stream_, e.args);
    stream_.wait();
    last_impl_ = e.impl;
  }
  char const* last_impl() const { return last_impl_; }

  /// Whether oneDNN has a bf16 matmul for this CPU (creating its primitive descriptor throws if not).
  static bool bf16_supported() {
    try {
      using dnnl::memory;
      dnnl::engine eng(dnnl::engine::kind::cpu, 0);
      memory::desc a({16, 16}, memory::data_type::bf16, memory::format_tag::ab);
      memory::desc c({16, 16}, memory::data_type::f32, memory::format_tag::ab);
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, a, c), eng);
      (void)pd;
      return true;
    } catch (...) {  // dnnl::error "could not create a primitive descriptor": no bf16 kernels here
      return false;
    }
  }

 private:
  struct Key {
    bool bf16, ta, tb;
    std::int64_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
    auto tie() const { return std::tie(bf16, ta, tb, m, n, k, lda, ldb, ldc, alpha, beta); }
    bool operator<(Key const& o) const { return tie() < o.tie(); }
  };
  struct Entry {
    dnnl::matmul prim;
    std::unordered_map<int, dnnl::memory> args;  // kept: building it per call would allocate
    std::size_t scratchpad_bytes = 0;
    char const* impl = "";  // pd.impl_info_str(): a string oneDNN keeps for the primitive's life
  };

  Entry make_entry(Key const& key) {
    using dnnl::memory;
    memory::data_type op = key.bf16 ? memory::data_type::bf16 : memory::data_type::f32;
    // op(A) [m, k] and op(B) [k, n] as strided views of the stored matrices; C [m, n] row-major.
    memory::desc a_md({key.m, key.k}, op, key.ta ? memory::dims{1, key.lda} : memory::dims{key.lda, 1});
    memory::desc b_md({key.k, key.n}, op, key.tb ? memory::dims{1, key.ldb} : memory::dims{key.ldb, 1});
    memory::desc c_md({key.m, key.n}, memory::data_type::f32, memory::dims{key.ldc, 1});
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // our buffer: no allocation per call
    if (key.alpha != 1.0f) attr.set_output_scales(0, {key.alpha});
    if (key.beta != 0.0f) {  // dst = alpha * (A B) + beta * dst
      dnnl::post_ops po;
      po.append_sum(key.beta);
      attr.set_post_ops(po);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine_);
    Entry e{dnnl::matmul(pd), {}, pd.scratchpad_desc().get_size(), pd.impl_info_str()};
    e.args.emplace(DNNL_ARG_SRC, memory(a_md, engine_, DNNL_MEMORY_NONE));
    e.args.emplace(DNNL_ARG_WEIGHTS, memory(b_md, engine_, DNNL_MEMORY_NONE));
    e.args.emplace(DNNL_ARG_DST, memory(c_md, engine_, DNNL_MEMORY_NONE));
    e.args.emplace(DNNL_ARG_SCRATCHPAD, memory(pd.scratchpad_desc(), engine_, DNNL_MEMORY_NONE));
    return e;
  }

  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream_{engine_};
  std::map<Key, Entry> primitives_;
  std::vector<char> scratchpad_;
  char const* last_impl_ = "";
};

/// Registers oneDNN's functions in cpu_dnnl_hooks() (every host translation unit that includes
/// this header registers the same ones; the first does the work).
inline bool register_cpu_dnnl_hooks() {
  CpuDnnlHooks& h = cpu_dnnl_hooks();
  h.bf16_supported = &CpuDnnlState::bf16_supported;
  h.create = []() -> void* { return new CpuDnnlState(); };
  h.destroy = [](void* s) { delete static_cast<CpuDnnlState*>(s); };
  h.matmul = [](void* s, bool bf16, bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, void const* a,
                std::int64_t lda, void const* b, std::int64_t ldb, float* c, std::int64_t ldc, float alpha, float beta) {
    static_cast<CpuDnnlState*>(s)->matmul(bf16, ta, tb, m, n, k, a, lda, b, ldb, c, ldc, alpha, beta);
  };
  h.last_impl = [](void const* s) { return static_cast<CpuDnnlState const*>(s)->last_impl(); };
  return true;
}
inline bool const kCpuDnnlHooksRegistered = register_cpu_dnnl_hooks();

}  // namespace hseq::detail
#endif
