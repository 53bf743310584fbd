// The run configuration, read from TOML. Every field has a documented default; an unknown key,
// a wrong type or an out-of-range value is a kInvalidArgument naming the key.
//
//   [model]      kind, hidden, activation, dropout          (models/models.h)
//   [optimizer]  name, learning_rate, momentum, weight_decay, beta1, beta2, epsilon, clip_norm
//   [train]      see TrainOptions
#pragma once

#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/models/models.h"
#include "distbelief/optim/update_rules.h"

namespace distbelief {

struct TrainOptions {
  std::string data_dir = "data/mnist";  // IDX files of MNIST
  int64_t epochs = 10;
  int64_t batch_size = 128;
  int64_t max_steps = 0;         // stop after this many steps in all; 0 = run all epochs
  int64_t train_limit = 0;       // use only the first N training examples; 0 = all
  uint64_t seed = 1;             // initialization, shuffling, dropout
  int64_t threads = 0;           // 0 = all cores (OMP_NUM_THREADS if set)
  bool deterministic = false;    // same seed and threads -> same bits (fixes threads to 1 if 0)
  std::string lr_schedule = "cosine";  // constant | cosine (to 5% of the rate at the end)
  std::string run_dir = "runs/mnist";  // checkpoint.safetensors and metrics.jsonl go here
  int64_t checkpoint_every = 0;  // steps between checkpoints; 0 = at the end of each epoch
  int64_t log_every = 100;       // steps between metrics records
};

struct Config {
  ModelOptions model;
  OptimizerOptions optimizer;
  TrainOptions train;
  std::string text;  // the TOML as given, with overrides applied; stored in checkpoints
};

// Parses TOML text. `overrides` are "section.key=value" strings (value in TOML syntax) applied
// on top, as from the command line's --set.
StatusOr<Config> ParseConfig(const std::string& toml_text, const std::string& origin,
                             const std::vector<std::string>& overrides = {});
// Reads and parses a file; kNotFound if it is missing.
StatusOr<Config> LoadConfig(const std::string& path, const std::vector<std::string>& overrides = {});

}  // namespace distbelief
