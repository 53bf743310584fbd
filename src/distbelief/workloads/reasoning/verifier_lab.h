// The reasoning lab's verifier and search at test time (issue 15, items 3 and 4), on a trained
// Countdown policy (countdown_lab.h):
//   1. the policy samples solutions of training-split problems it never trained on (fresh: true)
//      or of its own training problems, the exact verifier labels them;
//   2. verifiers learn to tell right from wrong: the policy's architecture, trained from scratch
//      through the engine to write the verdict after a text ('#' right, '!' wrong, characters the
//      traces already use for "solved" and "dead end"), the score the probability of '#' (a
//      generative verifier). The ORM learns outcome labels (complete solutions, by the exact
//      verifier); the PRM, a second model (separate: true) or the same one, learns process labels
//      (partial solutions, by Monte-Carlo rollouts as in Math-Shepherd);
//   3. process labels from Monte-Carlo rollouts (Math-Shepherd) checked against the solver's
//      exact reachability of each first step (CheckStepLabels);
//   4. on held-out problems, accuracy against generated tokens for budgets of 1..N samples:
//      greedy; best-of-N ranked by the verifier; verifier-weighted majority vote over distinct
//      solutions; step-level beam search guided by the verifier (PRM); the policy-guided tree
//      search (TreeSearchCountdown) and Monte-Carlo tree search guided by the verifiers (PrmMcts),
//      each with best-of-N's tokens at each N as its budget; and, as the ceiling, best-of-N checked
//      by the exact verifier (pass@N). CSV and PNG.
//
// Config: [verifier] (below); [optimizer], [train] seed and run_dir. The policy's own config comes
// from its checkpoint, its text options too: with countdown.digits = "reversed" it reads and writes
// numbers backwards and with countdown.calculator = true it samples with the calculator
// (CountdownPolicyText) everywhere here, while the verifiers, like everything outside the policy,
// read natural text. Every sampling function below takes the policy's `text` (default: natural
// digits, no calculator).
#pragma once

#include <functional>
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
  int64_t orm_steps = 600;        // of the verifier
  int64_t step_samples = 2;       // solutions sampled per training problem for process labels (each step's prefix)
  int64_t rollouts = 8;           // continuations that label a partial solution (Math-Shepherd)
  int64_t batch = 32;
  int64_t test_problems = 100;    // held-out problems of the budget curves (and as many out of distribution)
  int64_t max_samples = 32;       // the largest budget (N)
  // The MCTS curves stop at this N's budget (their largest budgets cost the most: the verifiers
  // score every child).
  int64_t mcts_max_samples = 64;
  float temperature = 1.0f;
  // fresh: the verifier's training problems are ones the policy never trained on (drawn like
  // STaR's, FreshCountdownProblems), so its samples fail as often as on held-out problems;
  // false: the policy's own training problems (which it has memorized).
  bool fresh = true;
  // separate: an ORM learns the outcome labels and a PRM, a second model of the same shape, the
  // process labels; false: one verifier learns both.
  bool separate = true;
  // calculator: sample with the calculator (CountdownPolicyText::calculator, as `search
  // --calculator`) even if the policy's config does not; false: as the policy's config says.
  bool calculator = false;
};
StatusOr<VerifierLabOptions> ParseVerifierLabOptions(ConfigFile* file);

// One labelled sample: the prompt and the policy's text (up to and with '.'), and the verdict.
struct OrmExample {
  std::string text;
  bool correct = false;
};
// `samples` texts per problem from the policy, each labelled by the exact verifier.
std::vector<OrmExample> CollectOrmExamples(Gpt* policy, const std::vector<CountdownProblem>& problems,
                                           int64_t samples, float temperature, uint64_t seed,
                                           const CountdownPolicyText& text = {});
// The ORM's probability that `text` (prompt + solution + '.') is right: P('#') / (P('#') + P('!'))
// at the position after it. A text longer than the ORM's context (64) is read up to there.
double OrmScore(Gpt* orm, const std::string& text);

// Process examples for the PRM: `samples` solutions per problem from the policy, and each of their
// partial solutions ("prompt + steps," after every step but the last, up to the first illegal
// one) labelled good when its steps are legal and some of `rollouts` continuations of the policy
// verifies (Math-Shepherd).
std::vector<OrmExample> CollectStepExamples(Gpt* policy, const std::vector<CountdownProblem>& problems, int64_t samples,
                                            int64_t rollouts, float temperature, uint64_t seed,
                                            const CountdownPolicyText& text = {});
// Step-level beam search guided by the PRM (its score of "prompt + steps so far,"): `beam` partial
// solutions kept per depth, `expand` samples of the next step from each; complete solutions are
// scored by the ORM (which may be the same model) and the answer is the one it scores highest
// (the exact verifier only grades it).
CountdownAnswer PrmBeamSearch(Gpt* policy, Gpt* prm, Gpt* orm, const CountdownProblem& p, int64_t beam, int64_t expand,
                              float temperature, Random* rng, const CountdownPolicyText& text = {});

// Monte-Carlo tree search over steps guided by a value function (PUCT, as in AlphaZero, with a
// verifier's score as the value in place of rollouts). A node is "prompt + steps so far". Each
// simulation walks from the root to a leaf, at each node to the child of highest
// Q + c_puct P sqrt(N) / (1 + n) (Q its mean value, P its prior, n its visits, N the node's), and
// expands the leaf: `expand` samples of the next step, each new distinct step a child whose value
// is score(text, complete) (complete: the text ends in '.' or fills the policy's context; never
// expanded); a negative score drops the child (rules that prune). A child's prior is its share of
// all the samples drawn at its node. The new children's values are backed up the path as visits.
// A complete leaf reached again widens its parent instead (`expand` more samples there, as the tree
// search draws more children once its tree is exhausted), and a node left without children is
// drawn from again; when nothing new comes of it, its value is backed up again (0 for a dead end).
// The greedy text is the first complete candidate. Stops once a complete text scores at least
// `stop_score`, once `max_tokens` have been generated (the greedy text's included; the last
// expansion may pass it by at most `expand` texts of at most a context each), or after max_tokens
// simulations. The answer is the complete text of the highest score (the first of equals); the
// exact verifier only grades it. `score` returns at most 1 and is called from this thread only.
struct MctsOptions {
  int64_t expand = 4;
  double c_puct = 1.0;
  int64_t max_tokens = 256;
  float temperature = 1.0f;
  double stop_score = 2.0;  // above any score: search the whole budget
};
using TextScore = std::function<double(const std::string& text, bool complete)>;
CountdownAnswer MctsCountdown(Gpt* policy, const CountdownProblem& p, const MctsOptions& o, const TextScore& score,
                              Random* rng, const CountdownPolicyText& text = {});
// MctsCountdown valued by the verifiers: the PRM's score of a partial solution, the ORM's of a
// complete one. With `rules`, as the tree search: the game's rules drop illegal steps, the exact
// verifier scores a complete solution (1 or 0) and the first verified one ends the search; the
// PRM values the rest.
CountdownAnswer PrmMcts(Gpt* policy, Gpt* prm, Gpt* orm, const CountdownProblem& p, MctsOptions o, bool rules,
                        Random* rng, const CountdownPolicyText& text = {});

// Math-Shepherd's process labels, checked: for each first step a policy writes (a prefix
// "prompt + step,"), the Monte-Carlo label is whether any of `rollouts` continuations of the
// policy from there verifies; the exact label whether the numbers left can still reach the
// target (the solver). Counts of the four cases over `problems` x `samples` prefixes.
struct StepLabelAgreement {
  int64_t prefixes = 0, both = 0, mc_only = 0, exact_only = 0, neither = 0, invalid = 0;
};
StepLabelAgreement CheckStepLabels(Gpt* policy, const std::vector<CountdownProblem>& problems, int64_t samples,
                                   int64_t rollouts, float temperature, uint64_t seed,
                                   const CountdownPolicyText& text = {});

// [verifier] selects this workload.
StatusOr<std::unique_ptr<Workload>> MakeVerifierWorkload(ConfigFile* file);

}  // namespace distbelief
