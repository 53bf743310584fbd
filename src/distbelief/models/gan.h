// A multilayer-perceptron GAN (Goodfellow et al. 2014): G maps noise z (B, Z) to images (B, D)
// in [-1, 1]; D maps images to one logit. Trained with the non-saturating generator loss.
#pragma once

#include "distbelief/base/random.h"
#include "distbelief/models/sequential.h"
#include "distbelief/nn/loss.h"
#include "distbelief/optim/update_rules.h"

namespace distbelief {

struct GanOptions {
  int64_t noise = 100;
  std::vector<int64_t> g_hidden = {256, 512};
  std::vector<int64_t> d_hidden = {512, 256};
  int64_t image = 784;
};

struct GanLosses {
  double d_loss = 0.0, g_loss = 0.0;
};

class Gan {
 public:
  Gan(const GanOptions& o, uint64_t seed);
  // One step: D on real (label 1) and fake (label 0) images, then G through D (label 1).
  // real (B, image) in [-1, 1]. Updates both nets with their own update rule.
  GanLosses Step(const Tensor& real, const UpdateRule& d_rule, const UpdateRule& g_rule);
  Sequential& generator() { return g_; }
  Sequential& discriminator() { return d_; }

 private:
  void Update(Sequential* net, std::vector<Tensor>* state, const UpdateRule& rule);
  GanOptions o_;
  Sequential g_, d_;
  Random rng_;
  std::vector<Tensor> g_state_, d_state_;
  int64_t step_ = 0;
};

}  // namespace distbelief
