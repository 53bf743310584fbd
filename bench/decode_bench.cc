// Seq2Seq decoding speed: sentences/s and generated tokens/s of greedy search and of beam search
// (beam 4 and 12) with distbelief's batched decoder (workloads/seq2seq/decode.h), on the model of
// model_bench's row c (2 + 2 LSTM layers of 256, vocabulary 8,000) with random weights, 256 source
// sentences of 20 tokens decoded to 20 tokens (an untrained model rarely ends early), in batches of
// 64. The decoder's floating-point work per generated token is printed against the sgemm peak
// measured in the same run.
//   Usage: decode_bench [THREADS] [MIN_SECONDS]
#include <cstdio>
#include <cstdlib>

#include "bench/bench_util.h"
#include "distbelief/base/parallel.h"
#include "distbelief/base/random.h"
#include "distbelief/workloads/seq2seq/decode.h"

using namespace distbelief;

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const double min_s = argc > 2 ? std::atof(argv[2]) : 1.0;
  SetNumThreads(threads);
  const double peak = bench::SgemmPeakGflops();
  Seq2SeqOptions so;  // 8000 / 8000, 256, 256, 2 layers
  so.src_vocab = 8001;
  Seq2Seq model(so, 5);
  Random rng(7);
  std::vector<std::vector<int>> src(256, std::vector<int>(20));
  for (auto& s : src)
    for (int& t : s) t = 3 + static_cast<int>(rng.Uniform() * 7990);
  const SourceLayout layout{true, 8000, 50};
  std::printf("threads: %d   sgemm peak measured in this run: %.1f GFLOP/s\n", threads, peak);
  std::printf("%-34s %14s %16s %10s\n", "decoder (256 sentences, 20 -> 20)", "sentences/s", "tokens/s", "of peak");
  for (int beam : {1, 4, 12}) {
    const DecodeOptions d{beam, 0.6f, 20};
    int64_t tokens = 0;
    const double t = bench::TimePerCall([&] {
      tokens = 0;
      for (const auto& y : DecodeAll(&model, src, layout, d)) tokens += static_cast<int64_t>(y.size());
    }, min_s);
    // Per hypothesis and step, forward only: 2 LSTM layers of 2 x 4H x (E + H) and the projection
    // to the vocabulary, 2 x H x V.
    const double flop_per_step = 2 * 2.0 * 4 * 256 * (256 + 256) + 2.0 * 256 * 8000;
    const double gflops = flop_per_step * beam * 256 * 20 / t / 1e9;
    char name[64];
    std::snprintf(name, sizeof(name), beam == 1 ? "greedy" : "beam %d", beam);
    std::printf("%-34s %14.1f %16.0f %9.0f%%\n", name, 256 / t, tokens / t, 100.0 * gflops / peak);
    std::printf("{\"decoder\": \"%s\", \"threads\": %d, \"sentences_per_s\": %.2f, \"tokens_per_s\": %.1f}\n", name,
                threads, 256 / t, tokens / t);
  }
  return 0;
}
