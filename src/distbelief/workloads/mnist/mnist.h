// The MNIST workload: the classifier (MLP) and the small autoencoder of models/models.h on MNIST
// (io/mnist.h), a thin adapter on the engine. Replica r of R trains on every R-th training
// example, reshuffled each epoch by (seed, epoch, r); Sandblaster takes the whole training set
// in one fixed order. Config: [model] (kind, hidden, activation, dropout) and [train]'s data_dir,
// epochs, batch_size, train_limit.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "distbelief/config/config.h"
#include "distbelief/io/mnist.h"
#include "distbelief/models/models.h"
#include "distbelief/models/sequential.h"
#include "distbelief/train/engine.h"

namespace distbelief {

struct MnistOptions {
  ModelOptions model;                   // [model]
  std::string data_dir = "data/mnist";  // [train]: IDX files of MNIST
  int64_t epochs = 10;
  int64_t batch_size = 128;             // per replica
  int64_t train_limit = 0;              // use only the first N training examples; 0 = all
};
StatusOr<MnistOptions> ParseMnistOptions(ConfigFile* file);

// The data every replica of a process shares (read once).
struct MnistData {
  LabelledImages train, test;
  // Reads MNIST from `dir`, keeping the first `train_limit` training examples if > 0.
  static StatusOr<std::shared_ptr<const MnistData>> Load(const std::string& dir, int64_t train_limit);
};

// Copies rows order[begin, begin + count) of src (N, ...) into dst (count, ...).
// REQUIRES: those rows exist.
void GatherRows(const Tensor& src, std::span<const int64_t> order, int64_t begin, int64_t count, Tensor* dst);

struct MnistEval {
  double loss = 0.0;      // cross entropy (mlp) or reconstruction MSE (autoencoder)
  double accuracy = 0.0;  // mlp only
};

class MnistReplica : public ReplicaModel {
 public:
  // Replica r of R, batches of `batch`. kInvalidArgument if its share of the data holds fewer
  // examples than one batch.
  static StatusOr<std::unique_ptr<MnistReplica>> Create(const MnistOptions& o, std::shared_ptr<const MnistData> data,
                                                         uint64_t seed, int replica, int replicas);
  std::vector<Param*> params(int group) override { return model_.params(); }
  StatusOr<StepLoss> ComputeGradient(int64_t step) override;
  int64_t num_examples() const override { return data_->train.images.dim(0); }
  StatusOr<double> ComputeGradientOn(int64_t begin, int64_t end) override;
  // Loss (and accuracy) on the first `limit` test examples (0 = all), in batches of 1000.
  MnistEval Evaluate(int64_t limit = 0);
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  Sequential& model() { return model_; }

 private:
  MnistReplica() = default;
  double LossAndGradient(std::span<const int64_t> rows);
  MnistOptions o_;
  std::shared_ptr<const MnistData> data_;
  uint64_t seed_ = 0;
  int replica_ = 0;
  Sequential model_;
  std::vector<int64_t> share_;  // this replica's examples
  std::vector<int64_t> order_;  // share_ shuffled for epoch_
  int64_t epoch_ = -1, steps_per_epoch_ = 1;
  std::vector<int64_t> full_order_;  // Sandblaster: every example, one fixed order
  Tensor x_, target_;
};

// The job of the workload under `e` (steps from epochs, the replicas' share of the data).
StatusOr<Job> MnistJob(const MnistOptions& o, std::shared_ptr<const MnistData> data, const EngineOptions& e);

// `[model]` selects this workload (the default when no other workload's section is present).
StatusOr<std::unique_ptr<Workload>> MakeMnistWorkload(ConfigFile* file);

}  // namespace distbelief
