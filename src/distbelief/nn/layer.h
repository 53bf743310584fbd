// The Layer and Loss interfaces. A layer knows nothing of the network around it: it maps an input
// tensor to an output tensor, keeps what its backward pass needs, and owns named parameters.
//
// Contract shared by every Layer:
//   Forward(x, y): resizes *y and writes it. Keeps a pointer to x.
//     REQUIRES: x stays alive and unchanged until the matching Backward.
//   Backward(dy, dx): dy has y's shape. Writes dx (x's shape) unless dx is null, and ADDS the
//     parameter gradients into params()[i]->grad (callers zero them between steps).
//     REQUIRES: Forward was called since the last Backward.
// Layers are not thread-safe; their kernels use the process's thread pool internally.
#pragma once

#include <string>
#include <vector>

#include "distbelief/tensor/tensor.h"

namespace distbelief {

// A learnable parameter: its value and the gradient accumulated by Backward, of the same shape.
// `name` is unique within a model and becomes the parameter-server key.
struct Param {
  Param(std::string n, Shape shape) : name(std::move(n)), value(shape), grad(shape) {}
  std::string name;
  Tensor value;
  Tensor grad;
};

class Layer {
 public:
  virtual ~Layer() = default;
  // Short kind name, e.g. "linear".
  virtual std::string Kind() const = 0;
  virtual void Forward(const Tensor& x, Tensor* y) = 0;
  virtual void Backward(const Tensor& dy, Tensor* dx) = 0;
  virtual std::vector<Param*> params() { return {}; }
  // Dropout and the like behave differently in training; the default ignores it.
  virtual void SetTraining(bool training) {}
  // false: Backward need not add to the parameters' gradients, only compute dx (a model that a
  // gradient only passes through, such as a GAN's discriminator in the generator's step). A hint:
  // layers that can skip that work do (Linear); the others still add. Callers zero the grads.
  virtual void SetParamGrads(bool enabled) {}
};

// A loss maps a prediction and a target to a scalar and gives d loss / d prediction.
class Loss {
 public:
  virtual ~Loss() = default;
  // Returns the loss for `pred` against `target`. REQUIRES: both stay alive until Backward.
  virtual double Forward(const Tensor& pred, const Tensor& target) = 0;
  // Writes d loss / d pred into *dpred (pred's shape).
  virtual void Backward(Tensor* dpred) = 0;
};

}  // namespace distbelief
