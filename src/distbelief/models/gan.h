// A multilayer-perceptron GAN (Goodfellow et al. 2014): G maps noise z (B, Z), drawn from a
// standard normal, to images (B, D); D maps images to one logit. D learns to call real images 1
// and G's 0; G learns to make D call its images 1 (the paper's non-saturating generator loss).
//
// Gradients() computes both players' gradients of one step on the same noise (simultaneous
// gradient descent: G's gradient is taken against D as it was before D's update), so that one
// update of every parameter makes a step, which is what the engine's drivers apply. Not
// thread-safe; one Gan per replica.
#pragma once

#include <vector>

#include "distbelief/base/random.h"
#include "distbelief/models/sequential.h"
#include "distbelief/nn/dense.h"
#include "distbelief/nn/loss.h"
#include "distbelief/optim/update_rules.h"

namespace distbelief {

struct GanOptions {
  int64_t noise = 100;
  std::vector<int64_t> g_hidden = {256, 512};   // ReLU layers
  Activation g_output = Activation::kTanh;      // kTanh: images in [-1, 1]; kSigmoid: [0, 1]
  std::vector<int64_t> d_hidden = {512, 256};
  int64_t d_pieces = 0;          // > 1: maxout hidden layers of this many pieces (the paper: 5); else ReLU
  float d_dropout = 0.0f;        // dropout after each hidden layer of D (the paper: 0.5)
  float d_input_dropout = 0.0f;  // on D's input (the paper: 0.2)
  int64_t image = 784;
};

struct GanLosses {
  double d_loss = 0.0;  // mean BCE on real + mean BCE on fakes
  double g_loss = 0.0;  // mean BCE of the fakes against label 1 (0 when G took no step)
};

class Gan {
 public:
  Gan(const GanOptions& o, uint64_t seed);
  // Writes the gradients of both players for one step into their params' grads (overwritten):
  // D's on `real` (B, image) and B fakes from fresh noise; G's on the same fakes when
  // `generator_step`, else G's grads are zero.
  GanLosses Gradients(const Tensor& real, bool generator_step = true);
  // Gradients() then one update of each player with its own rule (benchmarks; training goes
  // through the engine, which applies one rule to every parameter).
  GanLosses Step(const Tensor& real, const UpdateRule& d_rule, const UpdateRule& g_rule);
  // n images (n, image) from noise drawn with `rng`, G in evaluation mode.
  Tensor Sample(int64_t n, Random* rng);
  // D's logits (N, 1) for images x (N, image), in evaluation mode (no dropout).
  Tensor Discriminate(const Tensor& x);
  Sequential& generator() { return g_; }
  Sequential& discriminator() { return d_; }
  const GanOptions& options() const { return o_; }

 private:
  void Update(Sequential* net, std::vector<Tensor>* state, const UpdateRule& rule);
  void DrawNoise(Tensor* z, Random* rng) const;
  GanOptions o_;
  Sequential g_, d_;
  Random rng_;
  std::vector<Tensor> g_state_, d_state_;
  int64_t step_ = 0;
};

}  // namespace distbelief
