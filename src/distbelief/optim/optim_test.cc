#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "distbelief/base/parallel.h"
#include "distbelief/base/random.h"
#include "distbelief/optim/lbfgs.h"
#include "distbelief/optim/projection.h"
#include "distbelief/optim/schedule.h"
#include "distbelief/optim/update_rules.h"

namespace distbelief {
namespace {

// Minimizes f(w) = 0.5 sum_i a_i (w_i - c_i)^2 with the rule; returns the final distance to c.
double Minimize(const UpdateRule& rule, int steps) {
  const std::vector<float> a = {1.0f, 4.0f, 0.5f}, c = {1.0f, -2.0f, 3.0f};
  std::vector<float> w(3, 0.0f), g(3), state(3 * rule.StatePerParam(), 0.0f);
  for (int s = 1; s <= steps; ++s) {
    for (int i = 0; i < 3; ++i) g[i] = a[i] * (w[i] - c[i]);
    rule.Apply(w, g, state, s);
  }
  double d = 0;
  for (int i = 0; i < 3; ++i) d += (w[i] - c[i]) * (w[i] - c[i]);
  return std::sqrt(d);
}

TEST(UpdateRules, EachConvergesOnAQuadratic) {
  OptimizerOptions o;
  o.learning_rate = 0.1f;
  EXPECT_LT(Minimize(Sgd(o), 500), 1e-3);
  o.momentum = 0.9f;
  EXPECT_LT(Minimize(Sgd(o), 500), 1e-3);
  o.learning_rate = 0.5f;
  EXPECT_LT(Minimize(Adagrad(o), 2000), 1e-2);
  o.learning_rate = 0.05f;
  EXPECT_LT(Minimize(Adam(o), 2000), 1e-2);
}

TEST(UpdateRules, SgdStepIsExact) {
  OptimizerOptions o;
  o.learning_rate = 0.5f;
  std::vector<float> w = {1.0f}, g = {0.25f}, st;
  Sgd(o).Apply(w, g, st, 1);
  EXPECT_FLOAT_EQ(w[0], 1.0f - 0.5f * 0.25f);
}

TEST(UpdateRules, AdagradUsesSumOfSquaredGradients) {
  // Dean et al. 2012 §4.1: eta_i = gamma / sqrt(sum of squared gradients of parameter i).
  OptimizerOptions o;
  o.learning_rate = 1.0f;
  o.epsilon = 0.0f;
  std::vector<float> w = {0.0f}, st = {0.0f};
  std::vector<float> g1 = {3.0f}, g2 = {4.0f};
  Adagrad rule(o);
  rule.Apply(w, g1, st, 1);
  EXPECT_FLOAT_EQ(w[0], -1.0f);  // 3 / sqrt(9)
  rule.Apply(w, g2, st, 2);
  EXPECT_FLOAT_EQ(w[0], -1.0f - 4.0f / 5.0f);  // 4 / sqrt(9 + 16)
  EXPECT_FLOAT_EQ(st[0], 25.0f);
}

TEST(UpdateRules, OnThePoolEqualsOneThreadBitwise) {
  // Chunks over 2 threads, an odd size: each chunk's elements (and Adam's second moments, stored
  // after all n first moments) must be the ones a single pass updates.
  SetNumThreads(2);
  const int64_t n = 100003;
  for (Optimizer kind : {Optimizer::kSgd, Optimizer::kAdagrad, Optimizer::kAdam}) {
    OptimizerOptions o;
    o.name = kind;
    o.learning_rate = 0.1f;
    o.momentum = 0.9f;
    o.weight_decay = 0.01f;
    auto rule = MakeUpdateRule(o);
    ASSERT_TRUE(rule.ok());
    std::vector<float> w(n), g(n), st(n * (*rule)->StatePerParam(), 0.0f);
    for (int64_t i = 0; i < n; ++i) w[i] = std::sin(0.37 * i), g[i] = std::cos(0.11 * i);
    std::vector<float> w2 = w, st2 = st;
    for (int64_t step = 1; step <= 3; ++step) {
      (*rule)->Apply(w, g, st, step);
      (*rule)->ApplyOnPool(w2, g, st2, step);
    }
    EXPECT_EQ(w, w2) << (*rule)->Name();
    EXPECT_EQ(st, st2) << (*rule)->Name();
  }
  SetNumThreads(1);
}

TEST(UpdateRules, MadeByKindAndRefusedWithoutARate) {
  OptimizerOptions o;
  for (Optimizer kind : {Optimizer::kSgd, Optimizer::kAdagrad, Optimizer::kAdam}) {
    o.name = kind;
    auto r = MakeUpdateRule(o);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)->Name(), OptimizerName(kind));
  }
  o.learning_rate = 0.0f;
  auto r = MakeUpdateRule(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("learning_rate"), std::string::npos);
}

TEST(Schedule, WarmsUpThenDecaysToItsFinalFraction) {
  const ScheduleOptions constant;
  EXPECT_FLOAT_EQ(ScheduledRate(constant, 0.5f, 7, 100), 0.5f);
  const ScheduleOptions cosine{Schedule::kCosine, 10, 0.1f};
  EXPECT_FLOAT_EQ(ScheduledRate(cosine, 1.0f, 0, 110), 0.1f);    // step 1 of 10 of warmup
  EXPECT_FLOAT_EQ(ScheduledRate(cosine, 1.0f, 9, 110), 1.0f);    // the end of warmup
  EXPECT_FLOAT_EQ(ScheduledRate(cosine, 1.0f, 10, 110), 1.0f);   // the top of the cosine
  EXPECT_NEAR(ScheduledRate(cosine, 1.0f, 109, 110), 0.1f, 1e-6);  // the last step
  EXPECT_NEAR(ScheduledRate(cosine, 1.0f, 60, 111), 0.55f, 1e-6);  // halfway: the mean of top and bottom
  float last = 2.0f;
  for (int64_t s = 10; s < 110; ++s) {  // decreasing after warmup
    const float r = ScheduledRate(cosine, 1.0f, s, 110);
    EXPECT_LE(r, last);
    last = r;
  }
}

TEST(Projection, BoundsEveryBlockAndOnlyWholeBlocksOfARange) {
  std::vector<float> v = {3, 4, 0.3f, 0.4f, 6, 8, 1, 1};  // blocks of 2 from offset 0: norms 5, 0.5, 10
  ProjectBlockNorms(v, {{0, 2, 3}, 1.0f});
  EXPECT_FLOAT_EQ(v[0], 0.6f);
  EXPECT_FLOAT_EQ(v[1], 0.8f);
  EXPECT_FLOAT_EQ(v[2], 0.3f);  // under the bound: untouched
  EXPECT_FLOAT_EQ(v[4], 0.6f);
  EXPECT_FLOAT_EQ(v[6], 1.0f);  // outside the blocks
  // Blocks of 4 at offset 2 (keys 2..13), seen from the range [5, 14): the whole blocks in it are
  // the ones at 6 and 10, at offsets 1 and 5 of the range.
  const NormBound part = RestrictToRange({{2, 4, 3}, 1.0f}, 5, 14);
  EXPECT_EQ(part.blocks.offset, 1);
  EXPECT_EQ(part.blocks.count, 2);
  EXPECT_EQ(RestrictToRange({{2, 4, 3}, 1.0f}, 20, 30).blocks.count, 0);
}

// On the pool the projection gives the serial one's result bit for bit (each block is one
// thread's), every block bounded, with blocks on both threads' sides.
TEST(Projection, OnPoolIsBitwiseTheSerialProjection) {
  const int saved = NumThreads();
  SetNumThreads(2);
  Random rng(3);
  std::vector<float> v(5 + 4096 * 7);
  for (float& x : v) x = rng.Uniform(-0.05f, 0.05f);
  for (int64_t b = 0; b < 4096; b += 3) v[5 + b * 7] = 2.0f;  // every third block over the bound
  std::vector<float> serial = v, pooled = v;
  const NormBound bound{{5, 7, 4096}, 1.0f};
  ProjectBlockNorms(serial, bound);
  ProjectBlockNormsOnPool(pooled, bound);
  SetNumThreads(saved);
  EXPECT_EQ(serial, pooled);
  for (int64_t b = 0; b < 4096; ++b) {
    double sq = 0;
    for (int j = 0; j < 7; ++j) sq += double(pooled[5 + b * 7 + j]) * pooled[5 + b * 7 + j];
    ASSERT_LE(sq, 1.0 + 1e-5) << b;
  }
  EXPECT_NE(pooled[5 + 4095 * 7], v[5 + 4095 * 7]);  // the last block (the second thread's) was scaled
  EXPECT_EQ(pooled[4], v[4]);                        // before the blocks: untouched
}

TEST(Clip, ScalesToTheGlobalNorm) {
  std::vector<float> a = {3.0f, 0.0f}, b = {4.0f};
  std::vector<std::span<float>> grads = {a, b};
  EXPECT_DOUBLE_EQ(ClipByGlobalNorm(grads, 1.0f), 5.0);
  EXPECT_FLOAT_EQ(a[0], 0.6f);
  EXPECT_FLOAT_EQ(b[0], 0.8f);
  std::vector<float> c = {0.1f};
  std::vector<std::span<float>> small = {c};
  ClipByGlobalNorm(small, 1.0f);
  EXPECT_FLOAT_EQ(c[0], 0.1f);
}

// L-BFGS on an in-memory vector space: f(x) and its gradient from a function of std::vectors.
StatusOr<LbfgsResult> Minimize(const InMemoryLbfgsSpace::Function& f, std::vector<double>* x, const LbfgsOptions& o) {
  InMemoryLbfgsSpace space(*x, f);
  auto r = LbfgsMinimize(&space, o);
  *x = space.vec(LbfgsSpace::kX);
  return r;
}

TEST(Lbfgs, SolvesAnIllConditionedQuadraticFarFasterThanSteepestDescent) {
  const int n = 20;
  auto f = [&](const std::vector<double>& x, std::vector<double>* g) {
    double v = 0;
    for (int i = 0; i < n; ++i) {
      const double a = std::pow(1.27, i);  // condition number 1.27^19 ~ 94
      v += 0.5 * a * (x[i] - 1.0) * (x[i] - 1.0);
      (*g)[i] = a * (x[i] - 1.0);
    }
    return v;
  };
  LbfgsOptions o;
  o.gradient_tolerance = 1e-7;
  o.max_iterations = 100000;
  o.max_line_search = 50;
  std::vector<double> x(n, 0.0);
  const auto r = Minimize(f, &x, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->converged);
  for (double v : x) EXPECT_NEAR(v, 1.0, 1e-6);
  // history 0 is steepest descent with the same line search.
  o.history = 0;
  std::vector<double> x_sd(n, 0.0);
  const auto sd = Minimize(f, &x_sd, o);
  ASSERT_TRUE(sd.ok());
  EXPECT_TRUE(sd->converged);
  EXPECT_LT(r->iterations * 2, sd->iterations);
}

TEST(Lbfgs, SolvesRosenbrock) {
  auto f = [](const std::vector<double>& x, std::vector<double>* g) {
    const double a = 1 - x[0], b = x[1] - x[0] * x[0];
    (*g)[0] = -2 * a - 400 * x[0] * b;
    (*g)[1] = 200 * b;
    return a * a + 100 * b * b;
  };
  std::vector<double> x = {-1.2, 1.0};
  LbfgsOptions o;
  o.max_iterations = 500;
  o.gradient_tolerance = 1e-9;
  o.max_line_search = 50;
  const auto r = Minimize(f, &x, o);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->converged);
  EXPECT_NEAR(x[0], 1.0, 1e-5);
  EXPECT_NEAR(x[1], 1.0, 1e-5);
}

TEST(Lbfgs, TwoLoopWithOnePairMatchesTheSecantCondition) {
  // With one pair, H y = s must hold for the BFGS update of the scaled identity.
  InMemoryLbfgsSpace space({0.0, 0.0}, nullptr);
  space.vec(5) = {1.0, 2.0};  // s
  space.vec(6) = {2.0, 1.0};  // y
  const double sy = 1.0 * 2.0 + 2.0 * 1.0;
  ASSERT_TRUE(LbfgsDirection(&space, {{5, 6, 1.0 / sy}}, 6, 2).ok());  // d = -H y
  EXPECT_NEAR(-space.vec(2)[0], 1.0, 1e-12);
  EXPECT_NEAR(-space.vec(2)[1], 2.0, 1e-12);
}

// The space's errors end the run with that status (a lost shard, for Sandblaster).
TEST(Lbfgs, AnErrorFromTheSpaceEndsTheRun) {
  int calls = 0;
  class Failing : public InMemoryLbfgsSpace {
   public:
    Failing(int* calls) : InMemoryLbfgsSpace({1.0}, [](const std::vector<double>& x, std::vector<double>* g) {
      (*g)[0] = 2 * x[0];
      return x[0] * x[0];
    }), calls_(calls) {}
    StatusOr<double> Evaluate(Vec g) override {
      if (++*calls_ > 1) return absl::UnavailableError("shard gone");
      return InMemoryLbfgsSpace::Evaluate(g);
    }
   private:
    int* calls_;
  } space(&calls);
  LbfgsOptions o;
  o.max_iterations = 100;
  const auto r = LbfgsMinimize(&space, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace distbelief
