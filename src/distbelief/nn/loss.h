// Losses. Each returns the mean over the batch (or over rows) and writes the matching gradient.
#pragma once

#include "distbelief/nn/layer.h"

namespace distbelief {

// logits (N, V), target (N) class ids stored as floats (ids < 0 are ignored) ->
// mean over counted rows of -log softmax(logits)[target]. With row weights w (N, each >= 0), the
// weighted mean sum_i w_i l_i / sum_i w_i over counted rows (all weights 1: the plain mean).
class SoftmaxCrossEntropy : public Loss {
 public:
  double Forward(const Tensor& logits, const Tensor& target) override { return Forward(logits, target, nullptr); }
  // REQUIRES: weight (when not null) has N elements and stays alive until Backward.
  double Forward(const Tensor& logits, const Tensor& target, const Tensor* weight);
  void Backward(Tensor* dlogits) override;
  // Softmax probabilities (N, V) of the last Forward.
  const Tensor& probs() const { return probs_; }

 private:
  const Tensor* target_ = nullptr;
  const Tensor* weight_ = nullptr;
  Tensor probs_;
  double total_weight_ = 0.0;  // of counted rows
};

// logits (N, ...), target of the same shape in [0, 1] -> mean over elements of the binary cross
// entropy of sigmoid(logits), computed stably from the logits (the GAN's loss).
class SigmoidCrossEntropy : public Loss {
 public:
  double Forward(const Tensor& logits, const Tensor& target) override;
  void Backward(Tensor* dlogits) override;

 private:
  const Tensor* logits_ = nullptr;
  const Tensor* target_ = nullptr;
};

// pred, target (N, ...) -> mean over all elements of (pred - target)^2, as PyTorch's MSELoss.
class MeanSquaredError : public Loss {
 public:
  double Forward(const Tensor& pred, const Tensor& target) override;
  void Backward(Tensor* dpred) override;

 private:
  const Tensor* pred_ = nullptr;
  const Tensor* target_ = nullptr;
};

// The reconstruction-ICA sparsity term of Le et al. 2012, eq. 1: for pooled responses p (B, J),
//   lambda / B * sum_b sum_j sqrt(eps + p_bj^2)
// (the mean over the batch of the per-example sum).
class IcaSparsity {
 public:
  IcaSparsity(float lambda, float eps) : lambda_(lambda), eps_(eps) {}
  double Forward(const Tensor& pooled);
  // dpooled = lambda / B * p / sqrt(eps + p^2)
  void Backward(Tensor* dpooled);

 private:
  float lambda_, eps_;
  const Tensor* pooled_ = nullptr;
};

}  // namespace distbelief
