// SPDX-License-Identifier: MIT
// Main of hseq_tests_cuda (every test/cuda/*.cu). Without a usable CUDA device it prints one line
// and exits 77, which ctest's SKIP_RETURN_CODE reports as skipped; with one it runs doctest.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <cstdio>
#include <vector>

#if __has_include("hseq/backend/cuda.hpp")
#include "hseq/backend/cuda.hpp"
#endif

/// True when the CUDA runtime reports at least one device; any error means no device.
static bool hseq_cuda_device_available() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  cudaGetLastError();  // clear the sticky error state a failed query leaves behind
  return err == cudaSuccess && count > 0;
}

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
  if (!hseq_cuda_device_available()) {
    std::printf("no CUDA device: skipping\n");
    return 77;
  }
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  return context.run();
}
