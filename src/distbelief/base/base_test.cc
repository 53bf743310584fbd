// The foundations: the seeded generator, the one shuffle, the thread pool's loop, Status macros.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "distbelief/base/parallel.h"
#include "distbelief/base/random.h"
#include "distbelief/base/shuffle.h"
#include "distbelief/base/status.h"

namespace distbelief {
namespace {

TEST(Random, SameSeedSameStream) {
  Random a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const uint32_t x = a.Next();
    EXPECT_EQ(x, b.Next());
    differs |= x != c.Next();
  }
  EXPECT_TRUE(differs);
  double mean = 0;
  for (int i = 0; i < 20000; ++i) mean += a.Normal();
  EXPECT_NEAR(mean / 20000, 0.0, 0.03);
}

TEST(Shuffle, IsAPermutationFixedByItsSeedAndUniform) {
  const std::vector<int64_t> a = ShuffledRange(1000, 5), b = ShuffledRange(1000, 5), c = ShuffledRange(1000, 6);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(1000);
  std::iota(iota.begin(), iota.end(), 0);
  EXPECT_EQ(sorted, iota);
  // Every element lands in every position about equally often (chi-square-like bound).
  std::vector<std::vector<int>> counts(4, std::vector<int>(4, 0));
  for (uint64_t seed = 0; seed < 8000; ++seed) {
    const std::vector<int64_t> p = ShuffledRange(4, seed);
    for (int i = 0; i < 4; ++i) counts[p[i]][i]++;
  }
  for (const auto& row : counts)
    for (int n : row) EXPECT_NEAR(n, 2000, 200);
}

TEST(Parallel, CoversEveryIndexOnce) {
  std::vector<int> hits(1000, 0);
  ParallelFor(1000, 7, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) hits[i]++;
  });
  for (int h : hits) EXPECT_EQ(h, 1);
}

TEST(Parallel, SerialScopeRunsLoopsOnOneThreadAndRestores) {
  const int before = NumThreads();
  SetNumThreads(2);
  auto chunks = [] {
    int n = 0;
    ParallelFor(1000, 1, [&](int64_t, int64_t) {
#pragma omp atomic
      ++n;
    });
    return n;
  };
  EXPECT_EQ(chunks(), 2);
  {
    SerialScope serial(true);
    EXPECT_EQ(NumThreads(), 1);
    EXPECT_EQ(chunks(), 1);
  }
  EXPECT_EQ(NumThreads(), 2);
  {
    SerialScope shared(false);
    EXPECT_EQ(chunks(), 2);
  }
  SetNumThreads(before);
}

Status FailIfNegative(int x) {
  if (x < 0) return absl::InvalidArgumentError("negative");
  return absl::OkStatus();
}
StatusOr<int> Twice(int x) {
  DB_RETURN_IF_ERROR(FailIfNegative(x));
  return 2 * x;
}
StatusOr<int> Quadruple(int x) {
  DB_ASSIGN_OR_RETURN(const int y, Twice(x));
  return 2 * y;
}

TEST(Status, MacrosReturnTheFirstError) {
  EXPECT_EQ(*Quadruple(3), 12);
  const StatusOr<int> bad = Quadruple(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "negative");
}

}  // namespace
}  // namespace distbelief
