// The Gaussian Parzen-window estimate of a generative model's log-likelihood (Breuleux et al.
// 2011; the GAN paper's table 1): the model's samples s_1..s_n (n, D) become the centres of an
// isotropic Gaussian mixture of width sigma, and a held-out image x scores
//   log p(x) = logsumexp_i(-|x - s_i|^2 / (2 sigma^2)) - log n - (D / 2) log(2 pi sigma^2).
// sigma is chosen on a validation set (the value of a grid with the highest mean log-likelihood,
// refined once around it), then the test set is scored with it. Distances come from one GEMM per
// block of rows on the process's thread pool.
#pragma once

#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/tensor/tensor.h"

namespace distbelief {

struct ParzenEstimate {
  double mean = 0.0;            // mean log-likelihood (nats) of the scored images
  double standard_error = 0.0;  // of that mean: std of the per-image values / sqrt(count)
  int64_t count = 0;
};

// Squared distances (N, M) between the rows of x (N, D) and of centres (M, D).
// kInvalidArgument if either is empty or their widths differ.
StatusOr<Tensor> SquaredDistances(const Tensor& x, const Tensor& centres);

// The estimate for images whose squared distances to the n centres are the rows of d2 (N, n),
// for images of `dims` pixels. REQUIRES: sigma > 0.
ParzenEstimate ParzenFromDistances(const Tensor& d2, double sigma, int64_t dims);

struct ParzenResult {
  double sigma = 0.0;
  ParzenEstimate validation, test;
  std::vector<std::pair<double, double>> sigma_curve;  // (sigma, validation mean) as tried
};

// Chooses sigma on `validation` and scores `test`, both against `samples` (every tensor (N, D),
// the same D). kInvalidArgument naming the tensor if one is empty, non-finite or of another width.
StatusOr<ParzenResult> ParzenLogLikelihood(const Tensor& samples, const Tensor& validation, const Tensor& test);

}  // namespace distbelief
