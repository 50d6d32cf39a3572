// SPDX-License-Identifier: MIT
// Scratch measurement for issue 13 (not in the repository): oneDNN matmul fp32 and bf16 (fp32 out)
// against OpenBLAS sgemm, M x K times K x N.
#include <oneapi/dnnl/dnnl.hpp>
#include <cblas.h>
#include <chrono>
#include <cstdio>
#include <vector>
extern "C" char* openblas_get_corename();
using namespace dnnl;
template <class F> double secs(F f, int reps) {
  f();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}
int main() {
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  int shapes[][3] = {{2048, 256, 1024}, {4096, 256, 256}, {4096, 1024, 256}, {4096, 256, 1024}};
  std::printf("openblas core %s\n", openblas_get_corename());
  for (auto& sh : shapes) {
    long M = sh[0], K = sh[1], N = sh[2];
    double flops = 2.0 * M * K * N;
    std::vector<float> A(M * K, 0.5f), B(K * N, 0.25f), C(M * N);
    double tb = secs([&] { cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, A.data(), K, B.data(), N, 0, C.data(), N); }, 20);
    auto run = [&](memory::data_type dt) {
      memory::desc a({M, K}, dt, memory::format_tag::ab), b({K, N}, dt, memory::format_tag::ab),
          c({M, N}, memory::data_type::f32, memory::format_tag::ab);
      matmul::desc d(a, b, c);
      matmul::primitive_desc pd(d, eng);
      memory am(a, eng), bm(b, eng), cm(c, eng);
      matmul mm(pd);
      return secs([&] { mm.execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}}); s.wait(); }, 20);
    };
    double tf = run(memory::data_type::f32), tbf = run(memory::data_type::bf16);
    std::printf("%ldx%ldx%ld: openblas sgemm %.0f GFLOP/s, onednn f32 %.0f, onednn bf16 %.0f\n", M, K, N,
                flops / tb / 1e9, flops / tf / 1e9, flops / tbf / 1e9);
  }
}
