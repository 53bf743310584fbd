// `distbelief scale`: a scaling-law sweep from a config's [scale] section.
//
//   1. tokenize the corpus (text/corpus.h; cached), 2. train every (size, tokens) pair not yet in
//   out_dir/scale.db (workloads/lm/lm.h), 3. with check_prediction, fit L(N, D) on every finished run but
//   the largest (largest N, then largest D), record the prediction for it, then run it,
//   4. fit L(N, D), L(N) at the largest D and L(D) at the largest N with bootstrap intervals
//   (fit.h), 5. write fit.json, fit.csv, runs.csv and the plots (plots.h) to out_dir.
// Diverged runs (NaN loss) are recorded as such and left out of every fit.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/config/config.h"
#include "distbelief/train/engine.h"
#include "distbelief/workloads/scale/fit.h"
#include "distbelief/workloads/scale/run_db.h"

namespace distbelief {

enum class ScaleWorkload { kGpt, kLstm, kAutoencoder };

// [scale]: widths[i] and layers[i] give model size i; every size is trained on every amount in
// tokens, each once through fresh data. With workload = "autoencoder" (the MNIST autoencoder),
// corpus_dir is the MNIST folder, tokens count training images and eval_tokens test images.
struct ScaleOptions {
  ScaleWorkload workload = ScaleWorkload::kGpt;
  std::string corpus_dir = "data/text", cache_dir = "runs/cache", out_dir = "runs/scale";
  int64_t vocab = 1024, context = 64, head_size = 16, batch = 16, holdout_every = 10;
  std::vector<int64_t> widths = {32, 48, 64, 96, 128}, layers = {2, 2, 2, 2, 2};
  std::vector<int64_t> tokens = {125000, 250000, 500000, 1000000};
  float learning_rate = 3e-3f;  // Adam, linear warmup then cosine to 10%
  int64_t warmup_steps = 50;
  int64_t eval_tokens = 65536;  // held-out tokens the loss is measured on
  int64_t bootstrap = 200;      // resamples for the confidence intervals
  bool check_prediction = true; // fit without the largest run, predict it, then run it
  int64_t threads = 0;          // 0 = all cores
  uint64_t seed = 1;
};
StatusOr<ScaleOptions> ParseScaleOptions(ConfigFile* file);

struct SweepReport {
  std::vector<RunRow> runs;      // every run of this sweep, in the order of the grid
  int64_t runs_executed = 0;     // trained in this invocation (the rest came from the database)
  JointFit joint;
  std::optional<PowerFit> by_n, by_d;
  std::optional<double> predicted, measured;  // the held-back largest run
  std::vector<std::string> files;             // written to out_dir
};

StatusOr<SweepReport> RunSweep(const ScaleOptions& o);

// [scale] selects this workload: `distbelief scale` (or train) runs the sweep and prints the fits.
StatusOr<std::unique_ptr<Workload>> MakeScaleWorkload(ConfigFile* file);

// The JSON written to fit.json (also used by tests).
std::string FitJson(const SweepReport& r);

}  // namespace distbelief
