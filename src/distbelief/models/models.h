// Reference models built from nn/ layers: the MNIST classifier (MLP) and the small sparse
// autoencoder. Each is a Sequential composed in code.
#pragma once

#include <string>
#include <vector>

#include "distbelief/base/random.h"
#include "distbelief/base/status.h"
#include "distbelief/models/sequential.h"
#include "distbelief/nn/dense.h"

namespace distbelief {

enum class ModelKind {
  kMlp,          // a classifier: inputs -> hidden layers -> class scores
  kAutoencoder,  // inputs -> hidden layers -> sigmoid reconstruction of the inputs
};

// [model] in a config.
struct ModelOptions {
  ModelKind kind = ModelKind::kMlp;
  std::vector<int64_t> hidden = {1024, 1024};  // hidden widths (autoencoder: the code width first)
  Activation activation = Activation::kRelu;
  float dropout = 0.0f;                   // after each hidden activation; 0 = none
  int64_t inputs = 784, classes = 10;     // filled from the data set
};

// Builds the model described by `o`; kInvalidArgument names a bad field.
StatusOr<Sequential> BuildModel(const ModelOptions& o, uint64_t seed);

}  // namespace distbelief
