// Self-improvement on verified synthetic data (issue 15, item 5): expert iteration as in STaR
// (Zelikman et al. 2022) on a trained Countdown policy (countdown_lab.h). Each round the policy
// samples (or searches, search = "tree") solutions of problems it never trained on, as many of
// each count of numbers the policy trained on (never held-out ones either), the exact
// verifier keeps the right ones (their only label), and the
// policy is fine-tuned on every sample kept so far through the engine (the same replica model as its training, so
// Downpour works for the fine-tuning too); greedy pass@1 on held-out problems and one more number
// is measured before the first round and after each, with the held-out problems solved that the
// first model could not.
//
// mode = "actors" runs the same expert iteration as one engine job, online: each Downpour replica
// is an actor-learner that, at the start of each round (every steps / replicas of its own steps),
// samples its share of the round's problems with the weights it last pulled from the parameter
// server, keeps what the exact verifier accepts, and then pushes gradients of its kept samples
// through Downpour (in one process, or over gRPC with distributed.transport). pass@1 is measured
// before and after.
//
// Config: [star] (below); [optimizer], [train] seed and run_dir; optionally [distributed] for the
// fine-tuning (rounds) or the actors. The last round's policy goes to run_dir/checkpoint.safetensors with the policy's
// own config, so `distbelief search` takes it.
#pragma once

#include <memory>
#include <string>

#include "distbelief/config/config.h"
#include "distbelief/train/engine.h"
#include "distbelief/workloads/reasoning/countdown_lab.h"

namespace distbelief {

struct StarLabOptions {
  std::string policy;               // the starting policy's checkpoint
  int rounds = 3;
  int64_t problems_per_round = 4000;  // new problems (not the policy's, not held out) each round
  int64_t samples = 4;              // per problem
  float temperature = 1.0f;
  int64_t steps = 300;              // fine-tuning steps per round
  int64_t test_problems = 200;      // scored greedily after each round (and as many out of distribution)
  bool actors = false;              // mode: "rounds" (false) or "actors"
  // search: "samples" (false: `samples` samples at `temperature`, each verified) or "tree" (true:
  // the policy-guided tree search of countdown_lab.h, tree_children / tree_tokens, at
  // `temperature`: expert iteration that distils the search into the policy; it keeps at most one
  // solution a problem).
  bool tree = false;
  TreeSearchOptions tree_options;
  // Each round's fine-tuning data also holds replay x (samples kept so far) of the policy's own
  // training traces, drawn afresh each round (0: only what the verifier kept), against drift.
  // mode = "rounds" only: with "actors" it is a config error.
  float replay = 0.0f;
  // control: a second copy of the starting policy gets the same fine-tuning steps each round on
  // as many of its own training traces (none of the kept samples); its pass@1 is a column of the
  // table, so what the verified samples add is read against it in the same run. mode = "rounds".
  bool control = false;
};
StatusOr<StarLabOptions> ParseStarLabOptions(ConfigFile* file);

// [star] selects this workload.
StatusOr<std::unique_ptr<Workload>> MakeStarWorkload(ConfigFile* file);

}  // namespace distbelief
