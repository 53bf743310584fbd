// Position-wise layers: fully connected, activations, maxout, dropout, layer norm, embedding.
// Legend: N = rows (batch, or batch * time for sequences), D = input features, O = outputs.
// Every layer here treats all leading dimensions as rows and acts on the last one.
#pragma once

#include <memory>
#include <string>

#include "distbelief/base/random.h"
#include "distbelief/nn/layer.h"

namespace distbelief {

// y (N, O) = x (N, D) W^T + b;  W is (O, D), b is (O). Initialized uniform(+-1/sqrt(D)).
class Linear : public Layer {
 public:
  Linear(const std::string& name, int64_t in, int64_t out, Random* rng, bool bias = true);
  std::string Kind() const override { return "linear"; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& dy, Tensor* dx) override;
  std::vector<Param*> params() override;
  void SetParamGrads(bool enabled) override { param_grads_ = enabled; }
  Param& weight() { return w_; }

 private:
  int64_t in_, out_;
  bool has_bias_;
  bool param_grads_ = true;
  Param w_, b_;
  const Tensor* x_ = nullptr;
};

enum class Activation { kSigmoid, kTanh, kRelu, kGelu };  // GELU: the tanh form (GPT-2)

// y = f(x) elementwise, for sigmoid, tanh, ReLU or GELU.
class ActivationLayer : public Layer {
 public:
  explicit ActivationLayer(Activation f) : f_(f) {}
  std::string Kind() const override;
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& dy, Tensor* dx) override;

 private:
  Activation f_;
  const Tensor* x_ = nullptr;
  Tensor y_;  // sigmoid and tanh differentiate through their output, GELU keeps tanh(u) here
};

// y (N, D/k) = max over each group of k consecutive features of x (N, D) (Goodfellow et al. 2013).
class Maxout : public Layer {
 public:
  explicit Maxout(int64_t k) : k_(k) {}
  std::string Kind() const override { return "maxout"; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& dy, Tensor* dx) override;

 private:
  int64_t k_;
  std::vector<int32_t> argmax_;
  Shape x_shape_;
};

// Inverted dropout: in training zeroes each element with probability p and scales the rest by
// 1/(1-p); in evaluation it is the identity. The mask stream is seeded, so runs repeat.
class Dropout : public Layer {
 public:
  Dropout(float p, uint64_t seed) : p_(p), rng_(seed) {}
  std::string Kind() const override { return "dropout"; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& dy, Tensor* dx) override;
  void SetTraining(bool training) override { training_ = training; }

 private:
  float p_;
  Random rng_;
  bool training_ = true;
  Tensor mask_;  // 0 or 1/(1-p), x's shape
};

// y = (x - mean) / sqrt(var + eps) * gamma + beta over the last dimension D (Ba et al. 2016).
class LayerNorm : public Layer {
 public:
  LayerNorm(const std::string& name, int64_t dim, float eps = 1e-5f);
  std::string Kind() const override { return "layer_norm"; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& dy, Tensor* dx) override;
  std::vector<Param*> params() override { return {&gamma_, &beta_}; }

 private:
  int64_t dim_;
  float eps_;
  Param gamma_, beta_;
  const Tensor* x_ = nullptr;
  std::vector<float> mean_, rstd_;  // (N)
};

// Token embedding plus an optional learned position embedding.
// x holds integer token ids stored as floats, shape (B, T); y is (B, T, E).
// Backward has no dx (ids are not differentiable); pass dx = nullptr.
class Embedding : public Layer {
 public:
  Embedding(const std::string& name, int64_t vocab, int64_t dim, int64_t max_positions,
            Random* rng);
  std::string Kind() const override { return "embedding"; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& dy, Tensor* dx) override;
  std::vector<Param*> params() override;

 private:
  int64_t vocab_, dim_, max_positions_;
  Param table_, positions_;  // (V, E), (P, E)
  const Tensor* x_ = nullptr;
};

}  // namespace distbelief
