#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "distbelief/optim/lbfgs.h"
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

TEST(UpdateRules, UnknownNameIsAnError) {
  OptimizerOptions o;
  o.name = "rmsprop";
  auto r = MakeUpdateRule(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("rmsprop"), std::string::npos);
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
  std::vector<double> x(n, 0.0);
  const auto r = LbfgsMinimize(f, &x, o);
  EXPECT_TRUE(r.converged);
  for (double v : x) EXPECT_NEAR(v, 1.0, 1e-6);
  // history 0 is steepest descent with the same line search.
  o.history = 0;
  std::vector<double> x_sd(n, 0.0);
  const auto sd = LbfgsMinimize(f, &x_sd, o);
  EXPECT_TRUE(sd.converged);
  EXPECT_LT(r.iterations * 2, sd.iterations);
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
  const auto r = LbfgsMinimize(f, &x, o);
  EXPECT_TRUE(r.converged);
  EXPECT_NEAR(x[0], 1.0, 1e-5);
  EXPECT_NEAR(x[1], 1.0, 1e-5);
}

TEST(Lbfgs, TwoLoopWithOnePairMatchesTheSecantCondition) {
  // With one pair, H y = s must hold for the BFGS update of the scaled identity.
  std::deque<std::vector<double>> s = {{1.0, 2.0}}, y = {{2.0, 1.0}};
  const auto d = LbfgsDirection(s, y, y[0]);  // -H y
  EXPECT_NEAR(-d[0], 1.0, 1e-12);
  EXPECT_NEAR(-d[1], 2.0, 1e-12);
}

}  // namespace
}  // namespace distbelief
