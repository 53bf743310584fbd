// One language-model training run of a sweep: a model of a given size trained once through D
// fresh tokens of the training stream, then measured on held-out documents.
//
// Data: the training stream is cut into windows of context+1 tokens (overlapping by one); a fixed
// permutation of the windows (the same for every run of a sweep) is taken in order, so a run with
// D tokens sees the first D/context windows, and smaller D are subsets of larger ones. No window
// is seen twice. The held-out loss is the mean next-token cross entropy (nats) over the first
// eval_tokens of a fixed permutation of held-out windows.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "distbelief/base/status.h"
#include "distbelief/text/corpus.h"

namespace distbelief {

struct LmRunSpec {
  std::string workload = "gpt";  // gpt | lstm (embedding -> LSTM layers -> linear head)
  int64_t width = 64, layers = 2, head_size = 16, context = 64, batch = 16;
  int64_t tokens = 100000;       // D: training tokens, one pass
  int64_t eval_tokens = 65536;
  float learning_rate = 3e-3f;
  int64_t warmup_steps = 50;
  uint64_t seed = 1;
};

struct LmRunResult {
  int64_t params = 0;            // N: non-embedding parameters (no token/position tables, no head)
  int64_t total_params = 0;
  int64_t tokens = 0;            // D actually trained on (whole batches)
  double flops_6nd = 0;          // 6 N D
  double flops_counted = 0;      // 6 (N + head) D + 6 L T C D (attention), as Kaplan et al. 2020
  double seconds = 0;
  double loss = 0;               // held-out loss; NaN when the run diverged
  double final_train_loss = 0;
  bool diverged = false;
};

// Non-embedding parameter count of a spec without building or training it.
int64_t CountParams(const LmRunSpec& s, int64_t vocab);

// `progress(step, steps, train_loss)` is called now and then. kInvalidArgument when D exceeds the
// training stream or the held-out stream is shorter than one window.
StatusOr<LmRunResult> RunLanguageModel(const LmRunSpec& s, const TokenCorpus& corpus,
                                       const std::function<void(int64_t, int64_t, double)>& progress = {});

}  // namespace distbelief
