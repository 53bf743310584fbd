// Sequence to sequence with deep LSTMs (Sutskever, Vinyals & Le 2014): an encoder stack reads the
// source; each decoder layer starts from the final (h, c) of the encoder layer at its depth and
// predicts the target one token ahead through a full softmax.
// Legend: B = batch, S = source length, T = target length, E = embedding, H = hidden.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "distbelief/nn/dense.h"
#include "distbelief/nn/loss.h"
#include "distbelief/nn/sequence.h"

namespace distbelief {

struct Seq2SeqOptions {
  int64_t src_vocab = 8000, tgt_vocab = 8000;
  int64_t embedding = 256, hidden = 256;
  int64_t layers = 2;  // in the encoder and in the decoder
};

class Seq2Seq {
 public:
  Seq2Seq(const Seq2SeqOptions& o, uint64_t seed);
  // src (B, S), tgt_in (B, T), tgt_out (B, T) ids -> mean cross entropy over target tokens.
  // REQUIRES: the inputs stay alive until Backward.
  double Forward(const Tensor& src, const Tensor& tgt_in, const Tensor& tgt_out);
  // Adds every parameter's gradient, through the decoder into the encoder's final states.
  void Backward();
  std::vector<Param*> params();
  void ZeroGrad();
  const Seq2SeqOptions& options() const { return o_; }

  // Decoding, one step at a time (greedy and beam search drive it; workloads/seq2seq/decode.h).
  // The decoder's recurrent state: per layer h and c (B, H).
  struct State {
    std::vector<Tensor> h, c;
  };
  // The encoder's final state per layer for src (B, S): where the decoder starts.
  State Encode(const Tensor& src);
  // One decoder step: tokens (B) ids -> log-probabilities (B, V) of the next token; advances
  // *state. Uses the layers' forward caches, so it must not run between Forward and Backward.
  void Step(const Tensor& tokens, State* state, Tensor* log_probs);
  // The state's rows in the order `rows` gives (beam search keeps the survivors' states).
  static State Gather(const State& s, std::span<const int64_t> rows);

 private:
  Seq2SeqOptions o_;
  std::unique_ptr<Embedding> src_emb_, tgt_emb_;
  std::vector<std::unique_ptr<Lstm>> enc_, dec_;
  std::unique_ptr<Linear> proj_;
  SoftmaxCrossEntropy loss_;
  std::vector<Tensor> enc_out_, dec_out_;  // per layer (B, S, H), (B, T, H)
  Tensor src_x_, tgt_x_, logits_, h_last_;
};

}  // namespace distbelief
