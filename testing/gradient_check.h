// Finite-difference gradient checking for layers (cf. flashlight's jacobianTestImpl).
// The probe loss is L = sum_i r_i y_i with fixed random r, accumulated in double; each checked
// coordinate is perturbed by +-h and the central difference (L+ - L-) / 2h, computed in double
// from the float forward passes, is compared with the analytic gradient from Backward.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "distbelief/base/random.h"
#include "distbelief/nn/layer.h"

namespace distbelief::testing {

struct GradCheckResult {
  double max_rel_error = 0.0;  // max over checked coordinates of |a - n| / max(scale, |a|, |n|)
  std::string worst;            // which coordinate
};

// Checks d L / d x (unless skip_input) and d L / d every parameter, on up to `samples` random
// coordinates of each. `x` is the input; it may be modified temporarily.
GradCheckResult CheckLayerGradients(Layer* layer, Tensor* x, bool skip_input = false,
                                    int samples = 40, double h = 1e-2, uint64_t seed = 7);

}  // namespace distbelief::testing
