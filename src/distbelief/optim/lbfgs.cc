#include "distbelief/optim/lbfgs.h"

#include <algorithm>
#include <cmath>

namespace distbelief {
namespace {
double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}
}  // namespace

std::vector<double> LbfgsDirection(const std::deque<std::vector<double>>& s,
                                   const std::deque<std::vector<double>>& y,
                                   const std::vector<double>& g) {
  const size_t m = s.size();
  std::vector<double> q = g, alpha(m), rho(m);
  for (size_t k = m; k-- > 0;) {  // newest to oldest
    rho[k] = 1.0 / Dot(y[k], s[k]);
    alpha[k] = rho[k] * Dot(s[k], q);
    for (size_t i = 0; i < q.size(); ++i) q[i] -= alpha[k] * y[k][i];
  }
  const double gamma = m ? Dot(s[m - 1], y[m - 1]) / Dot(y[m - 1], y[m - 1]) : 1.0;
  for (double& v : q) v *= gamma;
  for (size_t k = 0; k < m; ++k) {  // oldest to newest
    const double beta = rho[k] * Dot(y[k], q);
    for (size_t i = 0; i < q.size(); ++i) q[i] += (alpha[k] - beta) * s[k][i];
  }
  for (double& v : q) v = -v;
  return q;
}

LbfgsResult LbfgsMinimize(const std::function<double(const std::vector<double>&,
                                                     std::vector<double>*)>& f,
                          std::vector<double>* x, const LbfgsOptions& options) {
  std::deque<std::vector<double>> s_hist, y_hist;
  std::vector<double> g(x->size()), g_new(x->size()), x_new(x->size());
  double fx = f(*x, &g);
  LbfgsResult r;
  for (r.iterations = 0; r.iterations < options.max_iterations; ++r.iterations) {
    double gmax = 0.0;
    for (double v : g) gmax = std::max(gmax, std::abs(v));
    if (gmax < options.gradient_tolerance) {
      r.converged = true;
      break;
    }
    std::vector<double> d = LbfgsDirection(s_hist, y_hist, g);
    double slope = Dot(g, d);
    if (slope >= 0.0) {  // not a descent direction: restart from steepest descent
      s_hist.clear();
      y_hist.clear();
      for (size_t i = 0; i < d.size(); ++i) d[i] = -g[i];
      slope = Dot(g, d);
    }
    // The first step has no curvature information: keep it short.
    double step = s_hist.empty() ? std::min(1.0, 1.0 / std::sqrt(Dot(g, g))) : 1.0;
    double f_new = 0.0;
    for (int ls = 0; ls < 50; ++ls) {
      for (size_t i = 0; i < x->size(); ++i) x_new[i] = (*x)[i] + step * d[i];
      f_new = f(x_new, &g_new);
      if (f_new <= fx + options.armijo * step * slope) break;
      step *= 0.5;
    }
    std::vector<double> s(x->size()), y(x->size());
    for (size_t i = 0; i < x->size(); ++i) {
      s[i] = x_new[i] - (*x)[i];
      y[i] = g_new[i] - g[i];
    }
    if (Dot(s, y) > 1e-12) {  // keep only pairs with positive curvature
      s_hist.push_back(std::move(s));
      y_hist.push_back(std::move(y));
      if (static_cast<int>(s_hist.size()) > options.history) {
        s_hist.pop_front();
        y_hist.pop_front();
      }
    }
    *x = x_new;
    g = g_new;
    fx = f_new;
  }
  r.value = fx;
  return r;
}

}  // namespace distbelief
