#include "distbelief/models/gpt.h"

#include <cstring>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"

namespace distbelief {
namespace {
// Sequences x width below which Gpt::Step runs on one thread. Chosen on 2 vCPUs of a Zen 5 at
// width 96 (docs/reasoning.md, Speed): 1-4 sequences ran faster on one thread, 8 level, 16
// faster on two.
constexpr int64_t kSharedStepWork = 8 * 96;
void AddInto(const Tensor& a, const Tensor& b, Tensor* out) {
  out->Resize(a.shape());
  for (int64_t i = 0; i < a.size(); ++i) (*out)[i] = a[i] + b[i];
}
}  // namespace

TransformerBlock::TransformerBlock(const std::string& name, int64_t width, int64_t heads, Random* rng)
    : ln1_(name + ".ln1", width),
      ln2_(name + ".ln2", width),
      attn_(name + ".attn", width, heads, rng),
      fc1_(name + ".fc1", width, 4 * width, rng),
      fc2_(name + ".fc2", 4 * width, width, rng),
      gelu_(Activation::kGelu) {}

std::vector<Param*> TransformerBlock::params() {
  std::vector<Param*> p;
  for (Layer* l : std::initializer_list<Layer*>{&ln1_, &attn_, &ln2_, &fc1_, &fc2_})
    for (Param* q : l->params()) p.push_back(q);
  return p;
}

// a = LN1(x); b = Attn(a); r = x + b; c = LN2(r); d = fc1(c); e = gelu(d); f = fc2(e); y = r + f
void TransformerBlock::Forward(const Tensor& x, Tensor* y) {
  ln1_.Forward(x, &a_);
  attn_.Forward(a_, &b_);
  AddInto(x, b_, &r_);
  ln2_.Forward(r_, &c_);
  fc1_.Forward(c_, &d_);
  gelu_.Forward(d_, &e_);
  fc2_.Forward(e_, &f_);
  AddInto(r_, f_, y);
}

// dr = dy + LN2'(fc1'(gelu'(fc2'(dy))));  dx = dr + LN1'(Attn'(dr))
void TransformerBlock::Backward(const Tensor& dy, Tensor* dx) {
  fc2_.Backward(dy, &g1_);
  gelu_.Backward(g1_, &g2_);
  fc1_.Backward(g2_, &g1_);
  ln2_.Backward(g1_, &g3_);
  AddInto(dy, g3_, &g4_);  // dr
  attn_.Backward(g4_, &g1_);
  ln1_.Backward(g1_, &g2_);
  if (dx) AddInto(g4_, g2_, dx);
}

void TransformerBlock::Step(const Tensor& x, int64_t pos, CausalSelfAttention::KvCache* cache, Tensor* y) {
  ln1_.Forward(x, &a_);
  attn_.Step(a_, pos, cache, &b_);
  AddInto(x, b_, &r_);
  ln2_.Forward(r_, &c_);
  fc1_.Forward(c_, &d_);
  gelu_.Forward(d_, &e_);
  fc2_.Forward(e_, &f_);
  AddInto(r_, f_, y);
}

Gpt::Cache Gpt::NewCache(int64_t batch) const {
  Cache c;
  c.layers.resize(o_.layers);
  for (auto& l : c.layers) {
    l.k.Resize({batch, o_.context, o_.width});
    l.v.Resize({batch, o_.context, o_.width});
  }
  return c;
}

void Gpt::Step(const Tensor& tokens, Cache* cache, Tensor* logits) {
  const int64_t b = tokens.size(), w = o_.width, pos = cache->pos;
  CHECK(pos < o_.context) << "GPT step at position " << pos << " beyond the context " << o_.context;
  const auto& layers = net_.layers();
  const std::vector<Param*> emb = layers[0]->params();  // token table (V, C), positions (T, C)
  // A step of few sequences is too small to share between threads (bench/sample_bench).
  SerialScope serial(b * w < kSharedStepWork);
  x_.Resize({b, w});
  for (int64_t r = 0; r < b; ++r) {
    const int64_t id = static_cast<int64_t>(tokens[r]);
    CHECK(id >= 0 && id < o_.vocab) << "token id " << id << " outside vocabulary " << o_.vocab;
    const float* row = emb[0]->value.data() + id * w;
    const float* p = emb[1]->value.data() + pos * w;
    for (int64_t e = 0; e < w; ++e) x_[r * w + e] = row[e] + p[e];
  }
  for (int64_t i = 0; i < o_.layers; ++i) {
    static_cast<TransformerBlock*>(layers[1 + i].get())->Step(x_, pos, &cache->layers[i], &y_);
    std::swap(x_, y_);
  }
  layers[1 + o_.layers]->Forward(x_, &h_);  // ln_f
  layers[2 + o_.layers]->Forward(h_, logits);  // lm_head
  ++cache->pos;
}

Gpt::Cache Gpt::Gather(const Cache& c, const std::vector<int64_t>& rows) {
  Cache out;
  out.pos = c.pos;
  for (const auto& l : c.layers) {
    const int64_t t = l.k.dim(1), w = l.k.dim(2), n = static_cast<int64_t>(rows.size());
    CausalSelfAttention::KvCache g;
    g.k.Resize({n, t, w});
    g.v.Resize({n, t, w});
    for (int64_t r = 0; r < n; ++r) {
      std::memcpy(g.k.data() + r * t * w, l.k.data() + rows[r] * t * w, c.pos * w * sizeof(float));
      std::memcpy(g.v.data() + r * t * w, l.v.data() + rows[r] * t * w, c.pos * w * sizeof(float));
    }
    out.layers.push_back(std::move(g));
  }
  return out;
}

Gpt::Gpt(const GptOptions& o, uint64_t seed) : o_(o) {
  Random rng(seed);
  net_.Add(std::make_unique<Embedding>("wte", o.vocab, o.width, o.context, &rng));
  for (int64_t i = 0; i < o.layers; ++i)
    net_.Add(std::make_unique<TransformerBlock>("h" + std::to_string(i), o.width, o.heads, &rng));
  net_.Add(std::make_unique<LayerNorm>("ln_f", o.width));
  net_.Add(std::make_unique<Linear>("lm_head", o.width, o.vocab, &rng, /*bias=*/false));
}

double Gpt::Forward(const Tensor& tokens, const Tensor& targets, const Tensor* weights) {
  logits_ = &net_.Forward(tokens);
  return loss_.Forward(*logits_, targets, weights);
}

void Gpt::Backward() {
  Tensor dlogits;
  loss_.Backward(&dlogits);
  net_.Backward(dlogits, nullptr);
}

int64_t Gpt::NumNonEmbeddingParams() {
  int64_t n = 0;
  for (Param* p : params())
    if (p->name.rfind("wte.", 0) != 0) n += p->value.size();
  return n;
}

}  // namespace distbelief
