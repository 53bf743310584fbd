// Chooses the BLAS by measurement: sgemm GFLOP/s of oneDNN and OpenBLAS, side by side in one run,
// at a large square shape (the machine's peak) and at the shapes distbelief's layers call.
// Usage: blas_bench [threads]   (run once with 1 and once with 2)
#include <cblas.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.h"

extern "C" void openblas_set_num_threads(int);

namespace {

double Seconds(const std::function<void()>& f, int reps) {
  f();  // warm up
  double best = 1e9;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) f();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
    if (s < best) best = s;
  }
  return best;
}

struct Shape {
  const char* what;
  char ta, tb;
  int m, n, k;
};

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);
  const std::vector<Shape> shapes = {
      {"square 2048 (peak)", 'N', 'N', 2048, 2048, 2048},
      {"fc fwd 128x1024x784 (NT)", 'N', 'T', 128, 1024, 784},
      {"fc dW 1024x784x128 (TN)", 'T', 'N', 1024, 784, 128},
      {"fc dx 128x784x1024 (NN)", 'N', 'N', 128, 784, 1024},
      {"fc fwd 128x1024x1024 (NT)", 'N', 'T', 128, 1024, 1024},
      {"lstm step 64x1024x256 (NT)", 'N', 'T', 64, 1024, 256},
      {"gpt qkv 2048x768x256 (NT)", 'N', 'T', 2048, 768, 256},
      {"logits 2048x8000x256 (NT)", 'N', 'T', 2048, 8000, 256},
  };
  std::printf("threads: %d\n%-30s %12s %12s %8s\n", threads, "shape", "oneDNN", "OpenBLAS", "ratio");
  for (const Shape& s : shapes) {
    const int lda = s.ta == 'N' ? s.k : s.m, ldb = s.tb == 'N' ? s.n : s.k;
    std::vector<float> a(size_t(s.m) * s.k, 0.5f), b(size_t(s.k) * s.n, 0.25f), c(size_t(s.m) * s.n);
    const double flops = 2.0 * s.m * s.n * s.k;
    const int reps = std::max(1, int(2e9 / flops));
    const double t_dnnl = Seconds([&] {
      dnnl_sgemm(s.ta, s.tb, s.m, s.n, s.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), s.n);
    }, reps);
    const double t_ob = Seconds([&] {
      cblas_sgemm(CblasRowMajor, s.ta == 'N' ? CblasNoTrans : CblasTrans,
                  s.tb == 'N' ? CblasNoTrans : CblasTrans, s.m, s.n, s.k, 1.0f, a.data(), lda,
                  b.data(), ldb, 0.0f, c.data(), s.n);
    }, reps);
    std::printf("%-30s %9.1f GF %9.1f GF %7.2fx\n", s.what, flops / t_dnnl / 1e9, flops / t_ob / 1e9,
                t_ob / t_dnnl);
  }
  return 0;
}
