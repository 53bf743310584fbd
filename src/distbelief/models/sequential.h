// Sequential: an ordered stack of layers, each feeding the next, that owns its activations.
// Not thread-safe.
#pragma once

#include <memory>
#include <vector>

#include "distbelief/nn/layer.h"

namespace distbelief {

class Sequential {
 public:
  void Add(std::unique_ptr<Layer> layer) { layers_.push_back(std::move(layer)); }
  // Runs every layer; returns the last output (valid until the next Forward).
  // REQUIRES: x stays alive until Backward.
  const Tensor& Forward(const Tensor& x);
  // Backpropagates d loss / d output; parameter gradients are ADDED. The input gradient is
  // written to *dx when dx is not null.
  void Backward(const Tensor& dout, Tensor* dx = nullptr);
  void SetTraining(bool training);
  // Layer::SetParamGrads on every layer.
  void SetParamGrads(bool enabled);
  // All parameters in layer order; names are unique.
  std::vector<Param*> params();
  void ZeroGrad();
  int64_t NumParameters();
  const std::vector<std::unique_ptr<Layer>>& layers() const { return layers_; }

 private:
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<Tensor> acts_;   // acts_[i] = output of layer i
  std::vector<Tensor> grads_;  // scratch for backward
};

}  // namespace distbelief
