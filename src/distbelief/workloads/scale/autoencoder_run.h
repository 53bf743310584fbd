// The scaling lab's second workload: the MNIST autoencoder (784 -> hidden layers -> 784, sigmoid,
// squared error) of workloads/mnist, with N = all its parameters and D = training images, each
// seen once (the first D of one fixed order); the loss is the reconstruction MSE on held-out test
// images. Trained by the engine's local driver like the language models.
#pragma once

#include <functional>
#include <memory>

#include "distbelief/workloads/lm/lm.h"
#include "distbelief/workloads/mnist/mnist.h"

namespace distbelief {

// s.width and s.layers give `layers` hidden layers of `width` units; s.tokens is the number of
// training images, s.eval_tokens the number of test images. kInvalidArgument when D exceeds the
// training set.
StatusOr<LmRunResult> RunAutoencoder(const LmRunSpec& s, std::shared_ptr<const MnistData> data,
                                     const std::function<void(int64_t, int64_t, double)>& progress = {});

// Its parameter count, without training.
int64_t CountAutoencoderParams(const LmRunSpec& s);

}  // namespace distbelief
