// Helpers shared by the benchmarks: wall-clock timing of a closure and the machine's sgemm peak,
// measured in the same run so that ratios never mix machines or moments.
#pragma once

#include <chrono>
#include <functional>
#include <vector>

#include "distbelief/tensor/blas.h"

namespace distbelief::bench {

// Seconds per call of f: one warm-up call, then the best of 3 rounds of calls lasting >= min_s.
inline double TimePerCall(const std::function<void()>& f, double min_s = 0.3) {
  f();
  double best = 1e30;
  for (int round = 0; round < 3; ++round) {
    int calls = 0;
    const auto t0 = std::chrono::steady_clock::now();
    double elapsed = 0.0;
    do {
      f();
      ++calls;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (elapsed < min_s);
    best = std::min(best, elapsed / calls);
  }
  return best;
}

// GFLOP/s of the BLAS's sgemm on a large square product: the ceiling for dense layers here.
inline double SgemmPeakGflops() {
  const int n = 1536;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  const double t = TimePerCall([&] { Gemm(false, false, n, n, n, 1.0f, a.data(), b.data(), 0.0f, c.data()); });
  return 2.0 * n * n * n / t / 1e9;
}

}  // namespace distbelief::bench
