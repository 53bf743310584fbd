// GEMM for distbelief: the only file that calls a BLAS. oneDNN's sgemm was chosen by measurement
// (bench/blas_bench prints oneDNN against OpenBLAS at the layers' shapes) and runs on the same
// OpenMP team as the rest of the program.
#pragma once

#include <cstdint>

namespace distbelief {

// Row-major C (M, N) = alpha * op(A) * op(B) + beta * C, where op(A) is (M, K) and op(B) is (K, N).
// A is (M, K) with leading dimension lda, or (K, M) when trans_a. Likewise B.
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// Convenience for packed operands: lda/ldb/ldc follow from the shapes.
inline void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float* a, const float* b, float beta, float* c) {
  Gemm(trans_a, trans_b, m, n, k, alpha, a, trans_a ? m : k, b, trans_b ? k : n, beta, c, n);
}

}  // namespace distbelief
