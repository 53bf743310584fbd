// The reasoning lab's verifier and search at test time (issue 15, items 3 and 4), on a trained
// Countdown policy (countdown_lab.h):
//   1. the policy samples solutions of training problems, the exact verifier labels them;
//   2. an outcome reward model (ORM) learns to tell right from wrong: the policy's architecture,
//      trained from scratch through the engine to write the verdict after a solution ('#' right,
//      '!' wrong, characters the traces already use for "solved" and "dead end"), its score the
//      probability of '#' (a generative verifier);
//   3. process labels from Monte-Carlo rollouts (Math-Shepherd) checked against the solver's
//      exact reachability of each first step (CheckStepLabels);
//   4. on held-out problems, accuracy against generated tokens for budgets of 1..N samples:
//      greedy; best-of-N ranked by the ORM; ORM-weighted majority vote over the first step;
//      and, as the ceiling, best-of-N checked by the exact verifier (pass@N). CSV and PNG.
//
// Config: [verifier] (below); [optimizer], [train] seed and run_dir. The policy's own config comes
// from its checkpoint.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "distbelief/config/config.h"
#include "distbelief/train/engine.h"
#include "distbelief/workloads/reasoning/countdown_lab.h"

namespace distbelief {

struct VerifierLabOptions {
  std::string policy;             // the policy's checkpoint
  int64_t train_problems = 4000;  // training problems the policy samples for the ORM
  int64_t samples_per_problem = 4;
  int64_t orm_steps = 600;        // of the ORM
  int64_t batch = 32;
  int64_t test_problems = 100;    // held-out problems of the budget curves (and as many out of distribution)
  int64_t max_samples = 32;       // the largest budget (N)
  float temperature = 1.0f;
};
StatusOr<VerifierLabOptions> ParseVerifierLabOptions(ConfigFile* file);

// One labelled sample: the prompt and the policy's text (up to and with '.'), and the verdict.
struct OrmExample {
  std::string text;
  bool correct = false;
};
// `samples` texts per problem from the policy, each labelled by the exact verifier.
std::vector<OrmExample> CollectOrmExamples(Gpt* policy, const std::vector<CountdownProblem>& problems,
                                           int64_t samples, float temperature, uint64_t seed);
// The ORM's probability that `text` (prompt + solution + '.') is right: P('#') / (P('#') + P('!'))
// at the position after it. A text longer than the ORM's context (64) is read up to there.
double OrmScore(Gpt* orm, const std::string& text);

// Math-Shepherd's process labels, checked: for each first step a policy writes (a prefix
// "prompt + step,"), the Monte-Carlo label is whether any of `rollouts` continuations of the
// policy from there verifies; the exact label whether the numbers left can still reach the
// target (the solver). Counts of the four cases over `problems` x `samples` prefixes.
struct StepLabelAgreement {
  int64_t prefixes = 0, both = 0, mc_only = 0, exact_only = 0, neither = 0, invalid = 0;
};
StepLabelAgreement CheckStepLabels(Gpt* policy, const std::vector<CountdownProblem>& problems, int64_t samples,
                                   int64_t rollouts, float temperature, uint64_t seed);

// [verifier] selects this workload.
StatusOr<std::unique_ptr<Workload>> MakeVerifierWorkload(ConfigFile* file);

}  // namespace distbelief
