// L-BFGS (Nocedal 1980; Nocedal & Wright, Alg. 7.4 two-loop recursion) on flat double vectors,
// with a backtracking Armijo line search. Sandblaster (Dean et al. 2012, §4.2) later runs the
// same recursion as vector operations on the shards; this is the single-process reference.
#pragma once

#include <deque>
#include <functional>
#include <vector>

namespace distbelief {

// Computes direction = -H g from the history pairs (s_i = x_{i+1} - x_i, y_i = g_{i+1} - g_i),
// oldest first, with the initial Hessian scaled by s'y / y'y of the newest pair.
std::vector<double> LbfgsDirection(const std::deque<std::vector<double>>& s,
                                   const std::deque<std::vector<double>>& y,
                                   const std::vector<double>& g);

struct LbfgsOptions {
  int history = 10;            // pairs kept
  int max_iterations = 200;
  double gradient_tolerance = 1e-6;  // stop when |g|_inf falls below
  double armijo = 1e-4;        // sufficient-decrease constant
};

struct LbfgsResult {
  double value = 0.0;
  int iterations = 0;
  bool converged = false;
};

// Minimizes f starting from *x; f(x, grad) returns f(x) and writes its gradient.
LbfgsResult LbfgsMinimize(const std::function<double(const std::vector<double>&,
                                                     std::vector<double>*)>& f,
                          std::vector<double>* x, const LbfgsOptions& options);

}  // namespace distbelief
