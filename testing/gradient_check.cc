#include "testing/gradient_check.h"

#include <algorithm>

namespace distbelief::testing {
namespace {

double Probe(Layer* layer, const Tensor& x, const std::vector<double>& r, Tensor* y) {
  layer->Forward(x, y);
  double s = 0.0;
  for (int64_t i = 0; i < y->size(); ++i) s += r[i] * (*y)[i];
  return s;
}

}  // namespace

GradCheckResult CheckLayerGradients(Layer* layer, Tensor* x, bool skip_input, int samples,
                                    double h, uint64_t seed) {
  Random rng(seed);
  Tensor y;
  layer->Forward(*x, &y);
  std::vector<double> r(y.size());
  for (double& v : r) v = rng.Uniform() * 2.0 - 1.0;
  Tensor dy(y.shape());
  for (int64_t i = 0; i < y.size(); ++i) dy[i] = static_cast<float>(r[i]);
  for (Param* p : layer->params()) p->grad.Zero();
  Tensor dx;
  layer->Backward(dy, skip_input ? nullptr : &dx);

  // Gradient magnitudes set the scale below which absolute error is what matters.
  GradCheckResult result;
  auto check = [&](Tensor* values, const Tensor& analytic, const std::string& what) {
    double scale = 1e-3;
    for (int64_t i = 0; i < analytic.size(); ++i) scale = std::max(scale, std::abs(double(analytic[i])));
    scale *= 1e-2;
    const int64_t n = values->size();
    const int count = static_cast<int>(std::min<int64_t>(n, samples));
    for (int s = 0; s < count; ++s) {
      const int64_t i = n <= samples ? s : static_cast<int64_t>(rng.UniformInt(n));
      const float saved = (*values)[i];
      (*values)[i] = static_cast<float>(saved + h);
      const double lp = Probe(layer, *x, r, &y);
      (*values)[i] = static_cast<float>(saved - h);
      const double lm = Probe(layer, *x, r, &y);
      (*values)[i] = saved;
      const double numeric = (lp - lm) / (2.0 * h);
      const double a = analytic[i];
      const double err = std::abs(a - numeric) / std::max({scale, std::abs(a), std::abs(numeric)});
      if (err > result.max_rel_error) {
        result.max_rel_error = err;
        result.worst = what + "[" + std::to_string(i) + "] analytic " + std::to_string(a) +
                       " numeric " + std::to_string(numeric);
      }
    }
  };
  if (!skip_input) check(x, dx, "input");
  for (Param* p : layer->params()) {
    Tensor g = p->grad;  // copy: probing runs Forward only, but keep the analytic one safe
    check(&p->value, g, p->name);
  }
  return result;
}

}  // namespace distbelief::testing
