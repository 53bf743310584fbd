// The reasoning lab's second task learned (issue 15): the Countdown policy's GPT trained from
// scratch on long multiplication written as steps (arithmetic.h), scored by its step verifier.
// A thin adapter on the engine: the traces train through the Countdown policy's replica model
// (CountdownJob), so the same loss, sampler and checkpoint format serve both tasks.
//
// A training example is "4821*307=" then the canonical solution, the loss counted after '='.
// Problems: for each count of digits d in 1..digits, a with d digits and b with 1..d digits
// (GenerateMultiply), split into train and test by a hash of (a, b); the out-of-distribution test
// has one more digit. The report scores held-out problems per digit count: greedy and best of N
// samples, accepted only by the step verifier, and how many greedy answers wrote the right
// product by a wrong or skipped step (the verifier's rejections an answer checker would pass).
//
// Config: [multiply] (below); [optimizer], [train] seed and run_dir; optionally [distributed].
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "distbelief/config/config.h"
#include "distbelief/models/gpt.h"
#include "distbelief/train/engine.h"
#include "distbelief/workloads/reasoning/arithmetic.h"
#include "distbelief/workloads/reasoning/countdown_lab.h"

namespace distbelief {

struct MultiplyLabOptions {
  int digits = 3;                    // training and test: 1..digits digits; OOD: digits + 1
  int64_t problems = 50000;          // drawn, shared evenly by the digit counts, then split
  int test_percent = 10;             // of problems held out (by a hash of a and b)
  int64_t test_limit = 100;          // held-out problems scored per digit count
  GptOptions net{0, 256, 96, 3, 3};  // vocab: CountdownVocabulary(); context holds the OOD answers
  int64_t batch = 32;
  int64_t train_tokens = 3000000;    // supervised tokens of all steps (sets the steps)
  int64_t samples = 8;               // best-of-N in the report
  float temperature = 1.0f;
};
StatusOr<MultiplyLabOptions> ParseMultiplyLabOptions(ConfigFile* file);

// True when (a, b) is held out (deterministic, about test_percent of problems).
bool MultiplySplit(const MultiplyProblem& p, int test_percent);

// The training traces (as CountdownData: traces, prompt_chars, supervised_tokens) and the
// held-out problems: test (up to test_limit per digit count, counts in turn) and ood.
struct MultiplyData {
  std::shared_ptr<const CountdownData> train;
  std::vector<MultiplyProblem> test, ood;
};
StatusOr<MultiplyData> BuildMultiplyData(const MultiplyLabOptions& o, uint64_t seed);

// One problem at test time: the greedy text, then up to `samples` samples, until the step
// verifier accepts one.
struct MultiplyAnswer {
  bool verified = false;                // by the greedy text or a sample
  bool greedy_verified = false;         // by the greedy text
  bool right_product_rejected = false;  // the greedy text ends in a*b, by steps the verifier rejects
  std::string text;                     // the accepted text, else greedy's
  int64_t tokens = 0;                   // generated in all
  int64_t greedy_tokens = 0;            // of them, by the greedy text
};
MultiplyAnswer SearchMultiply(Gpt* gpt, const MultiplyProblem& p, int64_t samples, float temperature, Random* rng);

// [multiply] selects this workload.
StatusOr<std::unique_ptr<Workload>> MakeMultiplyWorkload(ConfigFile* file);

}  // namespace distbelief
