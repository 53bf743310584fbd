// Sequence to sequence with deep LSTMs (Sutskever, Vinyals & Le 2014): an encoder stack reads the
// source; each decoder layer starts from the final (h, c) of the encoder layer at its depth and
// predicts the target one token ahead through a full softmax.
// Legend: B = batch, S = source length, T = target length, E = embedding, H = hidden.
#pragma once

#include <memory>
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
