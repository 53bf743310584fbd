#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

#include "distbelief/base/parallel.h"
#include "distbelief/base/random.h"
#include "distbelief/tensor/blas.h"
#include "distbelief/tensor/tensor.h"
#include "distbelief/tensor/vmath.h"

namespace distbelief {
namespace {

TEST(Tensor, ShapeAlignmentAndCopies) {
  Tensor t({3, 5, 7});
  EXPECT_EQ(t.size(), 105);
  EXPECT_EQ(t.dim(-1), 7);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
  for (float v : t.span()) EXPECT_EQ(v, 0.0f);
  t[4] = 2.0f;
  Tensor u = t;
  u[4] = 3.0f;
  EXPECT_EQ(t[4], 2.0f);
  t.Reshape({105});
  EXPECT_EQ(t.ShapeString(), "(105)");
}

TEST(Tensor, MovedFromTensorIsEmptyAndReusable) {
  Tensor a({4, 4});
  a[3] = 1.0f;
  Tensor b = std::move(a);
  EXPECT_EQ(b[3], 1.0f);
  EXPECT_EQ(a.size(), 0);
  a.Resize({2, 2}).Fill(5.0f);  // must allocate afresh, not reuse the moved storage
  EXPECT_EQ(a[3], 5.0f);
  EXPECT_EQ(b[3], 1.0f);
}

TEST(Blas, GemmMatchesNaiveForEveryTransposition) {
  Random rng(3);
  const int m = 13, n = 9, k = 17;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      std::vector<float> a(m * k), b(k * n), c(m * n, 1.0f);
      for (float& v : a) v = rng.Uniform(-1, 1);
      for (float& v : b) v = rng.Uniform(-1, 1);
      Gemm(ta, tb, m, n, k, 2.0f, a.data(), b.data(), 0.5f, c.data());
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
          double s = 0;
          for (int p = 0; p < k; ++p)
            s += double(ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
          EXPECT_NEAR(c[i * n + j], 2.0 * s + 0.5, 1e-4) << ta << tb;
        }
    }
}

TEST(Vmath, FastExpIsAccurate) {
  for (float x = -80.0f; x < 80.0f; x += 0.37f) {
    const double want = std::exp(double(x));
    EXPECT_NEAR(FastExp(x) / want, 1.0, 1e-6) << x;
  }
  EXPECT_NEAR(FastSigmoid(0.0f), 0.5f, 1e-7);
  EXPECT_NEAR(FastTanh(0.5f), std::tanh(0.5f), 1e-6);
}

// ZeroOnPool clears every element, of a tensor large enough to be split over the threads and of
// one too small to be.
TEST(Tensor, ZeroOnPoolClearsEveryElement) {
  const int saved = NumThreads();
  SetNumThreads(2);
  Tensor t({300000});
  t.Fill(5.0f);
  t.ZeroOnPool();
  SetNumThreads(saved);
  int64_t nonzero = 0;
  for (int64_t i = 0; i < t.size(); ++i) nonzero += t[i] != 0.0f;
  EXPECT_EQ(nonzero, 0);
  Tensor small({3});
  small.Fill(1.0f);
  small.ZeroOnPool();
  EXPECT_EQ(small[2], 0.0f);
}

// Copying an empty tensor (default-constructed or moved from) gives an empty tensor, no read.
TEST(Tensor, CopiesOfEmptyTensorsAreEmpty) {
  Tensor empty;
  Tensor copy(empty);
  EXPECT_EQ(copy.size(), 0);
  std::vector<Tensor> many(3, Tensor());
  EXPECT_EQ(many[2].size(), 0);
  Tensor full({2, 3});
  full = empty;
  EXPECT_EQ(full.size(), 0);
}

}  // namespace
}  // namespace distbelief
