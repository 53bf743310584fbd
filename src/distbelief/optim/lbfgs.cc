#include "distbelief/optim/lbfgs.h"

#include <algorithm>
#include <cmath>

namespace distbelief {

Status LbfgsDirection(LbfgsSpace* space, const std::deque<LbfgsPair>& pairs, LbfgsSpace::Vec g,
                      LbfgsSpace::Vec d) {
  DB_RETURN_IF_ERROR(space->Copy(g, d));
  std::vector<double> alpha(pairs.size());
  for (size_t k = pairs.size(); k-- > 0;) {  // newest to oldest
    DB_ASSIGN_OR_RETURN(const double sd, space->Dot(pairs[k].s, d));
    alpha[k] = pairs[k].rho * sd;
    DB_RETURN_IF_ERROR(space->Axpy(-alpha[k], pairs[k].y, d));
  }
  if (!pairs.empty()) {  // H0 = gamma I, gamma = s'y / y'y = 1 / (rho y'y)
    DB_ASSIGN_OR_RETURN(const double yy, space->Dot(pairs.back().y, pairs.back().y));
    DB_RETURN_IF_ERROR(space->Scale(1.0 / (pairs.back().rho * yy), d));
  }
  for (size_t k = 0; k < pairs.size(); ++k) {  // oldest to newest
    DB_ASSIGN_OR_RETURN(const double yd, space->Dot(pairs[k].y, d));
    DB_RETURN_IF_ERROR(space->Axpy(alpha[k] - pairs[k].rho * yd, pairs[k].s, d));
  }
  return space->Scale(-1.0, d);
}

StatusOr<LbfgsResult> LbfgsMinimize(LbfgsSpace* space, const LbfgsOptions& o,
                                    const std::function<void(int64_t, double)>& on_iteration) {
  using Vec = LbfgsSpace::Vec;
  const Vec x = LbfgsSpace::kX, g = 1, d = 2, x0 = 3, g0 = 4;
  // Pair k of the ring lives in vectors 5 + 2k (s) and 6 + 2k (y); history + 1 slots, so the
  // one being written is never one in use.
  auto s_of = [](int slot) { return Vec{5 + 2 * slot}; };
  std::deque<LbfgsPair> pairs;
  int next_slot = 0;
  LbfgsResult r;
  DB_ASSIGN_OR_RETURN(double f, space->Evaluate(g));
  r.first_value = f;
  r.evaluations = 1;
  for (r.iterations = 0; r.iterations < o.max_iterations; ++r.iterations) {
    if (o.gradient_tolerance > 0) {
      DB_ASSIGN_OR_RETURN(const double gg, space->Dot(g, g));
      if (std::sqrt(gg) < o.gradient_tolerance) {
        r.converged = true;
        break;
      }
    }
    DB_RETURN_IF_ERROR(LbfgsDirection(space, pairs, g, d));
    DB_ASSIGN_OR_RETURN(double slope, space->Dot(g, d));
    if (slope >= 0.0) {  // not a descent direction: forget the curvature, go downhill
      pairs.clear();
      DB_RETURN_IF_ERROR(LbfgsDirection(space, pairs, g, d));
      DB_ASSIGN_OR_RETURN(slope, space->Dot(g, d));
    }
    if (slope == 0.0) {  // a zero gradient: nothing left to do
      r.converged = true;
      break;
    }
    // Without curvature information the first step is kept short: length 1 along -g / |g|.
    double step = pairs.empty() ? std::min(1.0, 1.0 / std::sqrt(-slope)) : 1.0;
    DB_RETURN_IF_ERROR(space->Copy(x, x0));
    DB_RETURN_IF_ERROR(space->Copy(g, g0));
    double f_new = f;
    for (int ls = 0; ls < std::max(1, o.max_line_search); ++ls) {
      DB_RETURN_IF_ERROR(space->Copy(x0, x));
      DB_RETURN_IF_ERROR(space->Axpy(step, d, x));
      DB_ASSIGN_OR_RETURN(f_new, space->Evaluate(g));
      ++r.evaluations;
      if (f_new <= f + o.armijo * step * slope) break;
      step *= 0.5;
    }
    // The new pair s = x - x0, y = g - g0, kept only with positive curvature.
    LbfgsPair p{s_of(next_slot), s_of(next_slot) + 1, 0.0};
    DB_RETURN_IF_ERROR(space->Copy(x, p.s));
    DB_RETURN_IF_ERROR(space->Axpy(-1.0, x0, p.s));
    DB_RETURN_IF_ERROR(space->Copy(g, p.y));
    DB_RETURN_IF_ERROR(space->Axpy(-1.0, g0, p.y));
    DB_ASSIGN_OR_RETURN(const double sy, space->Dot(p.s, p.y));
    if (o.history > 0 && sy > 1e-12) {
      p.rho = 1.0 / sy;
      pairs.push_back(p);
      next_slot = (next_slot + 1) % (o.history + 1);
      if (static_cast<int>(pairs.size()) > o.history) pairs.pop_front();
    }
    f = f_new;
    if (on_iteration) on_iteration(r.iterations + 1, f);
  }
  r.value = f;
  return r;
}

std::vector<double>& InMemoryLbfgsSpace::vec(Vec v) {
  if (static_cast<size_t>(v) >= v_.size()) v_.resize(v + 1);
  if (v_[v].size() != v_[0].size()) v_[v].assign(v_[0].size(), 0.0);
  return v_[v];
}

StatusOr<double> InMemoryLbfgsSpace::Evaluate(Vec g) {
  std::vector<double>& grad = vec(g);
  return f_(v_[kX], &grad);
}

StatusOr<double> InMemoryLbfgsSpace::Dot(Vec a, Vec b) {
  const std::vector<double>&va = vec(a), &vb = vec(b);
  double s = 0.0;
  for (size_t i = 0; i < va.size(); ++i) s += va[i] * vb[i];
  return s;
}

Status InMemoryLbfgsSpace::Axpy(double alpha, Vec x, Vec y) {
  const std::vector<double>& vx = vec(x);
  std::vector<double>& vy = vec(y);
  for (size_t i = 0; i < vx.size(); ++i) vy[i] += alpha * vx[i];
  return absl::OkStatus();
}

Status InMemoryLbfgsSpace::Scale(double alpha, Vec x) {
  for (double& v : vec(x)) v *= alpha;
  return absl::OkStatus();
}

Status InMemoryLbfgsSpace::Copy(Vec from, Vec to) {
  const std::vector<double> src = vec(from);
  vec(to) = src;
  return absl::OkStatus();
}

}  // namespace distbelief
