// Seq2Seq English -> French (Sutskever, Vinyals & Le 2014) on the Debian catalogues (enfr.h), a
// thin adapter on the engine: a joint sentencepiece vocabulary trained on the training pairs,
// the deep LSTM encoder-decoder of models/seq2seq.h with the source optionally reversed, batches
// of similar lengths, decoding by greedy or beam search (decode.h) and corpus BLEU (text/bleu.h).
//
// Layout of a batch: sources of one length (the encoder has no mask: decode.h), each reversed if
// reverse_source; the target in: <s> y1 .. yn then </s> padding; the target out: y1 .. yn </s>
// then -1 (ignored by the loss). The id `vocab` (the encoder's extra row) pads where a caller
// mixes lengths.
//
// Config: [seq2seq] (below); [optimizer], [train] seed and run_dir; optionally [distributed].
// The run folder holds checkpoint.safetensors, spm.model (the vocabulary `translate` needs),
// report.md, test hypotheses and perplexity.png.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "distbelief/config/config.h"
#include "distbelief/models/seq2seq.h"
#include "distbelief/mp/seq2seq_partitions.h"
#include "distbelief/train/engine.h"
#include "distbelief/workloads/seq2seq/decode.h"
#include "distbelief/workloads/seq2seq/enfr.h"

namespace distbelief {

struct Seq2SeqEnFrOptions {
  EnFrOptions data;                   // mo_dir, dev_packages, test_packages, max_words
  Seq2SeqOptions net;                 // embedding, hidden, layers (vocabularies come from the tokenizer)
  int64_t vocab = 8000;               // joint sentencepiece vocabulary
  int64_t max_tokens = 50;            // longer training pairs are dropped; longer sources cut
  bool reverse_source = true;
  int64_t batch = 64;                 // sentence pairs per replica step
  // Model parallelism: each replica split by depth into `partitions` (1 = whole) pipelined over
  // `chunks` time chunks (mp/seq2seq_partitions.h), over [distributed] transport.
  int partitions = 1;
  int chunks = 1;
  int64_t steps = 2000;               // of all replicas together
  int64_t eval_every = 500;           // steps between dev perplexity records (local driver)
  int64_t dev_limit = 1000;           // dev pairs scored for perplexity
  int64_t test_limit = 1000;          // test pairs translated for BLEU, evenly spaced (0 = all)
  DecodeOptions decode{12, 0.6f, 100};  // beam, length_penalty (the report also runs beam 1)
  std::string cache_dir = "runs/cache";
};
StatusOr<Seq2SeqEnFrOptions> ParseSeq2SeqEnFrOptions(ConfigFile* file);

// Token ids of every split, and the tokenizer that made them.
struct EnFrTokens {
  struct Pair {
    std::vector<int> src, tgt;
  };
  std::vector<Pair> train, dev, test;
  std::vector<SentencePair> test_text;  // the test pairs as text, aligned with `test`
  std::string spm_model;                // path of the sentencepiece model
  int64_t vocab = 0;
  EnFrCorpus corpus;                    // counts and per-package numbers
  int64_t train_dropped_long = 0;
};
// Builds the corpus, trains (or reuses from cache_dir) the joint vocabulary, encodes the splits.
StatusOr<std::shared_ptr<const EnFrTokens>> LoadEnFrTokens(const Seq2SeqEnFrOptions& o, uint64_t seed);

class Seq2SeqReplica : public ReplicaModel {
 public:
  // With o.partitions > 1 the replica trains through Seq2SeqPartitions on its own links over
  // `transport` (one parameter group per partition); model() is then the whole model the
  // partitions' weights are copied into for evaluation and decoding.
  static StatusOr<std::unique_ptr<Seq2SeqReplica>> Create(const Seq2SeqEnFrOptions& o,
                                                          std::shared_ptr<const EnFrTokens> data, uint64_t seed,
                                                          int replica, int replicas,
                                                          const TransportOptions& transport = {});
  ~Seq2SeqReplica() override;
  int num_groups() const override;
  std::vector<Param*> params(int group) override;
  StatusOr<StepLoss> ComputeGradient(int64_t step) override;
  // Mean cross entropy per target token (teacher forcing) over the first `limit` pairs of `pairs`.
  double MeanLoss(const std::vector<EnFrTokens::Pair>& pairs, int64_t limit);
  // The whole model with the replica's current weights.
  Seq2Seq& model();
  int64_t batches_per_epoch() const { return static_cast<int64_t>(share_.size()); }

 private:
  Seq2SeqReplica() = default;
  StatusOr<double> LossOf(const std::vector<const EnFrTokens::Pair*>& batch, bool backward);
  Seq2SeqEnFrOptions o_;
  std::shared_ptr<const EnFrTokens> data_;
  std::unique_ptr<Seq2Seq> model_;
  std::unique_ptr<Transport> transport_;         // the partitions' links (partitions > 1)
  std::unique_ptr<Seq2SeqPartitions> parts_;     // after transport_: destroyed first
  uint64_t seed_ = 0;
  int replica_ = 0;
  std::vector<std::vector<int64_t>> share_;  // this replica's batches (indices into train)
  std::vector<int64_t> order_;
  int64_t epoch_ = -1;
  Tensor src_, tgt_in_, tgt_out_;
};

StatusOr<Job> Seq2SeqJob(const Seq2SeqEnFrOptions& o, std::shared_ptr<const EnFrTokens> data, const EngineOptions& e);

// Translates sentences in batches: text -> tokens -> Decode -> text. Each line gets exactly one
// output: "" for an empty line; a line that is not UTF-8 has its bad bytes replaced by U+FFFD;
// a source longer than max_tokens is cut (a note on `warnings` says which line). Never fails for
// one bad line.
struct TranslateStats {
  int64_t lines = 0, empty = 0, not_utf8 = 0, cut = 0;
};
StatusOr<std::vector<std::string>> TranslateLines(Seq2Seq* model, const std::string& spm_model,
                                                  const std::vector<std::string>& lines, const Seq2SeqEnFrOptions& o,
                                                  const DecodeOptions& d, TranslateStats* stats, int64_t first_line,
                                                  FILE* warnings);

// `distbelief translate`: the checkpoint's config (or `config_path`), its spm.model beside it;
// lines from `in` translated in batches of `batch` and written to `out`, flushed per batch.
Status RunTranslate(const std::string& checkpoint, const std::string& config_path, int beam, float length_penalty,
                    int64_t batch, FILE* in, FILE* out);

// [seq2seq] selects this workload.
StatusOr<std::unique_ptr<Workload>> MakeSeq2SeqEnFrWorkload(ConfigFile* file);

}  // namespace distbelief
