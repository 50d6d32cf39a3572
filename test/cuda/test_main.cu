// SPDX-License-Identifier: MIT
// Main of hseq_tests_cuda (every test/cuda/<layer>/test_*.cu, batched by test/CMakeLists.txt).
//
// When to skip (exit 77, which ctest's SKIP_RETURN_CODE reports as "skipped") and when to fail:
//
//   cudaGetDeviceCount succeeds with count > 0      -> run the tests, after a context-creation probe
//                                                     (cudaFree(nullptr)); if that probe fails: exit 1.
//   cudaGetDeviceCount succeeds with count == 0,
//   or returns cudaErrorNoDevice                    -> skip: the driver says there is no device (also
//                                                     what CUDA_VISIBLE_DEVICES="" gives).
//   any other error, and no NVIDIA driver at all    -> skip: the machine has no GPU stack. "No driver
//                                                     at all" means: libcuda.so.1 cannot be loaded
//                                                     (dlopen), and none of /dev/nvidiactl,
//                                                     /dev/nvidia0, /proc/driver/nvidia, /dev/dxg
//                                                     (WSL) exists. The CUDA runtime then reports
//                                                     cudaErrorInsufficientDriver (what a machine
//                                                     with the toolkit and no driver gives).
//   any other error with a driver present           -> fail: print the CUDA error name and string and
//                                                     what was found, exit 1. A broken or mismatched
//                                                     driver (cudaErrorInsufficientDriver with libcuda
//                                                     installed, cudaErrorSystemDriverMismatch,
//                                                     cudaErrorInitializationError...) must never pass
//                                                     for a machine without a GPU.
//
// This does not use hseq::cuda::available(), which (as a library query for "is there a usable
// device") answers false on any CUDA error.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdio>
#include <vector>

namespace {

enum class DeviceProbe { kRun, kSkip, kFail };

bool hseq_path_exists(char const* path) {
  struct stat st;
  return ::stat(path, &st) == 0;
}

/// Whether any part of an NVIDIA driver is installed: the user-space driver library loads, or the
/// kernel driver's device nodes / proc entry exist.
bool hseq_nvidia_driver_present(char const** what) {
  if (void* h = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) {
    ::dlclose(h);
    *what = "libcuda.so.1 loads";
    return true;
  }
  for (char const* node : {"/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/dxg"})
    if (hseq_path_exists(node)) {
      *what = node;
      return true;
    }
  *what = "no libcuda.so.1, no /dev/nvidia* or /proc/driver/nvidia";
  return false;
}

/// The skip/fail/run decision documented at the top of this file; prints one line saying why.
DeviceProbe hseq_probe_cuda_device() {
  int count = 0;
  cudaError_t const err = cudaGetDeviceCount(&count);
  (void)cudaGetLastError();  // clear the error state a failed query leaves behind
  int driver = 0, runtime = 0;
  (void)cudaDriverGetVersion(&driver);  // 0 when no driver is installed
  (void)cudaRuntimeGetVersion(&runtime);
  (void)cudaGetLastError();
  if (err == cudaSuccess && count > 0) {
    cudaError_t const ctx_err = cudaFree(nullptr);  // creates the primary context of device 0
    if (ctx_err != cudaSuccess) {
      std::printf("hseq_tests_cuda: FAILED: %d CUDA device(s) reported but creating a context failed: %s (%s); "
                  "driver %d, runtime %d\n",
                  count, cudaGetErrorName(ctx_err), cudaGetErrorString(ctx_err), driver, runtime);
      return DeviceProbe::kFail;
    }
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
      std::printf("hseq_tests_cuda: %d device(s); device 0: %s (sm_%d%d); driver %d, runtime %d\n", count, prop.name,
                  prop.major, prop.minor, driver, runtime);
    return DeviceProbe::kRun;
  }
  if (err == cudaSuccess || err == cudaErrorNoDevice) {
    std::printf("hseq_tests_cuda: no CUDA device (%s): skipping\n",
                err == cudaSuccess ? "device count 0" : "cudaErrorNoDevice");
    return DeviceProbe::kSkip;
  }
  char const* what = "";
  if (!hseq_nvidia_driver_present(&what)) {
    std::printf("hseq_tests_cuda: no NVIDIA driver installed (%s; cudaGetDeviceCount: %s): skipping\n", what,
                cudaGetErrorName(err));
    return DeviceProbe::kSkip;
  }
  std::printf("hseq_tests_cuda: FAILED: an NVIDIA driver is present (%s) but cudaGetDeviceCount failed: %s (%s); "
              "driver %d, runtime %d\n",
              what, cudaGetErrorName(err), cudaGetErrorString(err), driver, runtime);
  return DeviceProbe::kFail;
}

}  // namespace

namespace {

__global__ void add_arrays_kernel(float const* a, float const* b, float* c, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i];
}

#define HSEQ_TEST_CUDA_OK(expr) REQUIRE_EQ(cudaSuccess, (expr))

}  // namespace

TEST_CASE("cuda: a kernel adds two small arrays") {
  constexpr int kN = 1000;
  std::vector<float> a(kN), b(kN), c(kN, -1.0f);
  for (int i = 0; i < kN; ++i) {
    a[i] = float(i);
    b[i] = 0.5f * float(i) - 3.0f;
  }
  float *da = nullptr, *db = nullptr, *dc = nullptr;
  HSEQ_TEST_CUDA_OK(cudaMalloc(&da, kN * sizeof(float)));
  HSEQ_TEST_CUDA_OK(cudaMalloc(&db, kN * sizeof(float)));
  HSEQ_TEST_CUDA_OK(cudaMalloc(&dc, kN * sizeof(float)));
  HSEQ_TEST_CUDA_OK(cudaMemcpy(da, a.data(), kN * sizeof(float), cudaMemcpyHostToDevice));
  HSEQ_TEST_CUDA_OK(cudaMemcpy(db, b.data(), kN * sizeof(float), cudaMemcpyHostToDevice));
  add_arrays_kernel<<<(kN + 255) / 256, 256>>>(da, db, dc, kN);
  HSEQ_TEST_CUDA_OK(cudaGetLastError());
  HSEQ_TEST_CUDA_OK(cudaDeviceSynchronize());
  HSEQ_TEST_CUDA_OK(cudaMemcpy(c.data(), dc, kN * sizeof(float), cudaMemcpyDeviceToHost));
  HSEQ_TEST_CUDA_OK(cudaFree(da));
  HSEQ_TEST_CUDA_OK(cudaFree(db));
  HSEQ_TEST_CUDA_OK(cudaFree(dc));
  int wrong = 0;
  for (int i = 0; i < kN; ++i) wrong += c[i] != a[i] + b[i];
  CHECK_EQ(wrong, 0);
}

int main(int argc, char** argv) {
  switch (hseq_probe_cuda_device()) {
    case DeviceProbe::kSkip: return 77;
    case DeviceProbe::kFail: return 1;
    case DeviceProbe::kRun: break;
  }
  std::fflush(stdout);
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  return context.run();
}
