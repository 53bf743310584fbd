// L-BFGS (Nocedal 1980; Nocedal & Wright, Alg. 7.4 two-loop recursion and 7.5) with a
// backtracking Armijo line search, written once over a small vector-space interface. The
// iteration never holds a vector: it asks the space for dot products and in-place operations on
// vectors it names by number. InMemoryLbfgsSpace keeps them in this process; Sandblaster (Dean et
// al. 2012, §4.2; train/sandblaster.h) keeps them on the parameter-server shards, so only
// scalars reach its coordinator.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

#include "distbelief/base/status.h"

namespace distbelief {

class LbfgsSpace {
 public:
  using Vec = int;
  // The point being optimized: Evaluate runs there, and the iteration moves it in place.
  static constexpr Vec kX = 0;
  virtual ~LbfgsSpace() = default;
  // f(x); writes its gradient into g. A vector the iteration has not written before is zero.
  virtual StatusOr<double> Evaluate(Vec g) = 0;
  virtual StatusOr<double> Dot(Vec a, Vec b) = 0;
  virtual Status Axpy(double alpha, Vec x, Vec y) = 0;  // y += alpha x
  virtual Status Scale(double alpha, Vec x) = 0;        // x *= alpha
  virtual Status Copy(Vec from, Vec to) = 0;            // to = from
};

struct LbfgsOptions {
  int history = 10;                  // pairs (s, y) kept; 0 = steepest descent
  int64_t max_iterations = 200;
  double gradient_tolerance = 0.0;   // stop when |g|_2 falls below; 0 = run every iteration
  double armijo = 1e-4;              // sufficient-decrease constant
  int max_line_search = 30;          // halvings of the step before the iteration moves on
};

struct LbfgsResult {
  double value = 0.0;       // f at the final x
  double first_value = 0.0; // f at the starting x
  int64_t iterations = 0;
  int64_t evaluations = 0;
  bool converged = false;   // the gradient tolerance was met
};

// One curvature pair: vectors s = x_{k+1} - x_k and y = g_{k+1} - g_k, and rho = 1 / s'y.
struct LbfgsPair {
  LbfgsSpace::Vec s, y;
  double rho;
};

// The two-loop recursion: d = -H g from `pairs` (oldest first), the initial Hessian scaled by
// s'y / y'y of the newest pair (the identity without pairs).
Status LbfgsDirection(LbfgsSpace* space, const std::deque<LbfgsPair>& pairs, LbfgsSpace::Vec g,
                      LbfgsSpace::Vec d);

// Minimizes f from the space's current x. `on_iteration(iteration, f)` (optional) is called after
// each iteration. Errors from the space end the run with that status.
StatusOr<LbfgsResult> LbfgsMinimize(LbfgsSpace* space, const LbfgsOptions& options,
                                    const std::function<void(int64_t, double)>& on_iteration = {});

// Vectors of doubles in this process; Evaluate calls `f(x, grad)`, which returns f(x).
class InMemoryLbfgsSpace : public LbfgsSpace {
 public:
  using Function = std::function<double(const std::vector<double>& x, std::vector<double>* grad)>;
  InMemoryLbfgsSpace(std::vector<double> x, Function f) : f_(std::move(f)) { v_.push_back(std::move(x)); }
  // Vector v (created zero on first use); references stay valid as others are created.
  std::vector<double>& vec(Vec v);
  StatusOr<double> Evaluate(Vec g) override;
  StatusOr<double> Dot(Vec a, Vec b) override;
  Status Axpy(double alpha, Vec x, Vec y) override;
  Status Scale(double alpha, Vec x) override;
  Status Copy(Vec from, Vec to) override;

 private:
  std::deque<std::vector<double>> v_;  // a deque: growing it keeps references valid
  Function f_;
};

}  // namespace distbelief
