// Sequence layers. Legend: B = batch, T = time steps, D = input features, H = hidden units,
// C = model width, NH = heads, HS = C / NH head size.
#pragma once

#include <memory>
#include <string>

#include "distbelief/base/random.h"
#include "distbelief/nn/dense.h"
#include "distbelief/nn/layer.h"

namespace distbelief {

// One LSTM layer (Hochreiter & Schmidhuber 1997; gates i, f, g, o), trained by backpropagation
// through time. x (B, T, D) -> h (B, T, H). Wx (4H, D), Wh (4H, H), b (4H); forget bias 1.
// The state starts at zero unless SetInitialState is called before Forward (an encoder's final
// state for a decoder); after Backward, initial_state_grad() holds d loss / d (h0, c0).
class Lstm : public Layer {
 public:
  Lstm(const std::string& name, int64_t in, int64_t hidden, Random* rng);
  std::string Kind() const override { return "lstm"; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& dy, Tensor* dx) override;
  std::vector<Param*> params() override { return {&wx_, &wh_, &b_}; }

  // h0, c0 (B, H). Cleared by ClearInitialState().
  void SetInitialState(const Tensor& h0, const Tensor& c0);
  void ClearInitialState() { has_init_ = false; }
  // Final cell state (B, H) of the last Forward (the final h is the last step of y).
  const Tensor& final_cell() const { return c_last_; }
  // d loss / d h0 and d c0 (B, H) from the last Backward (zero without an initial state).
  const Tensor& dh0() const { return dh0_; }
  const Tensor& dc0() const { return dc0_; }
  // Extra gradient flowing into the final cell state (from a decoder), added in Backward.
  void SetFinalCellGrad(const Tensor& dc_last) { dc_last_ = dc_last; has_dc_last_ = true; }

 private:
  int64_t in_, h_;
  Param wx_, wh_, b_;
  const Tensor* x_ = nullptr;
  Tensor gates_;   // (B, T, 4H) after the nonlinearities
  Tensor c_;       // (B, T, H) cell states
  Tensor tanh_c_;  // (B, T, H)
  Tensor h_seq_;   // (B, T, H) outputs, kept for Wh's gradient
  Tensor h0_, c0_, c_last_, dh0_, dc0_, dc_last_;
  bool has_init_ = false, has_dc_last_ = false;
};

// Multi-head causal self-attention with its projections (Vaswani et al. 2017; GPT-2 layout):
// qkv = x Wqkv^T + bqkv; per head softmax(q k^T / sqrt(HS), causal) v; y = concat Wo^T + bo.
// x (B, T, C) -> y (B, T, C). Forward and Backward compute only the causal half of each T x T
// square (blocks of 64 query rows) and give each (sequence, head) to one thread of the pool, so
// their results do not depend on the thread count; memory (B, NH, T, T) floats is kept for Backward.
class CausalSelfAttention : public Layer {
 public:
  CausalSelfAttention(const std::string& name, int64_t width, int64_t heads, Random* rng);
  std::string Kind() const override { return "attention"; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& dy, Tensor* dx) override;
  std::vector<Param*> params() override;

  // Incremental decoding with a key/value cache. B sequences all at position `pos`; their keys
  // and values of positions [0, pos) are in the cache, each (B, T_max, C). x (B, C) -> y (B, C),
  // the same as row `pos` of Forward on the whole sequences; appends position pos to the cache.
  // REQUIRES: pos < T_max. Overwrites what Backward needs: inference only.
  struct KvCache {
    Tensor k, v;  // (B, T_max, C)
  };
  void Step(const Tensor& x, int64_t pos, KvCache* cache, Tensor* y);

 private:
  int64_t c_, nh_;
  Linear qkv_proj_, out_proj_;
  Tensor qkv_;   // (B, T, 3C)
  Tensor att_;   // (B, NH, T, T) softmax probabilities, on and below the diagonal (see Forward)
  Tensor heads_; // (B, T, C) attention output before the projection
};

}  // namespace distbelief
