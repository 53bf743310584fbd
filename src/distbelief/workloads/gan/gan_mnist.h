// The GAN of Goodfellow et al. 2014 on MNIST, a thin adapter on the engine: the paper's model
// (G: noise 100 -> 1200 -> 1200 ReLU -> 784 sigmoid; D: maxout 240 x 5 pieces twice, dropout, a
// logit), both players' parameters trained as two parameter groups of one replica model (each
// group on its own shards under Downpour), and the paper's metric, a Parzen-window
// log-likelihood of the MNIST test set (parzen.h).
//
// Data: MNIST's training set split in two, the first `train_size` images to train on, the rest
// the validation set that chooses the Parzen width; the test set is t10k. Replica r of R trains
// on every R-th training image, reshuffled each epoch.
//
// Config: [gan] (below); [optimizer] as usual (the paper: SGD with momentum; we default to Adam
// at 2e-4, beta1 0.5 in configs/gan_mnist.toml); [train] seed and run_dir; optionally
// [distributed].
#pragma once

#include <memory>
#include <string>

#include "distbelief/config/config.h"
#include "distbelief/data/images.h"
#include "distbelief/models/gan.h"
#include "distbelief/train/engine.h"
#include "distbelief/workloads/gan/parzen.h"
#include "distbelief/workloads/mnist/mnist.h"

namespace distbelief {

struct GanMnistOptions {
  GanOptions net;                       // noise, g_hidden, d_hidden, d_pieces, d_dropout, d_input_dropout
  std::string data_dir = "data/mnist";
  int64_t train_size = 50000;           // the rest of MNIST's 60,000 training images validate
  int64_t epochs = 25;
  int64_t batch = 100;                  // per replica
  int64_t d_steps = 1;                  // k: D steps per G step (G's gradient is zero on the others)
  int64_t parzen_samples = 10000;       // the GAN's samples (and real digits) as Parzen centres
  int64_t parzen_test = 10000;          // test images scored (the first of t10k)
  int64_t parzen_validation = 10000;    // validation images that choose sigma
};
StatusOr<GanMnistOptions> ParseGanMnistOptions(ConfigFile* file);

// MNIST split for the GAN. kInvalidArgument if train_size leaves no validation image.
struct GanData {
  Tensor train, validation, test;  // (N, 784) in [0, 1]
  static StatusOr<std::shared_ptr<const GanData>> Load(const GanMnistOptions& o);
};

class GanReplica : public ReplicaModel {
 public:
  static StatusOr<std::unique_ptr<GanReplica>> Create(const GanMnistOptions& o, std::shared_ptr<const GanData> data,
                                                      uint64_t seed, int replica, int replicas);
  // Group 0: the discriminator; group 1: the generator.
  int num_groups() const override { return 2; }
  std::vector<Param*> params(int group) override;
  // Both players' gradients on one batch (Gan::Gradients); G's on every d_steps-th step only.
  StatusOr<StepLoss> ComputeGradient(int64_t step) override;
  Gan& gan() { return gan_; }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }

 private:
  GanReplica(const GanOptions& o, uint64_t seed) : gan_(o, seed) {}
  GanMnistOptions o_;
  std::shared_ptr<const GanData> data_;
  Gan gan_;
  uint64_t seed_ = 0;
  int replica_ = 0;
  std::vector<int64_t> share_, order_;
  int64_t epoch_ = -1, steps_per_epoch_ = 1;
  Tensor real_;
};

// The job of training `data` under `e`: steps from epochs and the replicas' share of the data;
// each epoch (local driver) writes run_dir/samples/epoch_NNN.png, a grid of 100 samples of the
// same noise, and records D's mean belief in real and generated digits and a 1,000-sample Parzen
// estimate. kInvalidArgument under Sandblaster (two players, two losses: L-BFGS minimizes one).
StatusOr<Job> GanJob(const GanMnistOptions& o, std::shared_ptr<const GanData> data, const EngineOptions& e);

// Images (N, 784) in [0, 1] as one picture: a grid of `cols` columns, 28 x 28 each, 1 px apart.
GreyImage DigitGrid(const Tensor& images, int64_t cols);

// The table of the paper: the GAN's Parzen estimate against real held-out digits' (the first
// parzen_samples training images as centres), sigma chosen on the validation set for each.
struct GanParzenTable {
  ParzenResult gan, real;
  int64_t centres = 0;
};
StatusOr<GanParzenTable> GanParzen(Gan* gan, const GanData& data, const GanMnistOptions& o, uint64_t seed);

// [gan] selects this workload.
StatusOr<std::unique_ptr<Workload>> MakeGanMnistWorkload(ConfigFile* file);

}  // namespace distbelief
