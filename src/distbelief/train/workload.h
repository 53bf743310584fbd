// What one model replica computes, independent of how parameters reach it: the data set shared
// by all replicas of a process, and a Workload (the model of the config plus its loss) that turns
// a flat parameter vector and a list of examples into a loss and a flat gradient.
// The flat order is the model's params() order, the same in every process for the same config,
// so the ShardMap's key ranges mean the same thing everywhere.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/io/mnist.h"
#include "distbelief/models/sequential.h"
#include "distbelief/train/config.h"

namespace distbelief {

struct Dataset {
  LabelledImages train, test;
  // Reads MNIST from o.data_dir, keeping the first o.train_limit training examples if set.
  static StatusOr<std::shared_ptr<const Dataset>> Load(const TrainOptions& o);
};

struct EvalResult {
  double loss = 0.0;      // cross entropy (mlp) or reconstruction MSE (autoencoder)
  double accuracy = 0.0;  // mlp only
};

// Evaluates `model` (a `kind` model: mlp or autoencoder) on the first `limit` test examples
// (0 = all), in batches of 1000.
EvalResult Evaluate(Sequential* model, const std::string& kind, const LabelledImages& test, int64_t limit = 0);

// Copies rows order[begin, begin + count) of src (N, ...) into dst (count, ...).
void GatherRows(const Tensor& src, std::span<const int64_t> order, int64_t begin, int64_t count, Tensor* dst);

// Not thread-safe: give every replica thread its own Workload.
class Workload {
 public:
  static StatusOr<std::unique_ptr<Workload>> Create(const Config& config,
                                                    std::shared_ptr<const Dataset> data);
  int64_t num_params() const { return num_params_; }
  void GetParams(std::span<float> flat);
  void SetParams(std::span<const float> flat);
  // The parameters and their gradients in place, as pieces of the flat vector (params() order):
  // a ParameterClient pulls into and pushes from these without another copy.
  std::vector<std::span<float>> ParamPieces();
  std::vector<std::span<const float>> GradPieces();
  // Mean loss over the examples `indices` of the training set; leaves the mean gradient in the
  // model's gradients (GradPieces).
  double ComputeGradient(std::span<const int64_t> indices);
  // The same, and writes the gradient flat.
  double LossAndGradient(std::span<const int64_t> indices, std::span<float> grad);
  EvalResult Evaluate(int64_t limit = 0) { return distbelief::Evaluate(&model_, kind_, data_->test, limit); }
  // Writes the current parameters as a checkpoint that `distbelief eval` and --resume read.
  Status SaveCheckpoint(const std::string& path, const std::string& config_text, int64_t step);
  const Dataset& data() const { return *data_; }
  Sequential& model() { return model_; }

 private:
  Workload() = default;
  std::string kind_;
  std::shared_ptr<const Dataset> data_;
  Sequential model_;
  std::vector<Param*> params_;
  int64_t num_params_ = 0;
  Tensor x_, target_;
};

}  // namespace distbelief
