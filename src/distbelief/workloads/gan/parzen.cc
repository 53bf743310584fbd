#include "distbelief/workloads/gan/parzen.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "distbelief/base/parallel.h"
#include "distbelief/tensor/blas.h"
#include "distbelief/tensor/vmath.h"

namespace distbelief {
namespace {

Status CheckImages(const Tensor& t, const char* name, int64_t dims) {
  if (t.shape().size() != 2 || t.dim(0) == 0 || t.dim(1) == 0)
    return absl::InvalidArgumentError(std::string("Parzen: ") + name + " must be a non-empty (N, D) matrix");
  if (dims > 0 && t.dim(1) != dims)
    return absl::InvalidArgumentError(std::string("Parzen: ") + name + " has " + std::to_string(t.dim(1)) +
                                      " values per image, the samples " + std::to_string(dims));
  for (float v : t.span())
    if (!std::isfinite(v)) return absl::InvalidArgumentError(std::string("Parzen: ") + name + " holds a non-finite value");
  return absl::OkStatus();
}

std::vector<float> RowNorms(const Tensor& t) {
  const int64_t n = t.dim(0), d = t.dim(1);
  std::vector<float> out(n);
  for (int64_t i = 0; i < n; ++i) {
    const float* r = t.data() + i * d;
    float s = 0.0f;
    for (int64_t j = 0; j < d; ++j) s += r[j] * r[j];
    out[i] = s;
  }
  return out;
}

}  // namespace

StatusOr<Tensor> SquaredDistances(const Tensor& x, const Tensor& centres) {
  DB_RETURN_IF_ERROR(CheckImages(centres, "centres", 0));
  DB_RETURN_IF_ERROR(CheckImages(x, "images", centres.dim(1)));
  const int64_t n = x.dim(0), m = centres.dim(0), d = x.dim(1);
  Tensor d2({n, m});
  Gemm(false, true, n, m, d, -2.0f, x.data(), centres.data(), 0.0f, d2.data());
  const std::vector<float> xn = RowNorms(x), cn = RowNorms(centres);
  ParallelFor(n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float* row = d2.data() + i * m;
      for (int64_t j = 0; j < m; ++j) row[j] = std::max(0.0f, row[j] + xn[i] + cn[j]);
    }
  });
  return d2;
}

ParzenEstimate ParzenFromDistances(const Tensor& d2, double sigma, int64_t dims) {
  const int64_t n = d2.dim(0), m = d2.dim(1);
  std::vector<double> ll(n);
  const float scale = static_cast<float>(-0.5 / (sigma * sigma));
  const double constant = -std::log(static_cast<double>(m)) - 0.5 * dims * std::log(2.0 * std::numbers::pi * sigma * sigma);
  ParallelFor(n, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* row = d2.data() + i * m;
      const float lo = *std::min_element(row, row + m);  // the nearest centre gives the largest term
      float sum = 0.0f;
      for (int64_t j = 0; j < m; ++j) sum += FastExp(scale * (row[j] - lo));
      ll[i] = scale * lo + std::log(static_cast<double>(sum)) + constant;
    }
  });
  ParzenEstimate e;
  e.count = n;
  for (double v : ll) e.mean += v;
  e.mean /= n;
  double var = 0.0;
  for (double v : ll) var += (v - e.mean) * (v - e.mean);
  e.standard_error = n > 1 ? std::sqrt(var / (n - 1) / n) : 0.0;
  return e;
}

StatusOr<ParzenResult> ParzenLogLikelihood(const Tensor& samples, const Tensor& validation, const Tensor& test) {
  DB_RETURN_IF_ERROR(CheckImages(samples, "samples", 0));
  DB_RETURN_IF_ERROR(CheckImages(validation, "validation images", samples.dim(1)));
  DB_RETURN_IF_ERROR(CheckImages(test, "test images", samples.dim(1)));
  const int64_t dims = samples.dim(1);
  ParzenResult r;
  {
    DB_ASSIGN_OR_RETURN(Tensor d2, SquaredDistances(validation, samples));
    auto score = [&](double s) {
      const double v = ParzenFromDistances(d2, s, dims).mean;
      r.sigma_curve.push_back({s, v});
      return v;
    };
    // A grid of 25 widths, log-spaced over [0.01, 1] of the pixel scale (times the samples'
    // spread, so images in [0, 255] work too), then 8 finer steps around the best.
    double spread = 0.0;
    for (float v : samples.span()) spread = std::max(spread, static_cast<double>(std::fabs(v)));
    if (spread == 0.0) spread = 1.0;
    double best_s = 0.0, best_v = -INFINITY;
    for (int k = 0; k <= 24; ++k) {
      const double s = spread * std::pow(10.0, -2.0 + 2.0 * k / 24.0);
      const double v = score(s);
      if (v > best_v) best_v = v, best_s = s;
    }
    const double step = std::pow(10.0, 2.0 / 24.0);
    for (int k = -4; k <= 4; ++k) {
      if (k == 0) continue;
      const double s = best_s * std::pow(step, k / 4.0);
      const double v = score(s);
      if (v > best_v) best_v = v, best_s = s;
    }
    r.sigma = best_s;
    r.validation = ParzenFromDistances(d2, best_s, dims);
  }
  std::sort(r.sigma_curve.begin(), r.sigma_curve.end());
  DB_ASSIGN_OR_RETURN(Tensor d2, SquaredDistances(test, samples));
  r.test = ParzenFromDistances(d2, r.sigma, dims);
  return r;
}

}  // namespace distbelief
