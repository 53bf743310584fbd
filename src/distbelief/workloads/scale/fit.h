// Scaling-law fits (Hoffmann et al. 2022, appendix D.2): the loss of a model with N parameters
// trained on D tokens is modelled as
//     L(N, D) = E + A / N^alpha + B / D^beta,
// fitted in log space, log L ~ LSE(a - alpha log N, b - beta log D, e) with A = e^a, B = e^b,
// E = e^e, minimizing a Huber loss (delta 1e-3) of the residuals with Ceres from a grid of initial
// points and keeping the best. One-variable laws L(x) = E + A / x^alpha are fitted the same way.
// Bootstrap intervals refit on resampled points.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "distbelief/base/status.h"

namespace distbelief {

struct ScalePoint {
  double n = 0, d = 0, loss = 0;
};

struct JointLaw {
  double e = 0, a = 0, alpha = 0, b = 0, beta = 0;  // E, A, B as themselves (not logs)
  double objective = 0;                            // Huber loss at the optimum
  int64_t points = 0;
  double Predict(double n, double d) const;
  // Compute-optimal allocation for C = 6 N D (Hoffmann et al. eq. 4).
  double OptimalN(double flops) const;
  double OptimalD(double flops) const { return flops / (6.0 * OptimalN(flops)); }
};

struct PowerLaw {
  double e = 0, a = 0, alpha = 0;
  double objective = 0;
  int64_t points = 0;
  double Predict(double x) const;
};

struct Interval {
  double lo = 0, hi = 0;
};

struct FitOptions {
  double huber_delta = 1e-3;
  int64_t bootstrap = 0;  // resamples for intervals; 0 = none
  double confidence = 0.95;
  uint64_t seed = 1;
};

struct JointFit {
  JointLaw law;
  // Intervals (from the bootstrap) for E, A, alpha, B, beta; empty without a bootstrap.
  std::vector<Interval> intervals;
};

struct PowerFit {
  PowerLaw law;
  std::vector<Interval> intervals;  // E, A, alpha
};

// kInvalidArgument when there are fewer points than the law's 5 (or 3) parameters, or a point is
// not finite and positive.
StatusOr<JointFit> FitJointLaw(std::span<const ScalePoint> points, const FitOptions& o);
StatusOr<PowerFit> FitPowerLaw(std::span<const double> x, std::span<const double> loss, const FitOptions& o);

}  // namespace distbelief
