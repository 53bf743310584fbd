#include "distbelief/models/seq2seq.h"

#include <cmath>
#include <cstring>

#include "distbelief/base/parallel.h"

namespace distbelief {

Seq2Seq::Seq2Seq(const Seq2SeqOptions& o, uint64_t seed) : o_(o) {
  Random rng(seed);
  src_emb_ = std::make_unique<Embedding>("src_emb", o.src_vocab, o.embedding, 0, &rng);
  tgt_emb_ = std::make_unique<Embedding>("tgt_emb", o.tgt_vocab, o.embedding, 0, &rng);
  for (int64_t i = 0; i < o.layers; ++i) {
    const int64_t in = i == 0 ? o.embedding : o.hidden;
    enc_.push_back(std::make_unique<Lstm>("enc" + std::to_string(i), in, o.hidden, &rng));
    dec_.push_back(std::make_unique<Lstm>("dec" + std::to_string(i), in, o.hidden, &rng));
  }
  proj_ = std::make_unique<Linear>("proj", o.hidden, o.tgt_vocab, &rng);
  enc_out_.resize(o.layers);
  dec_out_.resize(o.layers);
}

std::vector<Param*> Seq2Seq::params() {
  std::vector<Param*> p;
  auto add = [&](Layer* l) {
    for (Param* q : l->params()) p.push_back(q);
  };
  add(src_emb_.get());
  add(tgt_emb_.get());
  for (auto& l : enc_) add(l.get());
  for (auto& l : dec_) add(l.get());
  add(proj_.get());
  return p;
}

void Seq2Seq::ZeroGrad() {
  for (Param* p : params()) p->grad.Zero();
}

double Seq2Seq::Forward(const Tensor& src, const Tensor& tgt_in, const Tensor& tgt_out) {
  src_emb_->Forward(src, &src_x_);
  const Tensor* in = &src_x_;
  for (int64_t i = 0; i < o_.layers; ++i) {
    enc_[i]->Forward(*in, &enc_out_[i]);
    in = &enc_out_[i];
  }
  tgt_emb_->Forward(tgt_in, &tgt_x_);
  in = &tgt_x_;
  const int64_t b = src.dim(0), s = src.dim(1), h = o_.hidden;
  for (int64_t i = 0; i < o_.layers; ++i) {
    h_last_.Resize({b, h});  // the encoder layer's final h: its output at step S - 1
    for (int64_t r = 0; r < b; ++r)
      std::memcpy(h_last_.data() + r * h, enc_out_[i].data() + (r * s + s - 1) * h, h * sizeof(float));
    dec_[i]->SetInitialState(h_last_, enc_[i]->final_cell());
    dec_[i]->Forward(*in, &dec_out_[i]);
    in = &dec_out_[i];
  }
  proj_->Forward(*in, &logits_);
  return loss_.Forward(logits_, tgt_out);
}

void Seq2Seq::Backward() {
  Tensor g, dx;
  loss_.Backward(&g);
  proj_->Backward(g, &dx);
  std::vector<Tensor> dh0(o_.layers), dc0(o_.layers);
  for (int64_t i = o_.layers; i-- > 0;) {
    g = std::move(dx);
    dec_[i]->Backward(g, &dx);
    dh0[i] = dec_[i]->dh0();
    dc0[i] = dec_[i]->dc0();
  }
  tgt_emb_->Backward(dx, nullptr);
  // Into the encoder: each layer's output gradient is what the layer above sends down, plus, at
  // the last step, the decoder's d h0; its final cell receives the decoder's d c0.
  const int64_t b = enc_out_[0].dim(0), s = enc_out_[0].dim(1), h = o_.hidden;
  Tensor from_above;
  for (int64_t i = o_.layers; i-- > 0;) {
    g.Resize(enc_out_[i].shape());
    if (i == o_.layers - 1) g.Zero(); else g = from_above;
    for (int64_t r = 0; r < b; ++r)
      for (int64_t j = 0; j < h; ++j) g[(r * s + s - 1) * h + j] += dh0[i][r * h + j];
    enc_[i]->SetFinalCellGrad(dc0[i]);
    enc_[i]->Backward(g, &from_above);
  }
  src_emb_->Backward(from_above, nullptr);
}

namespace {

// Row t = T - 1 of y (B, T, H) as (B, H).
Tensor LastStep(const Tensor& y) {
  const int64_t b = y.dim(0), t = y.dim(1), h = y.dim(2);
  Tensor out({b, h});
  for (int64_t r = 0; r < b; ++r) std::memcpy(out.data() + r * h, y.data() + (r * t + t - 1) * h, h * sizeof(float));
  return out;
}

}  // namespace

Seq2Seq::State Seq2Seq::Encode(const Tensor& src) {
  State st;
  src_emb_->Forward(src, &src_x_);
  const Tensor* in = &src_x_;
  for (int64_t i = 0; i < o_.layers; ++i) {
    enc_[i]->ClearInitialState();
    enc_[i]->Forward(*in, &enc_out_[i]);
    st.h.push_back(LastStep(enc_out_[i]));
    st.c.push_back(enc_[i]->final_cell());
    in = &enc_out_[i];
  }
  return st;
}

void Seq2Seq::Step(const Tensor& tokens, State* state, Tensor* log_probs) {
  const int64_t b = tokens.size();
  Tensor ids({b, 1});
  std::memcpy(ids.data(), tokens.data(), b * sizeof(float));
  tgt_emb_->Forward(ids, &tgt_x_);
  const Tensor* in = &tgt_x_;
  for (int64_t i = 0; i < o_.layers; ++i) {
    dec_[i]->SetInitialState(state->h[i], state->c[i]);
    dec_[i]->Forward(*in, &dec_out_[i]);
    state->h[i] = LastStep(dec_out_[i]);
    state->c[i] = dec_[i]->final_cell();
    in = &dec_out_[i];
  }
  proj_->Forward(state->h.back(), &logits_);
  const int64_t v = logits_.dim(-1);
  log_probs->Resize({b, v});
  ParallelFor(b, 4, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* l = logits_.data() + r * v;
      float* out = log_probs->data() + r * v;
      float mx = l[0];
      for (int64_t j = 1; j < v; ++j) mx = std::max(mx, l[j]);
      double sum = 0.0;
      for (int64_t j = 0; j < v; ++j) sum += std::exp(static_cast<double>(l[j] - mx));
      const float lse = mx + static_cast<float>(std::log(sum));
      for (int64_t j = 0; j < v; ++j) out[j] = l[j] - lse;
    }
  });
}

Seq2Seq::State Seq2Seq::Gather(const State& s, std::span<const int64_t> rows) {
  State out;
  auto pick = [&](const Tensor& t) {
    const int64_t h = t.dim(1);
    Tensor g({static_cast<int64_t>(rows.size()), h});
    for (size_t r = 0; r < rows.size(); ++r) std::memcpy(g.data() + r * h, t.data() + rows[r] * h, h * sizeof(float));
    return g;
  };
  for (const Tensor& t : s.h) out.h.push_back(pick(t));
  for (const Tensor& t : s.c) out.c.push_back(pick(t));
  return out;
}

}  // namespace distbelief
