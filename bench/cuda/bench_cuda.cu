// SPDX-License-Identifier: MIT
// hseq_bench_cuda: GPU benchmarks of hseq's CUDA backend, one JSON object per line on stdout.
//
//   ceiling  device ceilings: device-to-device copy bandwidth (bytes read + written) and the GEMM
//            rate of ops::gemm at 8192^3 in fp32, TF32 and bf16 math
//   kernel   each op's achieved bandwidth (bytes it must move) or FLOP/s, as a fraction of the
//            measured ceilings
//   train    tokens/s of full training steps (forward + backward + AdamW through the models' own
//            forward/backward, as bench/bench_hourglass.cpp does) of TransformerLm and Hourglass
//            "2@1 4@4 2@1", and model FLOPs utilisation against the measured and datasheet peaks, in
//            every GEMM math (the configurations bench/peer_pytorch_gpu.py mirrors)
//   families the benchmark table of the programs' model families on the GPU: every case and shape
//            a family's trait declares (examples/families/<family>.hpp, `bench_cases()`; the same
//            list as hseq_bench_cpu's BM_family/...), built and trained as hseq-train-cuda does
//            (Family::bench_train), fp32 math. Only in a build with the CUDA programs
//            (-DHSEQ_BUILD_CUDA_EXAMPLES=ON: the families' CUDA library); elsewhere the section
//            says so and is skipped
//
// Every figure is measured with CUDA events on the context's stream: warm-up calls, then the
// median of the timed repetitions. Exits 77 without a usable CUDA device (like hseq_tests_cuda).
//
//   hseq_bench_cuda [--quick] [--sections ceiling,kernel,train,families] [--reps N] [--budget SECONDS]
//                   [--batches 16,8] [--models lm,hg_avg,hg_attn] [--maths fp32,tf32,bf16]
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "hseq/backend/cuda.hpp"
#include "hseq/core/tensor.hpp"
#include "hseq/core/workspace.hpp"
#include "hseq/hier/hierarchy.hpp"
#include "hseq/models/flops.hpp"
#include "hseq/models/hourglass.hpp"
#include "hseq/models/transformer_lm.hpp"
#include "hseq/nn/parameter.hpp"
#include "hseq/ops/adamw.hpp"
#include "hseq/ops/attention.hpp"
#include "hseq/ops/cross_entropy.hpp"
#include "hseq/ops/elementwise.hpp"
#include "hseq/ops/embedding.hpp"
#include "hseq/ops/gemm.hpp"
#include "hseq/ops/layer_norm.hpp"
#include "hseq/ops/mat.hpp"
#include "hseq/ops/softmax.hpp"
#include "hseq/train/adamw.hpp"

#if defined(HSEQ_BENCH_FAMILIES)
#include "family.hpp"  // examples/: the programs' family list (hseq_cli_cuda)
#endif

namespace {

using hseq::DeviceSpace;
using hseq::GemmMath;
using hseq::Shape;
using json = nlohmann::json;
using Ctx = hseq::cuda::Context;
template <class T>
using DTensor = hseq::Tensor<T, hseq::cuda>;
template <class T>
using DView = hseq::View<T, DeviceSpace>;
template <class T>
using DMat = hseq::ops::Mat<T, DeviceSpace>;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Options, output, budget
// ---------------------------------------------------------------------------------------------

struct Options {
  bool quick = false;
  bool ceiling = true, kernel = true, train = true, families = true;
  int reps = 10;
  double budget_s = 150;  // whole run; sections stop starting new cases past it
  std::vector<std::int64_t> batches{16, 8};
  std::vector<std::string> models{"lm", "hg_avg", "hg_attn"};
  std::vector<std::string> maths{"fp32", "tf32", "bf16"};
};

Options g_opt;
Clock::time_point g_start;

double elapsed_s() { return std::chrono::duration<double>(Clock::now() - g_start).count(); }
bool over_budget() { return elapsed_s() > g_opt.budget_s; }

void emit(json j) {
  j["t_s"] = std::round(elapsed_s() * 100) / 100;
  std::cout << j.dump() << "\n" << std::flush;
}

std::vector<std::string> split(std::string const& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

bool contains(std::vector<std::string> const& v, std::string const& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

[[noreturn]] void usage(int code) {
  std::printf(
      "usage: hseq_bench_cuda [--quick] [--sections ceiling,kernel,train,families] [--reps N] [--budget SECONDS]\n"
      "                       [--batches 16,8] [--models lm,hg_avg,hg_attn] [--maths fp32,tf32,bf16]\n"
      "  --quick     tiny sizes (a smoke run of every code path)\n"
      "  --sections  which sections to run (default: all; families only in a build with\n"
      "              -DHSEQ_BUILD_CUDA_EXAMPLES=ON)\n"
      "  --reps      timed repetitions per kernel case (median reported; default 10, --quick 3)\n"
      "  --budget    seconds for the whole run; past it no new case starts (default 150)\n"
      "  --batches   training batch sizes (default 16,8; --quick 2)\n"
      "  --models    training models: lm, hg_avg (AvgPool/Repeat), hg_attn (AttentionPool/AttentionUp)\n"
      "  --maths     GEMM math of kernel and training cases: fp32, tf32, bf16 (bf16 = hseq::cuda_bf16)\n"
      "Prints one JSON object per line; exits 77 when no CUDA device is usable.\n");
  std::exit(code);
}

Options parse(int argc, char** argv) {
  Options o;
  bool reps_set = false, batches_set = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      auto eq = a.find('=');
      if (eq != std::string::npos) return a.substr(eq + 1);
      if (i + 1 >= argc) usage(2);
      return argv[++i];
    };
    auto key = a.substr(0, a.find('='));
    if (key == "--help" || key == "-h") usage(0);
    else if (key == "--quick") o.quick = true;
    else if (key == "--sections") {
      auto s = split(value());
      o.ceiling = contains(s, "ceiling") || contains(s, "ceilings");
      o.kernel = contains(s, "kernel") || contains(s, "kernels");
      o.train = contains(s, "train");
      o.families = contains(s, "families");
    } else if (key == "--reps") {
      o.reps = std::max(1, std::atoi(value().c_str()));
      reps_set = true;
    } else if (key == "--budget") {
      o.budget_s = std::atof(value().c_str());
    } else if (key == "--batches") {
      o.batches.clear();
      for (auto const& b : split(value())) o.batches.push_back(std::max<std::int64_t>(1, std::atoll(b.c_str())));
      batches_set = true;
    } else if (key == "--models") {
      o.models = split(value());
    } else if (key == "--maths") {
      o.maths = split(value());
    } else {
      std::fprintf(stderr, "hseq_bench_cuda: unknown argument '%s'\n", a.c_str());
      usage(2);
    }
  }
  if (o.quick) {
    if (!reps_set) o.reps = 3;
    if (!batches_set) o.batches = {2};
  }
  return o;
}

GemmMath math_of(std::string const& m) {
  if (m == "fp32") return GemmMath::kFp32;
  if (m == "tf32") return GemmMath::kTf32;
  if (m == "bf16") return GemmMath::kBf16;
  HSEQ_FAIL("unknown math '" << m << "' (known: fp32, tf32, bf16)");
}
int math_index(GemmMath m) { return m == GemmMath::kFp32 ? 0 : m == GemmMath::kTf32 ? 1 : 2; }
char const* math_name(GemmMath m) { return m == GemmMath::kFp32 ? "fp32" : m == GemmMath::kTf32 ? "tf32" : "bf16"; }

// Dense datasheet peaks of the H100 SXM (the H200 has the same compute peaks), TFLOP/s.
constexpr double kDatasheetTflops[3] = {67.0, 494.7, 989.4};
constexpr char const* kDatasheetName = "H100 SXM dense (fp32 67, tf32 494.7, bf16 989.4 TFLOP/s)";

// Measured ceilings (0 = not measured yet).
struct Ceilings {
  double copy_gbs = 0;
  double gemm_tflops[3] = {0, 0, 0};
};
Ceilings g_ceil;

// ---------------------------------------------------------------------------------------------
// Device helpers: random fills, a vectorised copy, events, error handling
// ---------------------------------------------------------------------------------------------

__device__ inline std::uint32_t mix32(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return std::uint32_t(x);
}

__global__ void fill_uniform_kernel(float* p, std::int64_t n, std::uint64_t seed, float lo, float hi) {
  std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float u = float(mix32(seed * 0x9E3779B97F4A7C15ULL + std::uint64_t(i)) >> 8) * (1.0f / 16777216.0f);
    p[i] = lo + (hi - lo) * u;
  }
}

__global__ void fill_ids_kernel(std::int32_t* p, std::int64_t n, std::uint64_t seed, std::uint32_t mod) {
  std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    p[i] = std::int32_t(mix32(seed * 0x9E3779B97F4A7C15ULL + std::uint64_t(i)) % mod);
}

__global__ void copy_float4_kernel(float4 const* __restrict__ src, float4* __restrict__ dst, std::int64_t n4) {
  std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += stride) dst[i] = src[i];
}

int grid_for(std::int64_t n, int block = 256) {
  int sms = 132;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  std::int64_t want = (n + block - 1) / block;
  return int(std::max<std::int64_t>(1, std::min<std::int64_t>(want, std::int64_t(sms) * 16)));
}

void fill_uniform(Ctx& ctx, DView<float> v, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  if (v.numel() == 0) return;
  fill_uniform_kernel<<<grid_for(v.numel()), 256, 0, ctx.stream()>>>(v.data, v.numel(), seed, lo, hi);
  HSEQ_CUDA_CHECK(cudaGetLastError());
}
void fill_ids(Ctx& ctx, DView<std::int32_t> v, std::uint64_t seed, std::uint32_t mod) {
  if (v.numel() == 0) return;
  fill_ids_kernel<<<grid_for(v.numel()), 256, 0, ctx.stream()>>>(v.data, v.numel(), seed, mod);
  HSEQ_CUDA_CHECK(cudaGetLastError());
}

struct Event {
  cudaEvent_t e = nullptr;
  Event() { HSEQ_CUDA_CHECK(cudaEventCreate(&e)); }
  ~Event() {
    if (e) cudaEventDestroy(e);
  }
  Event(Event const&) = delete;
  Event& operator=(Event const&) = delete;
};

struct Timing {
  double median_ms = 0, min_ms = 0;
  int reps = 0;
};

/// `warmup` untimed calls, then up to `reps` timed ones (each between two events on the stream),
/// stopping early (after at least `min_reps`) once `max_seconds` of timed work have passed.
template <class F>
Timing time_gpu(Ctx& ctx, F&& f, int warmup, int reps, double max_seconds = 1.5, int min_reps = 3) {
  Event e0, e1;
  for (int i = 0; i < warmup; ++i) f();
  HSEQ_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
  std::vector<double> ms;
  double total = 0;
  for (int r = 0; r < reps; ++r) {
    HSEQ_CUDA_CHECK(cudaEventRecord(e0.e, ctx.stream()));
    f();
    HSEQ_CUDA_CHECK(cudaEventRecord(e1.e, ctx.stream()));
    HSEQ_CUDA_CHECK(cudaEventSynchronize(e1.e));
    float m = 0;
    HSEQ_CUDA_CHECK(cudaEventElapsedTime(&m, e0.e, e1.e));
    ms.push_back(double(m));
    total += double(m) / 1e3;
    if (int(ms.size()) >= min_reps && total > max_seconds) break;
  }
  std::sort(ms.begin(), ms.end());
  Timing t;
  t.reps = int(ms.size());
  t.min_ms = ms.front();
  t.median_ms = ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
  return t;
}

double r3(double x) { return std::isfinite(x) ? std::round(x * 1000) / 1000 : x; }
double r4(double x) { return std::isfinite(x) ? std::round(x * 10000) / 10000 : x; }

/// After a failed case: clears a non-sticky error; exits when the context is broken (every later
/// case would fail the same way).
void recover_or_exit() {
  (void)cudaGetLastError();
  cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
      emit({{"section", "fatal"},
            {"error", std::string("CUDA context unusable after a failed case: ") + cudaGetErrorName(e) + " (" +
                          cudaGetErrorString(e) + ")"}});
      std::exit(3);
    }
  }
}

/// Runs one case; prints its JSON (base fields + what `f` returns) or the error. Cases past the
/// budget are reported as skipped.
void run_case(json base, std::function<json()> const& f) {
  if (over_budget()) {
    base["skipped"] = "over the --budget";
    emit(base);
    return;
  }
  try {
    json r = f();
    for (auto it = r.begin(); it != r.end(); ++it) base[it.key()] = it.value();
    emit(base);
  } catch (std::exception const& e) {
    base["error"] = e.what();
    emit(base);
    recover_or_exit();
  }
}

std::size_t free_bytes() {
  std::size_t fr = 0, total = 0;
  if (cudaMemGetInfo(&fr, &total) != cudaSuccess) (void)cudaGetLastError();
  return fr;
}

// ---------------------------------------------------------------------------------------------
// Section a: ceilings
// ---------------------------------------------------------------------------------------------

void measure_gemm_ceiling(GemmMath math) {
  std::int64_t n = g_opt.quick ? 512 : 8192;
  json base{{"section", "ceiling"}, {"name", "gemm"}, {"math", math_name(math)}, {"m", n}, {"n", n}, {"k", n}};
  run_case(base, [&] {
    Ctx ctx;
    ctx.set_gemm_math(math);
    DTensor<float> a(Shape{n, n}), b(Shape{n, n}), c(Shape{n, n});
    fill_uniform(ctx, a.view(), 1);
    fill_uniform(ctx, b.view(), 2);
    auto f = [&] {
      hseq::ops::gemm<float>(ctx, hseq::ops::Trans::kNo, DMat<float const>(a.data(), n, n), hseq::ops::Trans::kNo,
                             DMat<float const>(b.data(), n, n), DMat<float>(c.data(), n, n), 1.0f, 0.0f);
    };
    Timing t = time_gpu(ctx, f, 2, g_opt.reps);
    double flops = 2.0 * double(n) * double(n) * double(n);
    double tf = flops / (t.median_ms * 1e-3) / 1e12;
    g_ceil.gemm_tflops[math_index(math)] = tf;
    double peak = kDatasheetTflops[math_index(math)];
    return json{{"median_ms", r4(t.median_ms)}, {"min_ms", r4(t.min_ms)}, {"reps", t.reps}, {"tflops", r3(tf)},
                {"datasheet_tflops", peak}, {"fraction_of_datasheet", r4(tf / peak)},
                {"note", "C = A B, row-major, uniform(-1,1) data, via ops::gemm (cuBLAS)"}};
  });
}

void ensure_gemm_ceiling(GemmMath math) {
  if (g_ceil.gemm_tflops[math_index(math)] <= 0) measure_gemm_ceiling(math);
}

void measure_copy_ceiling() {
  std::int64_t n = g_opt.quick ? (std::int64_t(1) << 22) : (std::int64_t(1) << 28);  // floats: 16 MiB / 1 GiB
  json base{{"section", "ceiling"}, {"name", "copy"}, {"bytes_per_buffer", n * 4}};
  run_case(base, [&] {
    Ctx ctx;
    DTensor<float> a(Shape{n}), b(Shape{n});
    fill_uniform(ctx, a.view(), 3);
    double bytes = 2.0 * double(n) * 4.0;  // read + write
    Timing tm = time_gpu(ctx, [&] { hseq::cuda::copy_bytes(ctx, b.data(), a.data(), std::size_t(n) * 4); }, 2, g_opt.reps);
    Timing tk = time_gpu(
        ctx,
        [&] {
          copy_float4_kernel<<<grid_for(n / 4), 256, 0, ctx.stream()>>>(reinterpret_cast<float4 const*>(a.data()),
                                                                        reinterpret_cast<float4*>(b.data()), n / 4);
        },
        2, g_opt.reps);
    HSEQ_CUDA_CHECK(cudaGetLastError());
    double memcpy_gbs = bytes / (tm.median_ms * 1e-3) / 1e9, kernel_gbs = bytes / (tk.median_ms * 1e-3) / 1e9;
    g_ceil.copy_gbs = std::max(memcpy_gbs, kernel_gbs);
    return json{{"memcpy_median_ms", r4(tm.median_ms)}, {"memcpy_gbs", r3(memcpy_gbs)},
                {"kernel_median_ms", r4(tk.median_ms)}, {"kernel_gbs", r3(kernel_gbs)},
                {"ceiling_gbs", r3(g_ceil.copy_gbs)},
                {"note", "device-to-device copy, GB/s = (bytes read + bytes written) / time; ceiling = the better of "
                         "cudaMemcpyAsync and a float4 grid-stride kernel"}};
  });
}

// ---------------------------------------------------------------------------------------------
// Section b: kernels
// ---------------------------------------------------------------------------------------------

/// A memory-bound case: bandwidth = bytes / median time, as a fraction of the copy ceiling.
json bw_result(Timing const& t, double bytes, std::string const& counting) {
  double gbs = bytes / (t.median_ms * 1e-3) / 1e9;
  json j{{"median_ms", r4(t.median_ms)}, {"min_ms", r4(t.min_ms)}, {"reps", t.reps}, {"bytes", bytes},
         {"gbs", r3(gbs)}, {"bytes_counted", counting}};
  if (g_ceil.copy_gbs > 0) j["fraction_of_copy_ceiling"] = r4(gbs / g_ceil.copy_gbs);
  return j;
}
/// A compute-bound case: FLOP/s as a fraction of the measured GEMM ceiling of the same math.
json flop_result(Timing const& t, double flops, GemmMath math, std::string const& counting) {
  double tf = flops / (t.median_ms * 1e-3) / 1e12;
  json j{{"median_ms", r4(t.median_ms)}, {"min_ms", r4(t.min_ms)}, {"reps", t.reps}, {"flops", flops},
         {"tflops", r3(tf)}, {"math", math_name(math)}, {"flops_counted", counting}};
  double ceil = g_ceil.gemm_tflops[math_index(math)];
  if (ceil > 0) j["fraction_of_gemm_ceiling"] = r4(tf / ceil);
  j["fraction_of_datasheet"] = r4(tf / kDatasheetTflops[math_index(math)]);
  if (math != GemmMath::kFp32) {  // kernels that ignore the GEMM math (SIMT fp32) compare with fp32
    if (g_ceil.gemm_tflops[0] > 0) j["fraction_of_fp32_gemm_ceiling"] = r4(tf / g_ceil.gemm_tflops[0]);
    j["fraction_of_fp32_datasheet"] = r4(tf / kDatasheetTflops[0]);
  }
  return j;
}

json kbase(char const* name, json const& extra = json::object()) {
  json j{{"section", "kernel"}, {"name", name}};
  for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
  return j;
}

void kernel_section() {
  namespace ops = hseq::ops;
  bool q = g_opt.quick;
  int reps = g_opt.reps;
  std::int64_t const n_elem = q ? (1 << 20) : (std::int64_t(1) << 26);  // 4 MiB / 256 MiB per buffer

  // ---- element-wise -----------------------------------------------------------------------
  run_case(kbase("add", json{{"n", n_elem}}), [&] {
    Ctx ctx;
    DTensor<float> a(Shape{n_elem}), b(Shape{n_elem}), c(Shape{n_elem});
    fill_uniform(ctx, a.view(), 11);
    fill_uniform(ctx, b.view(), 12);
    Timing t = time_gpu(ctx, [&] { ops::add<float>(ctx, a.cview(), b.cview(), c.view()); }, 2, reps);
    return bw_result(t, 3.0 * 4 * double(n_elem), "read a, b; write out (3 n floats)");
  });
  {
    json extra{{"n", n_elem}};
    run_case(kbase("gelu_forward", extra), [&] {
      Ctx ctx;
      DTensor<float> x(Shape{n_elem}), y(Shape{n_elem});
      fill_uniform(ctx, x.view(), 13, -3, 3);
      Timing t = time_gpu(ctx, [&] { ops::gelu_forward<float>(ctx, x.cview(), y.view()); }, 2, reps);
      return bw_result(t, 2.0 * 4 * double(n_elem), "read x; write y (2 n floats)");
    });
    run_case(kbase("gelu_backward", extra), [&] {
      Ctx ctx;
      DTensor<float> x(Shape{n_elem}), dy(Shape{n_elem}), dx(Shape{n_elem});
      fill_uniform(ctx, x.view(), 14, -3, 3);
      fill_uniform(ctx, dy.view(), 15);
      Timing t = time_gpu(ctx, [&] { ops::gelu_backward<float>(ctx, x.cview(), dy.cview(), dx.view()); }, 2, reps);
      return bw_result(t, 3.0 * 4 * double(n_elem), "read x, dy; write dx (3 n floats)");
    });
  }

  // ---- layer norm: [R, C] -------------------------------------------------------------------
  {
    std::int64_t r = q ? 2048 : 65536, c = 512;
    json extra{{"rows", r}, {"cols", c}};
    run_case(kbase("layer_norm_forward", extra), [&] {
      Ctx ctx;
      DTensor<float> x(Shape{r, c}), y(Shape{r, c}), g(Shape{c}), b(Shape{c}), mean(Shape{r}), rstd(Shape{r});
      fill_uniform(ctx, x.view(), 21);
      fill_uniform(ctx, g.view(), 22, 0.5f, 1.5f);
      fill_uniform(ctx, b.view(), 23);
      Timing t = time_gpu(ctx, [&] {
        ops::layer_norm_forward<float>(ctx, x.cview(), g.cview(), b.cview(), 1e-5f, y.view(), mean.view(), rstd.view());
      }, 2, reps);
      return bw_result(t, 4.0 * (2.0 * double(r * c) + 2.0 * double(r) + 2.0 * double(c)),
                       "read x, gamma, beta; write y, mean, rstd");
    });
    run_case(kbase("layer_norm_backward", extra), [&] {
      Ctx ctx;
      DTensor<float> x(Shape{r, c}), y(Shape{r, c}), g(Shape{c}), b(Shape{c}), mean(Shape{r}), rstd(Shape{r});
      DTensor<float> dy(Shape{r, c}), dx(Shape{r, c}), dg(Shape{c}), db(Shape{c});
      fill_uniform(ctx, x.view(), 24);
      fill_uniform(ctx, g.view(), 25, 0.5f, 1.5f);
      fill_uniform(ctx, b.view(), 26);
      fill_uniform(ctx, dy.view(), 27);
      ops::layer_norm_forward<float>(ctx, x.cview(), g.cview(), b.cview(), 1e-5f, y.view(), mean.view(), rstd.view());
      hseq::cuda::zero_bytes(ctx, dg.data(), std::size_t(c) * 4);
      hseq::cuda::zero_bytes(ctx, db.data(), std::size_t(c) * 4);
      Timing t = time_gpu(ctx, [&] {
        ops::layer_norm_backward<float>(ctx, x.cview(), g.cview(), mean.cview(), rstd.cview(), dy.cview(), dx.view(),
                                        dg.view(), db.view());
      }, 2, reps);
      return bw_result(t, 4.0 * (3.0 * double(r * c) + 2.0 * double(r) + 5.0 * double(c)),
                       "read x, dy, mean, rstd, gamma; write dx; read+write dgamma, dbeta");
    });
  }

  // ---- softmax over rows [R, C] (unmasked) ------------------------------------------------------
  {
    std::int64_t r = q ? 1024 : 32768, c = 1024;
    json extra{{"rows", r}, {"cols", c}};
    run_case(kbase("softmax_forward", extra), [&] {
      Ctx ctx;
      DTensor<float> x(Shape{r, c}), y(Shape{r, c});
      fill_uniform(ctx, x.view(), 31, -4, 4);
      Timing t = time_gpu(ctx, [&] { ops::softmax_forward<float>(ctx, x.cview(), y.view()); }, 2, reps);
      return bw_result(t, 2.0 * 4 * double(r * c), "read x; write y");
    });
    run_case(kbase("softmax_backward", extra), [&] {
      Ctx ctx;
      DTensor<float> x(Shape{r, c}), y(Shape{r, c}), dy(Shape{r, c}), dx(Shape{r, c});
      fill_uniform(ctx, x.view(), 32, -4, 4);
      fill_uniform(ctx, dy.view(), 33);
      ops::softmax_forward<float>(ctx, x.cview(), y.view());
      Timing t = time_gpu(ctx, [&] { ops::softmax_backward<float>(ctx, y.cview(), dy.cview(), dx.view()); }, 2, reps);
      return bw_result(t, 3.0 * 4 * double(r * c), "read y, dy; write dx");
    });
  }

  // ---- cross-entropy: logits [N, V] -------------------------------------------------------------
  {
    std::int64_t n = q ? 4096 : 131072, v = 256;
    json extra{{"rows", n}, {"vocab", v}};
    run_case(kbase("cross_entropy_forward", extra), [&] {
      Ctx ctx;
      DTensor<float> logits(Shape{n, v}), losses(Shape{n});
      DTensor<std::int32_t> tg(Shape{n});
      fill_uniform(ctx, logits.view(), 41, -4, 4);
      fill_ids(ctx, tg.view(), 42, std::uint32_t(v));
      std::int64_t counted = 0;
      Timing t = time_gpu(ctx, [&] { counted = ops::cross_entropy_forward<float>(ctx, logits.cview(), tg.cview(), losses.view()); },
                          2, reps);
      json j = bw_result(t, 4.0 * (double(n * v) + 2.0 * double(n)), "read logits, targets; write losses");
      j["counted"] = counted;
      j["note"] = "includes returning the counted rows to the host";
      return j;
    });
    run_case(kbase("cross_entropy_backward", extra), [&] {
      Ctx ctx;
      DTensor<float> logits(Shape{n, v}), dlogits(Shape{n, v});
      DTensor<std::int32_t> tg(Shape{n});
      fill_uniform(ctx, logits.view(), 43, -4, 4);
      fill_ids(ctx, tg.view(), 44, std::uint32_t(v));
      Timing t = time_gpu(ctx, [&] {
        ops::cross_entropy_backward<float>(ctx, logits.cview(), tg.cview(), 1.0f / float(n), dlogits.view());
      }, 2, reps);
      return bw_result(t, 4.0 * (2.0 * double(n * v) + double(n)), "read logits, targets; write dlogits");
    });
  }

  // ---- embedding: table [V, C], ids [N] -----------------------------------------------------------
  {
    std::int64_t n = q ? 4096 : 131072, v = 256, c = 512;
    json extra{{"tokens", n}, {"vocab", v}, {"cols", c}};
    run_case(kbase("embedding_forward", extra), [&] {
      Ctx ctx;
      DTensor<float> table(Shape{v, c}), out(Shape{n, c});
      DTensor<std::int32_t> ids(Shape{n});
      fill_uniform(ctx, table.view(), 51);
      fill_ids(ctx, ids.view(), 52, std::uint32_t(v));
      Timing t = time_gpu(ctx, [&] { ops::embedding_forward<float>(ctx, table.cview(), ids.cview(), out.view()); }, 2, reps);
      return bw_result(t, 4.0 * (2.0 * double(n * c) + double(n)),
                       "read the gathered rows (n c) and ids; write out (n c); the table itself is cache-resident");
    });
    run_case(kbase("embedding_backward", extra), [&] {
      Ctx ctx;
      DTensor<float> dtable(Shape{v, c}), dout(Shape{n, c});
      DTensor<std::int32_t> ids(Shape{n});
      fill_uniform(ctx, dout.view(), 53);
      fill_ids(ctx, ids.view(), 54, std::uint32_t(v));
      hseq::cuda::zero_bytes(ctx, dtable.data(), std::size_t(v * c) * 4);
      Timing t = time_gpu(ctx, [&] { ops::embedding_backward<float>(ctx, ids.cview(), dout.cview(), dtable.view()); }, 2, reps);
      return bw_result(t, 4.0 * (double(n * c) + double(n) + 2.0 * double(v * c)),
                       "read dout, ids; read+write dtable once");
    });
  }

  // ---- AdamW update -----------------------------------------------------------------------------
  {
    std::int64_t n = q ? (1 << 20) : (std::int64_t(1) << 25);
    run_case(kbase("adamw_update", json{{"n", n}}), [&] {
      Ctx ctx;
      DTensor<float> p(Shape{n}), g(Shape{n}), m(Shape{n}), v(Shape{n});
      fill_uniform(ctx, p.view(), 61);
      fill_uniform(ctx, g.view(), 62);
      fill_uniform(ctx, m.view(), 63, -1e-3f, 1e-3f);
      fill_uniform(ctx, v.view(), 64, 0.0f, 1e-3f);
      ops::AdamWStep s{1e-4, 0.9, 0.999, 1e-8, 0.01, 1};
      Timing t = time_gpu(ctx, [&] {
        ops::adamw_update<float>(ctx, p.view(), g.cview(), m.view(), v.view(), s);
        ++s.step;
      }, 2, reps);
      return bw_result(t, 7.0 * 4 * double(n), "read p, g, m, v; write p, m, v (7 n floats)");
    });
  }

  // ---- GEMM shapes of the training configurations (M = B T = 16 * 2048 rows, d = 512) -------------
  {
    std::int64_t rows = q ? 1024 : 32768, d = q ? 128 : 512;
    struct G {
      char const* what;
      hseq::ops::Trans ta, tb;
      std::int64_t m, n, k;
    };
    using hseq::ops::Trans;
    std::vector<G> shapes{{"fc1 forward: [BT, d] x [d, 4d]", Trans::kNo, Trans::kNo, rows, 4 * d, d},
                          {"fc2 forward: [BT, 4d] x [4d, d]", Trans::kNo, Trans::kNo, rows, d, 4 * d},
                          {"qkv forward: [BT, d] x [d, 3d]", Trans::kNo, Trans::kNo, rows, 3 * d, d},
                          {"fc1 weight grad: [BT, d]^T x [BT, 4d]", Trans::kYes, Trans::kNo, d, 4 * d, rows}};
    for (auto const& gm : g_opt.maths) {
      GemmMath math = math_of(gm);
      for (auto const& s : shapes) {
        json base = kbase("gemm");
        base["shape"] = s.what;
        base["m"] = s.m;
        base["n"] = s.n;
        base["k"] = s.k;
        base["math"] = math_name(math);
        run_case(base, [&] {
          Ctx ctx;
          ctx.set_gemm_math(math);
          // op(A) is [m, k], op(B) is [k, n]; stored shapes follow the transposes.
          std::int64_t ar = s.ta == Trans::kNo ? s.m : s.k, ac = s.ta == Trans::kNo ? s.k : s.m;
          std::int64_t br = s.tb == Trans::kNo ? s.k : s.n, bc = s.tb == Trans::kNo ? s.n : s.k;
          DTensor<float> a(Shape{ar, ac}), b(Shape{br, bc}), c(Shape{s.m, s.n});
          fill_uniform(ctx, a.view(), 71);
          fill_uniform(ctx, b.view(), 72);
          Timing t = time_gpu(ctx, [&] {
            hseq::ops::gemm<float>(ctx, s.ta, DMat<float const>(a.data(), ar, ac), s.tb, DMat<float const>(b.data(), br, bc),
                                   DMat<float>(c.data(), s.m, s.n), 1.0f, 0.0f);
          }, 2, reps);
          return flop_result(t, 2.0 * double(s.m) * double(s.n) * double(s.k), math, "2 m n k");
        });
      }
    }
  }

  // ---- attention core: B*H = 64, T = 2048, head_dim 64, causal ------------------------------------
  {
    std::int64_t b = q ? 2 : 8, h = q ? 2 : 8, t = q ? 256 : 2048, dh = 64;
    hseq::ops::AttentionDims d{b, h, t, t, dh, 0};
    double fwd_flops = double(b * h) * 4.0 * double(t) * double(t) * double(dh) / 2.0;
    std::string fwd_count = "forward 4 T^2 dh / 2 per (batch, head): QK^T and PV, halved for the causal mask";
    std::string bwd_count = "backward 2.5x the forward count (5 T^2 dh products / 2 of forward's 2), causal-halved";
    // fp32 mode: every kernel family side by side (tiled SIMT is what kAuto picks); TF32/bf16: kAuto
    // (one-TF32 tensor-core MMA).
    auto kernel_name = [](hseq::AttentionKernels k) {
      switch (k) {
        case hseq::AttentionKernels::kMma: return "mma";
        case hseq::AttentionKernels::kTiled: return "tiled";
        case hseq::AttentionKernels::kSimple: return "simple";
        default: return "auto";
      }
    };
    for (auto const& gm : g_opt.maths) {
     GemmMath math = math_of(gm);
     std::vector<hseq::AttentionKernels> families{hseq::AttentionKernels::kAuto};
     if (math == GemmMath::kFp32)
       families = {hseq::AttentionKernels::kTiled, hseq::AttentionKernels::kMma, hseq::AttentionKernels::kSimple};
     for (auto kern : families) {
      json extra{{"batch", b},           {"heads", h},         {"t", t},
                 {"head_dim", dh},       {"mask", "causal"},   {"math", math_name(math)},
                 {"kernels", kernel_name(kern)}};
      auto setup = [&](Ctx& ctx, DTensor<float>& qt, DTensor<float>& kv, DTensor<float>& out, DTensor<float>& st) {
        qt = DTensor<float>(Shape{b, t, h * dh});
        kv = DTensor<float>(Shape{b, t, 2 * h * dh});
        out = DTensor<float>(Shape{b, t, h * dh});
        st = DTensor<float>(hseq::ops::attention_stats_shape(DeviceSpace{}, d));
        fill_uniform(ctx, qt.view(), 81);
        fill_uniform(ctx, kv.view(), 82);
      };
      float scale = 1.0f / std::sqrt(float(dh));
      run_case(kbase("attention_forward", extra), [&] {
        Ctx ctx;
        ctx.set_gemm_math(math);
        ctx.set_attention_kernels(kern);
        DTensor<float> qt, kv, out, st;
        setup(ctx, qt, kv, out, st);
        Timing tm = time_gpu(ctx, [&] {
          hseq::ops::attention_forward<float>(ctx, d, hseq::ops::AttentionMask::causal(), scale, qt.cview(), kv.cview(),
                                              out.view(), st.view());
        }, 2, reps);
        json j = flop_result(tm, fwd_flops, math, fwd_count);
        j["stats_elements"] = st.numel();
        return j;
      });
      run_case(kbase("attention_backward", extra), [&] {
        Ctx ctx;
        ctx.set_gemm_math(math);
        ctx.set_attention_kernels(kern);
        DTensor<float> qt, kv, out, st;
        setup(ctx, qt, kv, out, st);
        DTensor<float> dout(Shape{b, t, h * dh}), dq(Shape{b, t, h * dh}), dkv(Shape{b, t, 2 * h * dh});
        std::int64_t scratch_n = std::max<std::int64_t>(1, hseq::ops::attention_backward_scratch(DeviceSpace{}, d));
        DTensor<float> scratch(Shape{scratch_n});
        fill_uniform(ctx, dout.view(), 83);
        hseq::ops::attention_forward<float>(ctx, d, hseq::ops::AttentionMask::causal(), scale, qt.cview(), kv.cview(),
                                            out.view(), st.view());
        Timing tm = time_gpu(ctx, [&] {
          hseq::ops::attention_backward<float>(ctx, d, hseq::ops::AttentionMask::causal(), scale, qt.cview(), kv.cview(),
                                               out.cview(), st.cview(), dout.cview(), dq.view(), dkv.view(),
                                               scratch.view());
        }, 2, reps);
        json j = flop_result(tm, 2.5 * fwd_flops, math, bwd_count);
        j["scratch_floats"] = scratch_n;
        return j;
      });
     }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Section c: training throughput and MFU
// ---------------------------------------------------------------------------------------------

using HierT = hseq::hier::Hierarchy<2, 2, hseq::hier::Level<4, 4>>;  // "2@1 4@4 2@1"
template <class B>
using Lm = hseq::models::TransformerLm<B, float>;
template <class B>
using HgAvg = hseq::models::Hourglass<B, float, HierT, hseq::hier::AvgPool, hseq::hier::Repeat>;
template <class B>
using HgAttn = hseq::models::Hourglass<B, float, HierT, hseq::hier::AttentionPool, hseq::hier::AttentionUp>;

struct TrainShape {
  std::int64_t d = 512, heads = 8, layers = 8, t = 2048, vocab = 256;
};
TrainShape train_shape() {
  TrainShape s;
  if (g_opt.quick) {
    s.d = 64;
    s.heads = 2;
    s.t = 128;
  }
  return s;
}

template <class B, class Model>
void train_case(std::string const& model_name, typename Model::Config cfg, TrainShape const& s, std::int64_t batch,
                GemmMath math) {
  json base{{"section", "train"}, {"model", model_name}, {"batch", batch}, {"t", s.t}, {"d", s.d}, {"heads", s.heads},
            {"math", math_name(math)}, {"backend", B::kName}};
  if constexpr (std::is_same_v<Model, Lm<B>>) base["layers"] = s.layers;
  else base["hierarchy"] = "2@1 4@4 2@1";
  ensure_gemm_ceiling(math);
  run_case(base, [&] {
    std::size_t free0 = free_bytes();
    typename B::Context ctx;
    ctx.set_gemm_math(math);
    Model model(cfg);
    hseq::nn::ParamStore<B, float> ps(ctx, model);
    ps.init(ctx, 1);
    hseq::train::AdamW<B, float> opt(ctx, ps, {});
    DTensor<std::int32_t> ids(Shape{batch, s.t}), targets(Shape{batch, s.t});
    fill_ids(ctx, ids.view(), 91, std::uint32_t(s.vocab));
    fill_ids(ctx, targets.view(), 92, std::uint32_t(s.vocab));
    hseq::Workspace<B> ws(model.forward_workspace(batch, s.t) + model.backward_workspace(batch, s.t));
    typename Model::Trace tr;
    double loss = 0;
    auto step = [&] {
      ps.zero_grad(ctx);
      auto a = ws.arena();
      loss = model.forward(ctx, ids.cview(), targets.cview(), a, tr);
      model.backward(ctx, tr, a);
      opt.step(ctx);
    };
    // Warm-up: the first step creates the cuBLAS handle and grows the scratch; a second one
    // only when the first was quick.
    auto w0 = Clock::now();
    step();
    HSEQ_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
    double loss_first = loss;
    double first_s = std::chrono::duration<double>(Clock::now() - w0).count();
    int warm = first_s < 2.0 ? 1 : 0;
    double budget = g_opt.quick ? 0.5 : 2.5;
    int reps = g_opt.quick ? 3 : 20;
    auto w1 = Clock::now();
    Timing t = time_gpu(ctx, step, warm, reps, budget, first_s > 5.0 ? 2 : 3);
    double wall_s = std::chrono::duration<double>(Clock::now() - w1).count();
    std::size_t used = free0 > free_bytes() ? free0 - free_bytes() : 0;

    double tokens = double(batch * s.t);
    double tps = tokens / (t.median_ms * 1e-3);
    hseq::models::FlopCount fc = model.flops(s.t);  // per token at T (models/flops.hpp)
    double ach_palm = tps * fc.palm() / 1e12, ach_causal = tps * fc.causal() / 1e12;
    double meas = g_ceil.gemm_tflops[math_index(math)], sheet = kDatasheetTflops[math_index(math)];
    json j{{"tokens_per_s", r3(tps)},
           {"step_ms_median", r3(t.median_ms)},
           {"step_ms_min", r3(t.min_ms)},
           {"reps", t.reps},
           {"first_step_s", r3(first_s)},
           {"timed_wall_s", r3(wall_s)},
           {"loss_first", r4(loss_first)},
           {"loss_last", r4(loss)},
           {"gpu_mem_used_gib", r3(double(used) / double(1 << 30))},
           {"params_total", fc.n_total},
           {"params_nonembedding", fc.n_nonemb},
           {"params_effective", fc.n_eff},
           {"flops_per_token_palm", fc.palm()},
           {"flops_per_token_causal", fc.causal()},
           {"head_flops_per_token_not_counted", 6.0 * double(s.d) * double(s.vocab)},
           {"achieved_tflops_palm", r3(ach_palm)},
           {"achieved_tflops_causal", r3(ach_causal)},
           {"measured_gemm_tflops", r3(meas)},
           {"datasheet_tflops", sheet},
           {"mfu_palm_vs_datasheet", r4(ach_palm / sheet)},
           {"mfu_causal_vs_datasheet", r4(ach_causal / sheet)}};
    if (meas > 0) {
      j["mfu_palm_vs_measured"] = r4(ach_palm / meas);
      j["mfu_causal_vs_measured"] = r4(ach_causal / meas);
    }
    return j;
  });
}

template <class B>
void train_models(TrainShape const& s, std::int64_t batch, GemmMath math) {
  if (contains(g_opt.models, "lm"))
    train_case<B, Lm<B>>("transformer_lm", {.vocab = s.vocab, .dim = s.d, .heads = s.heads, .layers = s.layers, .context = s.t},
                         s, batch, math);
  if (contains(g_opt.models, "hg_avg"))
    train_case<B, HgAvg<B>>("hourglass_avgpool_repeat", {.vocab = s.vocab, .dim = s.d, .heads = s.heads, .context = s.t},
                            s, batch, math);
  if (contains(g_opt.models, "hg_attn"))
    train_case<B, HgAttn<B>>("hourglass_attnpool_attnup", {.vocab = s.vocab, .dim = s.d, .heads = s.heads, .context = s.t},
                             s, batch, math);
}

void train_section() {
  TrainShape s = train_shape();
  emit({{"section", "train_info"},
        {"flops_formula",
         "model FLOPs per token (each model's flops(T), include/hseq/models/flops.hpp) = 6 N_eff + 12 d "
         "sum_layers(Tq Tk / T) (forward + backward). TransformerLm: N_eff = N = "
         "non-embedding parameters (blocks + ln_f; token and position embeddings excluded), attention term 12 L d T: "
         "PaLM's 6N + 12 L d T ('palm', attention NOT causal-halved). 'causal' halves the attention term (6N + 6 L d T). "
         "Hourglass: each non-embedding parameter weighted by the fraction of full-rate positions its layer processes "
         "(1/4 inside the 4@4 level; the attention pool's ln_in and kv, the attention upsampling's queries/out/mlp and "
         "ln_up at the full rate), shortened attention layers 12 d T / k^2, resampling cross-attention 12 d T / k. "
         "The tied output projection (6 d V per token) is not counted (printed separately)."},
        {"mfu", "achieved = tokens/s x FLOPs per token; MFU = achieved / peak, against the measured ops::gemm 8192^3 "
                "rate of the same math (section ceiling) and against the datasheet dense peak of that math"},
        {"datasheet", kDatasheetName},
        {"timing", "CUDA events around each full step (zero_grad, forward incl. loss, backward, AdamW); median of the "
                   "timed steps after warm-up; ids and targets are random bytes (fixed seed)"}});
  for (std::int64_t batch : g_opt.batches) {
    for (auto const& m : g_opt.maths) {
      GemmMath math = math_of(m);
      if (math == GemmMath::kBf16) train_models<hseq::cuda_bf16>(s, batch, math);
      else train_models<hseq::cuda>(s, batch, math);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Section d: the model families' benchmark table
// ---------------------------------------------------------------------------------------------

#if defined(HSEQ_BENCH_FAMILIES)
/// The timing loop of a family's benchmark action (cli::BenchLoop): untimed warm-up steps (the
/// first creates the cuBLAS handle and grows the context's scratch), then timed steps until at
/// least `reps` steps and `min_s` seconds, or `max_s` seconds, have passed. The action
/// synchronizes the stream after every step, so the wall clock measures whole steps.
class WallLoop final : public cli::BenchLoop {
 public:
  WallLoop(int warmup, int reps, double min_s, double max_s) : warmup_(warmup), reps_(reps), min_s_(min_s), max_s_(max_s) {}
  bool keep_running() override {  // called before every step, and once more after the last
    if (warmup_ > 0) {
      --warmup_;
      return true;
    }
    auto const now = Clock::now();
    if (!started_) {
      started_ = true;
      start_ = now;
      return true;
    }
    ++steps_;
    double const s = std::chrono::duration<double>(now - start_).count();
    if ((steps_ >= reps_ && s >= min_s_) || s >= max_s_) {
      seconds_ = s;
      return false;
    }
    return true;
  }
  void report(cli::BenchResult const& r) override { result_ = r; }
  cli::BenchResult const& result() const { return result_; }
  int steps() const { return steps_; }
  double seconds() const { return seconds_; }

 private:
  int warmup_, reps_;
  double min_s_, max_s_;
  bool started_ = false;
  int steps_ = 0;
  double seconds_ = 0;
  Clock::time_point start_{};
  cli::BenchResult result_{};
};
#endif

void families_section() {
#if defined(HSEQ_BENCH_FAMILIES)
  emit({{"section", "families_info"},
        {"what", "every benchmark case of the programs' model families (examples/families/list.def, each trait's "
                 "bench_cases()), built from hseq-train's flags and trained on random bytes (forward, backward, AdamW; "
                 "fp32 math), as hseq_bench_cpu's BM_family/<family>/<case>/b:B/t:T"},
        {"timing", "wall clock over whole steps (the action synchronizes after each), after 2 untimed warm-up steps"}});
  for (cli::Family const* f : cli::families())
    for (cli::BenchCase const& c : f->bench_cases)
      for (cli::BenchShape sh : c.shapes) {
        json base{{"section", "families"}, {"name", cli::bench_name(*f, c, sh)}, {"family", f->model}, {"case", c.name},
                  {"batch", sh.batch}, {"t", sh.seq_len}, {"math", "fp32"}, {"backend", hseq::cuda::kName}};
        run_case(base, [&] {
          WallLoop loop(2, g_opt.quick ? 3 : 20, g_opt.quick ? 0.1 : 1.0, g_opt.quick ? 1.0 : 5.0);
          cli::run_bench_case(*f, c, sh, loop);
          cli::BenchResult const& r = loop.result();
          HSEQ_CHECK(loop.steps() > 0 && loop.seconds() > 0, "the benchmark action ran no timed step");
          double tps = double(r.tokens_per_step) * double(loop.steps()) / loop.seconds();
          json j{{"tokens_per_s", r3(tps)},
                 {"step_ms", r3(1e3 * loop.seconds() / double(loop.steps()))},
                 {"steps", loop.steps()},
                 {"params", r.params},
                 {"loss_last", r4(r.loss)}};
          if (r.has_flops) {
            j["flops_per_token_palm"] = r.flops.palm();
            j["flops_per_token_causal"] = r.flops.causal();
            j["achieved_tflops_palm"] = r3(tps * r.flops.palm() / 1e12);
          }
          return j;
        });
      }
#else
  emit({{"section", "families"},
        {"skipped", "built without the families' CUDA library: configure with -DHSEQ_BUILD_CUDA_EXAMPLES=ON"}});
#endif
}

// ---------------------------------------------------------------------------------------------

void device_info() {
  cudaDeviceProp p{};
  HSEQ_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  cudaDriverGetVersion(&drv);
  int cublas = 0;
  {
    Ctx ctx;
    cublasGetVersion(ctx.blas(), &cublas);
  }
  json sections = json::array();
  if (g_opt.ceiling) sections.push_back("ceiling");
  if (g_opt.kernel) sections.push_back("kernel");
  if (g_opt.train) sections.push_back("train");
  if (g_opt.families) sections.push_back("families");
  emit({{"section", "device"},
        {"name", p.name},
        {"cc", std::to_string(p.major) + "." + std::to_string(p.minor)},
        {"sms", p.multiProcessorCount},
        {"memory_gib", r3(double(p.totalGlobalMem) / double(1 << 30))},
        {"l2_mib", r3(double(p.l2CacheSize) / double(1 << 20))},
        {"cuda_runtime", rt},
        {"cuda_driver", drv},
        {"cublas", cublas},
        {"quick", g_opt.quick},
        {"reps", g_opt.reps},
        {"budget_s", g_opt.budget_s},
        {"sections", sections},
        {"datasheet", kDatasheetName},
        {"datasheet_note", std::string(p.name).find("H100") != std::string::npos ||
                                   std::string(p.name).find("H200") != std::string::npos
                               ? "datasheet peaks apply to this device"
                               : "datasheet peaks are the H100 SXM's, not this device's"}});
}

}  // namespace

int main(int argc, char** argv) {
  g_start = Clock::now();
  g_opt = parse(argc, argv);
  if (!hseq::cuda::available()) {
    std::printf("{\"section\": \"skip\", \"reason\": \"no usable CUDA device\"}\n");
    return 77;
  }
  try {
    device_info();
    if (g_opt.ceiling) {
      measure_copy_ceiling();
      for (auto const& m : g_opt.maths) measure_gemm_ceiling(math_of(m));
    }
    if (g_opt.kernel) kernel_section();
    if (g_opt.train) train_section();
    if (g_opt.families) families_section();
  } catch (std::exception const& e) {
    emit({{"section", "fatal"}, {"error", e.what()}});
    return 1;
  }
  emit({{"section", "done"}, {"elapsed_s", r3(elapsed_s())}});
  return 0;
}
