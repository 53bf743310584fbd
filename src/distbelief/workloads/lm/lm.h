// The language-model workload: a GPT-style transformer (models/gpt.h) or an LSTM stack trained on
// a token corpus (text/corpus.h) through D fresh tokens, then measured on held-out documents. It
// serves the scaling-law lab (one run per grid point, RunLanguageModel) and `distbelief train`
// with an [lm] section (locally or with Downpour).
//
// Data: the training stream is cut into windows of context+1 tokens (overlapping by one); a fixed
// permutation of the windows (depending on the seed only, never on the model) is taken in order,
// so a run with D tokens sees the first D/context windows, smaller D are subsets of larger ones,
// and no window is seen twice. Step s of replica r of R takes windows [(s R + r) B, +B). The
// held-out loss is the mean next-token cross entropy (nats) over the first eval_tokens of a
// fixed permutation of held-out windows.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "distbelief/base/status.h"
#include "distbelief/config/config.h"
#include "distbelief/text/corpus.h"
#include "distbelief/train/engine.h"

namespace distbelief {

enum class LmKind {
  kGpt,   // embedding + position -> transformer blocks -> linear head
  kLstm,  // embedding -> LSTM layers -> linear head
};

struct LmRunSpec {
  LmKind workload = LmKind::kGpt;
  int64_t width = 64, layers = 2, head_size = 16, context = 64, batch = 16;
  int64_t tokens = 100000;       // D: training tokens, one pass (all replicas together)
  int64_t eval_tokens = 65536;
  float learning_rate = 3e-3f;   // the scaling lab's Adam (RunLanguageModel)
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

// Non-embedding parameter count of a spec without training it.
int64_t CountParams(const LmRunSpec& s, int64_t vocab);

// The job: `replicas` replicas (windows interleaved between them). kInvalidArgument when D exceeds
// the training stream or the held-out stream is shorter than one window.
StatusOr<Job> LmJob(const LmRunSpec& s, std::shared_ptr<const TokenCorpus> corpus, int replicas);
// The held-out loss of a model the job made.
double HeldOutLoss(ReplicaModel* model);

// One run of the scaling lab: the local driver with Adam (beta2 0.95), linear warmup then cosine
// decay to 10% of the rate, gradients clipped to norm 1. `progress(step, steps, smoothed train
// loss)` is called now and then.
StatusOr<LmRunResult> RunLanguageModel(const LmRunSpec& s, std::shared_ptr<const TokenCorpus> corpus,
                                       const std::function<void(int64_t, int64_t, double)>& progress = {});

// [lm] selects this workload: corpus_dir, cache_dir, vocab, holdout_every, workload ("gpt" |
// "lstm"), width, layers, head_size, context, batch, tokens, eval_tokens; the optimizer is
// [optimizer]'s.
StatusOr<std::unique_ptr<Workload>> MakeLmWorkload(ConfigFile* file);

}  // namespace distbelief
