// LocalTrainer: the single-process training loop, the one a newcomer reads first.
// Per step: gather a shuffled batch, Forward, loss, Backward, clip, update every parameter with
// the UpdateRule, and now and then log metrics and write an atomic checkpoint. Each epoch ends
// with an evaluation on the held-out test set. Not thread-safe; uses the process's thread pool.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/io/mnist.h"
#include "distbelief/models/sequential.h"
#include "distbelief/optim/update_rules.h"
#include "distbelief/train/config.h"
#include "distbelief/train/workload.h"

namespace distbelief {

struct TrainResult {
  int64_t steps = 0;
  double last_train_loss = 0.0;   // mean over the last logging window
  double first_train_loss = 0.0;  // mean over the first logging window
  double test_loss = 0.0;         // cross entropy (mlp) or MSE (autoencoder) on the test set
  double test_accuracy = 0.0;     // mlp only
};

class LocalTrainer {
 public:
  // Reads the data and builds the model. Errors: data missing or corrupt, bad model options.
  static StatusOr<std::unique_ptr<LocalTrainer>> Create(const Config& config);

  // Loads parameters, optimizer state and position from a checkpoint written by this trainer.
  // kDataLoss / kInvalidArgument if it is corrupt or does not fit the model; then nothing changes.
  Status Resume(const std::string& checkpoint_path);

  // Trains to the end (epochs or max_steps) and evaluates. With stop_at > 0 it stops after that
  // many steps in all, as an interrupted run would (tests use it to check resuming).
  StatusOr<TrainResult> Run(int64_t stop_at = 0);

  // Evaluates on the test set: fills test_loss and test_accuracy.
  void Evaluate(TrainResult* r);

  std::string checkpoint_path() const { return config_.train.run_dir + "/checkpoint.safetensors"; }
  Sequential& model() { return model_; }

 private:
  explicit LocalTrainer(Config config) : config_(std::move(config)) {}
  Status SaveCheckpoint() const;
  // Learning rate for `step` under the schedule.
  float LearningRate(int64_t step) const;
  void Step(const Tensor& x, const Tensor& target, double* loss);

  Config config_;
  std::shared_ptr<const Dataset> data_;
  Sequential model_;
  std::unique_ptr<UpdateRule> rule_;
  std::vector<Tensor> state_;  // optimizer state per parameter
  int64_t step_ = 0;           // updates done
  int64_t total_steps_ = 0;
  int64_t steps_per_epoch_ = 0;
};

}  // namespace distbelief
