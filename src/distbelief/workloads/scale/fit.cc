#include "distbelief/workloads/scale/fit.h"

#include <algorithm>
#include <cmath>

#include <ceres/ceres.h>

#include "distbelief/base/random.h"

namespace distbelief {
namespace {

// r = log(exp(a - alpha log N) + exp(b - beta log D) + exp(e)) - log L, computed stably.
struct JointResidual {
  double log_n, log_d, log_loss;
  template <typename T>
  bool operator()(const T* p, T* r) const {
    const T t1 = p[1] - p[2] * log_n, t2 = p[3] - p[4] * log_d, t0 = p[0];
    T m = t0;
    if (t1 > m) m = t1;
    if (t2 > m) m = t2;
    r[0] = m + ceres::log(ceres::exp(t0 - m) + ceres::exp(t1 - m) + ceres::exp(t2 - m)) - log_loss;
    return true;
  }
};

struct PowerResidual {
  double log_x, log_loss;
  template <typename T>
  bool operator()(const T* p, T* r) const {
    const T t1 = p[1] - p[2] * log_x, t0 = p[0];
    const T m = t1 > t0 ? t1 : t0;
    r[0] = m + ceres::log(ceres::exp(t0 - m) + ceres::exp(t1 - m)) - log_loss;
    return true;
  }
};

// Solves from one start; returns the final cost (Huber objective) and leaves the optimum in p.
template <typename Residual, int kParams>
double Solve(const std::vector<Residual>& rs, double delta, double* p) {
  ceres::Problem problem;
  for (const Residual& r : rs)
    problem.AddResidualBlock(new ceres::AutoDiffCostFunction<Residual, 1, kParams>(new Residual(r)),
                             new ceres::HuberLoss(delta), p);
  // Exponents stay in [0, 2.5]; logs of the constants in a generous box.
  for (int i = 0; i < kParams; ++i) {
    const bool exponent = (i == 2 || i == 4);
    problem.SetParameterLowerBound(p, i, exponent ? 0.0 : -20.0);
    problem.SetParameterUpperBound(p, i, exponent ? 2.5 : 40.0);
  }
  ceres::Solver::Options so;
  so.linear_solver_type = ceres::DENSE_QR;
  so.max_num_iterations = 200;
  so.function_tolerance = 1e-12;
  so.gradient_tolerance = 1e-14;
  so.parameter_tolerance = 1e-12;
  so.num_threads = 1;
  ceres::Solver::Summary summary;
  ceres::Solve(so, &problem, &summary);
  return summary.final_cost;
}

// Solves from every start; the best optimum and its cost.
template <typename Residual, int kParams>
std::pair<std::vector<double>, double> BestStart(const std::vector<Residual>& rs, double delta,
                                                 std::vector<std::vector<double>> starts) {
  std::pair<std::vector<double>, double> best{std::vector<double>(kParams, 0.0), INFINITY};
  for (std::vector<double>& p : starts)
    if (const double cost = Solve<Residual, kParams>(rs, delta, p.data()); cost < best.second) best = {p, cost};
  return best;
}

Status CheckPoint(double x, const char* what) {
  if (!(std::isfinite(x) && x > 0))
    return absl::InvalidArgumentError(std::string("a point has ") + what + " = " + std::to_string(x) +
                                      "; every point needs a finite, positive value");
  return absl::OkStatus();
}

// Best of a grid of starts (the grid of Hoffmann et al., coarser) plus any extra starts.
JointLaw FitJointOnce(std::span<const ScalePoint> pts, double delta, const std::vector<std::vector<double>>& extra,
                      bool full_grid) {
  std::vector<JointResidual> rs;
  for (const auto& q : pts) rs.push_back({std::log(q.n), std::log(q.d), std::log(q.loss)});
  std::vector<std::vector<double>> starts = extra;
  if (full_grid)
    for (double e : {-1.0, 0.0, 0.5, 1.0, 1.5})
      for (double a : {0.0, 5.0, 10.0, 20.0})
        for (double alpha : {0.1, 0.3, 0.6, 1.0})
          for (double b : {0.0, 5.0, 10.0, 20.0})
            for (double beta : {0.1, 0.3, 0.6, 1.0}) starts.push_back({e, a, alpha, b, beta});
  const auto [best, best_cost] = BestStart<JointResidual, 5>(rs, delta, starts);
  JointLaw law;
  law.e = std::exp(best[0]);
  law.a = std::exp(best[1]);
  law.alpha = best[2];
  law.b = std::exp(best[3]);
  law.beta = best[4];
  law.objective = best_cost;
  law.points = static_cast<int64_t>(pts.size());
  return law;
}

PowerLaw FitPowerOnce(std::span<const double> x, std::span<const double> loss, double delta,
                      const std::vector<std::vector<double>>& extra, bool full_grid) {
  std::vector<PowerResidual> rs;
  for (size_t i = 0; i < x.size(); ++i) rs.push_back({std::log(x[i]), std::log(loss[i])});
  std::vector<std::vector<double>> starts = extra;
  if (full_grid)
    for (double e : {-1.0, 0.0, 0.5, 1.0, 1.5})
      for (double a : {0.0, 2.0, 5.0, 10.0, 20.0})
        for (double alpha : {0.05, 0.1, 0.3, 0.6, 1.0}) starts.push_back({e, a, alpha});
  const auto [best, best_cost] = BestStart<PowerResidual, 3>(rs, delta, starts);
  PowerLaw law;
  law.e = std::exp(best[0]);
  law.a = std::exp(best[1]);
  law.alpha = best[2];
  law.objective = best_cost;
  law.points = static_cast<int64_t>(x.size());
  return law;
}

std::vector<Interval> Percentiles(std::vector<std::vector<double>> samples, double confidence) {
  std::vector<Interval> out;
  for (auto& s : samples) {
    std::sort(s.begin(), s.end());
    const double lo_q = (1.0 - confidence) / 2.0, hi_q = 1.0 - lo_q;
    const auto at = [&](double q) { return s[std::min(s.size() - 1, static_cast<size_t>(q * (s.size() - 1) + 0.5))]; };
    out.push_back({at(lo_q), at(hi_q)});
  }
  return out;
}

}  // namespace

double JointLaw::Predict(double n, double d) const { return e + a / std::pow(n, alpha) + b / std::pow(d, beta); }

double JointLaw::OptimalN(double flops) const {
  const double g = std::pow(alpha * a / (beta * b), 1.0 / (alpha + beta));
  return g * std::pow(flops / 6.0, beta / (alpha + beta));
}

double PowerLaw::Predict(double x) const { return e + a / std::pow(x, alpha); }

StatusOr<JointFit> FitJointLaw(std::span<const ScalePoint> points, const FitOptions& o) {
  if (points.size() < 6)
    return absl::InvalidArgumentError("L(N, D) has 5 parameters; fitting it needs at least 6 points, got " +
                                      std::to_string(points.size()));
  for (const auto& q : points) {
    DB_RETURN_IF_ERROR(CheckPoint(q.n, "N"));
    DB_RETURN_IF_ERROR(CheckPoint(q.d, "D"));
    DB_RETURN_IF_ERROR(CheckPoint(q.loss, "loss"));
  }
  JointFit fit;
  fit.law = FitJointOnce(points, o.huber_delta, {}, true);
  if (o.bootstrap > 0) {
    const JointLaw& l = fit.law;
    const std::vector<double> warm = {std::log(l.e), std::log(l.a), l.alpha, std::log(l.b), l.beta};
    std::vector<std::vector<double>> samples(5);
    Random rng(o.seed);
    std::vector<ScalePoint> resample(points.size());
    for (int64_t k = 0; k < o.bootstrap; ++k) {
      for (auto& q : resample) q = points[rng.UniformInt(points.size())];
      const JointLaw b = FitJointOnce(resample, o.huber_delta,
                                      {warm, {0.5, 5.0, 0.3, 5.0, 0.3}, {1.0, 10.0, 0.6, 10.0, 0.6}}, false);
      for (int i = 0; const double v : {b.e, b.a, b.alpha, b.b, b.beta}) samples[i++].push_back(v);
    }
    fit.intervals = Percentiles(std::move(samples), o.confidence);
  }
  return fit;
}

StatusOr<PowerFit> FitPowerLaw(std::span<const double> x, std::span<const double> loss, const FitOptions& o) {
  if (x.size() != loss.size()) return absl::InvalidArgumentError("x and loss differ in length");
  if (x.size() < 4)
    return absl::InvalidArgumentError("L(x) = E + A/x^alpha has 3 parameters; fitting it needs at least 4 points, got " +
                                      std::to_string(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    DB_RETURN_IF_ERROR(CheckPoint(x[i], "x"));
    DB_RETURN_IF_ERROR(CheckPoint(loss[i], "loss"));
  }
  PowerFit fit;
  fit.law = FitPowerOnce(x, loss, o.huber_delta, {}, true);
  if (o.bootstrap > 0) {
    const PowerLaw& l = fit.law;
    const std::vector<double> warm = {std::log(l.e), std::log(l.a), l.alpha};
    std::vector<std::vector<double>> samples(3);
    Random rng(o.seed);
    std::vector<double> bx(x.size()), bl(x.size());
    for (int64_t k = 0; k < o.bootstrap; ++k) {
      for (size_t i = 0; i < x.size(); ++i) {
        const size_t j = rng.UniformInt(x.size());
        bx[i] = x[j], bl[i] = loss[j];
      }
      const PowerLaw b = FitPowerOnce(bx, bl, o.huber_delta, {warm, {0.5, 5.0, 0.3}, {1.0, 2.0, 0.1}}, false);
      for (int i = 0; const double v : {b.e, b.a, b.alpha}) samples[i++].push_back(v);
    }
    fit.intervals = Percentiles(std::move(samples), o.confidence);
  }
  return fit;
}

}  // namespace distbelief
