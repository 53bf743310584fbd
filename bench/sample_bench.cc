// Sampling speed of the reasoning lab's policy (configs/countdown.toml's GPT: vocabulary 27,
// context 256, width 96, 3 layers, 3 heads) with the key/value cache (Gpt::Step): greedy decoding
// of B sequences at once, a 12-token prompt then 200 generated tokens, random weights. Prints one
// JSON line per batch size with generated tokens/s; bench/compare_sampling.py runs it beside
// PyTorch's greedy decoding of the same model.
//   Usage: sample_bench [THREADS] [MIN_SECONDS] [BATCH...]   (batches 1 and 16 by default)
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench/bench_util.h"
#include "distbelief/base/parallel.h"
#include "distbelief/models/gpt.h"

using namespace distbelief;

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const double min_s = argc > 2 ? std::atof(argv[2]) : 1.0;
  SetNumThreads(threads);
  const GptOptions o{27, 256, 96, 3, 3};
  Gpt gpt(o, 3);
  const int64_t prompt = 12, generate = 200;
  std::vector<int64_t> batches;
  for (int i = 3; i < argc; ++i) batches.push_back(std::max(1, std::atoi(argv[i])));
  if (batches.empty()) batches = {1, 16};
  for (int64_t batch : batches) {
    const double t = bench::TimePerCall([&] {
      Gpt::Cache cache = gpt.NewCache(batch);
      Tensor tok({batch}), logits;
      for (int64_t i = 0; i < prompt; ++i) {
        tok.Fill(static_cast<float>(1 + i % 10));
        gpt.Step(tok, &cache, &logits);
      }
      for (int64_t i = 0; i < generate; ++i) {
        for (int64_t r = 0; r < batch; ++r) {
          const float* l = logits.data() + r * o.vocab;
          tok[r] = static_cast<float>(std::max_element(l + 1, l + o.vocab) - l);
        }
        gpt.Step(tok, &cache, &logits);
      }
    }, min_s);
    std::printf("{\"batch\": %ld, \"threads\": %d, \"tokens_per_s\": %.1f}\n", long(batch), threads,
                static_cast<double>(batch * generate) / t);
  }
  return 0;
}
