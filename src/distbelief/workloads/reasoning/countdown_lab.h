// The reasoning lab's policy (issue 15; Stream of Search, Gandhi et al. 2024): distbelief's GPT
// trained from scratch, character by character, on Countdown solver traces (countdown.h), either
// the optimal path alone or streams of search (depth-first and breadth-first, dead ends and
// backtracking included), for an equal budget of training tokens. A thin adapter on the engine.
//
// A training example is one trace: the prompt "12 5 7 3>60:" then the policy's text up to '.';
// the loss counts only the text after the prompt. Problems are drawn from a seed and split into
// train and test by problem (CountdownSplit); the out-of-distribution test has one more number.
//
// Config: [countdown] (below); [optimizer], [train] seed and run_dir; optionally [distributed].
// The report (run_dir/report.md) scores the policy on held-out problems: greedy, and best of N
// samples checked by the exact verifier, in and out of distribution, with the tokens generated.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "distbelief/base/random.h"
#include "distbelief/config/config.h"
#include "distbelief/models/gpt.h"
#include "distbelief/train/engine.h"
#include "distbelief/workloads/reasoning/countdown.h"

namespace distbelief {

// How the policy's text meets the task's (everything outside the policy sees natural numbers):
// the order of its digits, and whether a calculator writes each result for it (as the calculator
// of Cobbe et al. 2021's GSM8K models: once the policy has written "a op b=", the exact result
// of a legal operation is written in its place and the policy goes on from there; an illegal one
// is left to the policy).
// A goal test (countdown.goal_test, sampling only, for streams written with countdown.leaf_target)
// does for the "!" or "#" after a leaf what the calculator does for its result: once the policy
// has written "a op b=r>", the target and the verdict are written for it (target 24: "6*4=24>"
// goes on "24#", "5*4=20>" goes on "24!").
struct CountdownPolicyText {
  bool reversed_digits = false;  // countdown.digits = "reversed": least-significant digit first (ReverseDigitRuns)
  bool calculator = false;       // countdown.calculator = true
  bool goal_test = false;        // countdown.goal_test = true
};

// Policy-guided tree search over steps (a lookahead search: the policy proposes, the rules of
// the game prune, search backtracks): the greedy text first; then depth first from the prompt,
// each node "prompt + steps so far," expanded by `children` samples of the next step alone (up to
// ',' or '.'). Children that are not legal steps on the numbers left are dropped, children leading
// to the same numbers left as a node already seen are merged, the rest tried most sampled first;
// a node with one number left is a leaf (solved if it is the target). A tree exhausted within the
// budget is searched again with twice the children (up to 256). Stops at the first solution or
// when `max_tokens` have been generated (the greedy text's included).
struct TreeSearchOptions {
  int64_t children = 4;
  float temperature = 1.0f;
  int64_t max_tokens = 16384;  // `distbelief search`'s default (docs/reasoning.md: 4,096 solved 27% of 5-number problems, this 42%)
  CountdownPolicyText text;
};

// Streams: depth-first and breadth-first, alternating by problem; or one order only.
enum class CountdownTraces { kOptimal, kStreams, kDepthFirst, kBreadthFirst, kSystematic };
const char* CountdownTracesName(CountdownTraces t);  // "optimal paths", "depth- and breadth-first streams", ...

struct CountdownLabOptions {
  int sources = 3;                  // numbers per problem in training and test, from sources
  int max_sources = 3;              // to max_sources (OOD: max_sources + 1); problems shared evenly
  int64_t problems = 20000;         // generated, then split by problem
  int test_percent = 10;            // of problems held out
  int64_t test_limit = 200;         // held-out problems scored in the report, per count of numbers
  CountdownTraces traces = CountdownTraces::kStreams;  // "optimal", "streams", "depth_first", "breadth_first",
                                                       // "systematic"
  int64_t max_chars = 400;          // of a stream beyond its prompt (longer searches are not examples)
  int beam = 5;                     // breadth-first streams keep this many nodes per depth
  bool leaf_target = false;         // a stream's leaf written "a op b=r>target" (SearchTrace)
  float verdict_weight = 1.0f;      // of the loss on a stream's verdicts ('#', '!'; CountdownBatchLoss)
  CountdownPolicyText text;         // digits = "natural" or "reversed" (training and sampling), calculator
                                    // (sampling only)
  GptOptions net{0, 512, 128, 4, 4};  // vocab from the tokenizer; context holds prompt and trace
  int64_t batch = 32;
  int64_t train_tokens = 2000000;   // supervised tokens of all steps (sets the steps)
  int64_t samples = 16;             // best-of-N in the report
  float temperature = 1.0f;         // of sampling
  TreeSearchOptions tree;           // the report's and `search`'s tree search (tree_children, tree_tokens)
};
StatusOr<CountdownLabOptions> ParseCountdownLabOptions(ConfigFile* file);

// Characters <-> ids of the policy's vocabulary (CountdownVocabulary; id 0 pads and never
// appears in text). An unknown character maps to -1.
int CountdownId(char c);

// The training and held-out data of one config.
struct CountdownData {
  std::vector<CountdownProblem> train, test, ood;  // test: up to test_limit of each count, in turn
  std::vector<std::string> traces;  // one per usable training problem
  std::vector<int> prompt_chars;    // length of each trace's prompt
  int64_t supervised_tokens = 0;    // of all traces
  int64_t dropped = 0;              // training problems without a trace within max_chars
};
StatusOr<std::shared_ptr<const CountdownData>> BuildCountdownData(const CountdownLabOptions& o, uint64_t seed);

// `count` problems the policy of `o` never trained on, for the lab's later stages (STaR's rounds,
// the verifier's data): drawn from `seed` (not the data's), in the training split (never a
// held-out problem), none of `data.train`, no two alike; as many of each count of numbers from
// o.sources to o.max_sources, interleaved so any slice mixes them.
std::vector<CountdownProblem> FreshCountdownProblems(const CountdownLabOptions& o, const CountdownData& data,
                                                     int64_t count, uint64_t seed);

// The calculator's digits for a text (in the policy's digit order: `reversed` or not) that has
// just written "a op b=": the exact result of a legal operation, in that order ("12*5=" -> "60";
// reversed, "21*5=" -> "06"); "" when the text does not end so, an operand has over 9 digits, or
// the operation is not legal ("3-5=", "7/2=").
std::string CountdownCalculator(std::string_view text, bool reversed);
// The goal test's characters for a text that has just written "=r>": `target` (in the same digit
// order as the text) then "#" if r is the target, else "!"; "" when the text does not end so.
std::string CountdownGoalTest(std::string_view text, std::string_view target);

// Continues `prompt` n times with the policy (temperature 0: greedy, n is then 1) until one of
// `stops` (written, and ending the text), or the end of the context, with the key/value cache.
// Adds the tokens generated to *tokens (a calculator's digits included: the policy reads them).
// With text.reversed_digits the policy sees the prompt's numbers backwards and its texts come back
// with theirs turned round (prompt and texts are natural here).
std::vector<std::string> SampleCountdown(Gpt* gpt, const std::string& prompt, int64_t n, float temperature,
                                         Random* rng, int64_t* tokens, std::string_view stops = ".",
                                         const CountdownPolicyText& text = {});

// One problem searched at test time: the policy's greedy text first, then up to `samples`
// samples, until the exact verifier accepts one.
struct CountdownAnswer {
  bool verified = false;
  std::string text;        // the policy's text after the prompt (the accepted one, else greedy's)
  std::string steps;       // its solution part
  std::string expression;  // the accepted steps as one expression ("" if none)
  int64_t tokens = 0;      // generated for this problem
  int64_t tries = 0;       // texts verified
};
CountdownAnswer SearchCountdown(Gpt* gpt, const CountdownProblem& p, int64_t samples, float temperature, Random* rng,
                                const CountdownPolicyText& text = {});

// The tree search of TreeSearchOptions (above).
CountdownAnswer TreeSearchCountdown(Gpt* gpt, const CountdownProblem& p, const TreeSearchOptions& o, Random* rng);

// The loss of traces[rows] (each scored after its prompt_chars) as one batch padded to its longest
// trace (at most the context); the gradients are accumulated into gpt, zeroed first (none when the
// loss is not finite). With verdict_weight != 1 each verdict character a stream writes after a leaf
// ('#' or '!') weighs that much against 1 for every other character (SoftmaxCrossEntropy's weighted
// mean). x and y (and w, needed only then) are scratch.
float CountdownBatchLoss(Gpt* gpt, const std::vector<std::string>& traces, const std::vector<int>& prompt_chars,
                         const std::vector<int64_t>& rows, Tensor* x, Tensor* y, float verdict_weight = 1.0f,
                         Tensor* w = nullptr);

class CountdownReplica : public ReplicaModel {
 public:
  CountdownReplica(const CountdownLabOptions& o, std::shared_ptr<const CountdownData> data, uint64_t seed,
                   int replica, int replicas);
  std::vector<Param*> params(int) override { return gpt_.params(); }
  StatusOr<StepLoss> ComputeGradient(int64_t step) override;
  Gpt& gpt() { return gpt_; }

 private:
  CountdownLabOptions o_;
  std::shared_ptr<const CountdownData> data_;
  Gpt gpt_;
  uint64_t seed_;
  int replica_, replicas_;
  std::vector<int64_t> order_;
  int64_t epoch_ = -1;
  Tensor x_, y_, w_;
};

StatusOr<Job> CountdownJob(const CountdownLabOptions& o, std::shared_ptr<const CountdownData> data,
                           const EngineOptions& e);

// One line of `search`'s input as a problem: a JSON object with "numbers" (integers) and
// "target" (an integer) within the task's ranges; kInvalidArgument naming what is wrong
// ("not JSON", "missing \"target\"", "number 300 is outside [1, 100]", ...).
StatusOr<CountdownProblem> ParseCountdownProblemLine(const std::string& line);

// A trained policy, its options and config text, from its checkpoint (the config stored in it).
// kInvalidArgument if the checkpoint's config has no [countdown]; checkpoint errors as
// LoadModelCheckpoint's.
struct CountdownPolicy {
  CountdownLabOptions options;
  std::unique_ptr<Gpt> gpt;
  std::string config;
};
StatusOr<CountdownPolicy> LoadCountdownPolicy(const std::string& checkpoint);

// `distbelief search`: one JSON object a line on `in` ({"numbers": [..], "target": N}); one JSON
// line each on `out`: the problem, "expression" (null when none verified), "steps", "verified",
// "text" (the policy's whole text after the prompt: a stream's search too), "solvable" (the exact
// solver's word), "tokens"; or, for a line that is not a problem,
// {"line": L, "error": "..."}. Never stops for a bad line. The policy and its config come from
// the checkpoint. The search: the policy-guided tree search (TreeSearchCountdown), or the greedy
// text then up to `samples` samples (SearchCountdown).
struct CountdownSearchOptions {
  bool tree = true;
  TreeSearchOptions tree_options;  // its temperature is `temperature`
  int64_t samples = 64;
  float temperature = 1.0f;
  uint64_t seed = 1;
  bool calculator = false;  // on top of the policy's own countdown.calculator
};
Status RunCountdownSearch(const std::string& checkpoint, const CountdownSearchOptions& o, FILE* in, FILE* out);

// [countdown] selects this workload.
StatusOr<std::unique_ptr<Workload>> MakeCountdownWorkload(ConfigFile* file);

}  // namespace distbelief
