// `distbelief scale`: a scaling-law sweep from a config's [scale] section.
//
//   1. tokenize the corpus (text/corpus.h; cached), 2. train every (size, tokens) pair not yet in
//   out_dir/scale.db (lm_run.h), 3. with check_prediction, fit L(N, D) on every finished run but
//   the largest (largest N, then largest D), record the prediction for it, then run it,
//   4. fit L(N, D), L(N) at the largest D and L(D) at the largest N with bootstrap intervals
//   (fit.h), 5. write fit.json, fit.csv, runs.csv and the plots (plots.h) to out_dir.
// Diverged runs (NaN loss) are recorded as such and left out of every fit.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/scale/fit.h"
#include "distbelief/scale/run_db.h"
#include "distbelief/train/config.h"

namespace distbelief {

struct SweepReport {
  std::vector<RunRow> runs;      // every run of this sweep, in the order of the grid
  int64_t runs_executed = 0;     // trained in this invocation (the rest came from the database)
  JointFit joint;
  std::optional<PowerFit> by_n, by_d;
  std::optional<double> predicted, measured;  // the held-back largest run
  std::vector<std::string> files;             // written to out_dir
};

StatusOr<SweepReport> RunSweep(const Config& config);

// The JSON written to fit.json (also used by tests).
std::string FitJson(const SweepReport& r);

}  // namespace distbelief
