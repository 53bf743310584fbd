// A GPT-style decoder-only language model (Radford et al. 2019 layout, pre-norm):
// tokens -> embedding + positions -> L x [x + Attn(LN(x)); x + MLP(LN(x))] -> LN -> logits.
// Legend: B = batch, T = context, C = width, V = vocabulary.
#pragma once

#include <cstdint>
#include <vector>

#include "distbelief/models/sequential.h"
#include "distbelief/nn/dense.h"
#include "distbelief/nn/loss.h"
#include "distbelief/nn/sequence.h"

namespace distbelief {

// One pre-norm transformer block: y = r + MLP(LN2(r)), r = x + Attn(LN1(x)); MLP is C-4C-C GELU.
// x (B, T, C) -> y (B, T, C).
class TransformerBlock : public Layer {
 public:
  TransformerBlock(const std::string& name, int64_t width, int64_t heads, Random* rng);
  std::string Kind() const override { return "transformer_block"; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& dy, Tensor* dx) override;
  std::vector<Param*> params() override;
  // One position of B sequences with a key/value cache (CausalSelfAttention::Step): x (B, C) ->
  // y (B, C). Inference only.
  void Step(const Tensor& x, int64_t pos, CausalSelfAttention::KvCache* cache, Tensor* y);

 private:
  LayerNorm ln1_, ln2_;
  CausalSelfAttention attn_;
  Linear fc1_, fc2_;
  ActivationLayer gelu_;
  Tensor a_, b_, r_, c_, d_, e_, f_;  // intermediate activations, named in Forward
  Tensor g1_, g2_, g3_, g4_;          // backward scratch
};

struct GptOptions {
  int64_t vocab = 8000;
  int64_t context = 128;
  int64_t width = 256;
  int64_t layers = 4;
  int64_t heads = 4;
};

class Gpt {
 public:
  Gpt(const GptOptions& o, uint64_t seed);
  // tokens, targets (B, T) ids -> mean next-token cross entropy (weighted by `weights` (B, T) when
  // not null: SoftmaxCrossEntropy's weighted mean). Keeps what Backward needs.
  // REQUIRES: tokens, targets and weights stay alive until Backward.
  double Forward(const Tensor& tokens, const Tensor& targets, const Tensor* weights = nullptr);
  // Adds every parameter's gradient of the last Forward's loss.
  void Backward();
  std::vector<Param*> params() { return net_.params(); }
  void ZeroGrad() { net_.ZeroGrad(); }
  // Parameters outside the embeddings (Kaplan et al. 2020's N).
  int64_t NumNonEmbeddingParams();
  const Tensor& logits() const { return *logits_; }
  const GptOptions& options() const { return o_; }

  // Sampling with a key/value cache (Pope et al. 2022's incremental decoding): B sequences fed
  // one token at a time, all at the same position. Step gives the logits (B, V) of the next
  // token, equal to the last row of Forward on the sequences so far; it overwrites what Backward
  // needs, so it must not run between Forward and Backward.
  struct Cache {
    std::vector<CausalSelfAttention::KvCache> layers;
    int64_t pos = 0;  // positions fed so far
  };
  Cache NewCache(int64_t batch) const;
  // tokens (B) ids. REQUIRES: cache->pos < context.
  void Step(const Tensor& tokens, Cache* cache, Tensor* logits);
  // The cache's rows in the order `rows` gives (beam and tree search keep survivors).
  static Cache Gather(const Cache& c, const std::vector<int64_t>& rows);

 private:
  GptOptions o_;
  Sequential net_;
  SoftmaxCrossEntropy loss_;
  const Tensor* logits_ = nullptr;
  Tensor x_, y_, h_;  // Step's scratch
};

}  // namespace distbelief
