#include "distbelief/scale/lm_run.h"

#include <chrono>
#include <cmath>
#include <numeric>

#include "distbelief/base/random.h"
#include "distbelief/models/gpt.h"
#include "distbelief/optim/update_rules.h"

namespace distbelief {
namespace {

// The model of a spec behind one interface: loss of (tokens, targets) and its gradient.
class LanguageModel {
 public:
  LanguageModel(const LmRunSpec& s, int64_t vocab) : workload_(s.workload) {
    if (s.workload == "gpt") {
      GptOptions o;
      o.vocab = vocab;
      o.context = s.context;
      o.width = s.width;
      o.layers = s.layers;
      o.heads = s.width / s.head_size;
      gpt_ = std::make_unique<Gpt>(o, s.seed);
    } else {
      Random rng(s.seed);
      net_.Add(std::make_unique<Embedding>("wte", vocab, s.width, 0, &rng));
      for (int64_t i = 0; i < s.layers; ++i)
        net_.Add(std::make_unique<Lstm>("lstm" + std::to_string(i), s.width, s.width, &rng));
      net_.Add(std::make_unique<Linear>("lm_head", s.width, vocab, &rng, /*bias=*/false));
    }
  }
  std::vector<Param*> params() { return gpt_ ? gpt_->params() : net_.params(); }
  double Forward(const Tensor& x, const Tensor& y) {
    if (gpt_) return gpt_->Forward(x, y);
    return loss_.Forward(net_.Forward(x), y);
  }
  void Backward() {
    if (gpt_) return gpt_->Backward();
    Tensor d;
    loss_.Backward(&d);
    net_.Backward(d, nullptr);
  }
  // Kaplan et al.'s N: everything but the token/position tables and the output head.
  int64_t NonEmbeddingParams() {
    int64_t n = 0;
    for (Param* p : params())
      if (p->name.rfind("wte.", 0) != 0 && p->name.rfind("lm_head.", 0) != 0) n += p->value.size();
    return n;
  }

 private:
  std::string workload_;
  std::unique_ptr<Gpt> gpt_;
  Sequential net_;
  SoftmaxCrossEntropy loss_;
};

// Fills (B, T) ids and targets from windows order[first .. first + B) of `stream`.
void FillBatch(const std::vector<uint16_t>& stream, const std::vector<int64_t>& order, int64_t first,
               int64_t batch, int64_t context, Tensor* x, Tensor* y) {
  x->Resize({batch, context});
  y->Resize({batch, context});
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t start = order[(first + b) % order.size()] * context;
    for (int64_t t = 0; t < context; ++t) {
      (*x)[b * context + t] = stream[start + t];
      (*y)[b * context + t] = stream[start + t + 1];
    }
  }
}

std::vector<int64_t> Permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(n);
  std::iota(p.begin(), p.end(), 0);
  Random rng(seed);
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[rng.UniformInt(i + 1)]);
  return p;
}

}  // namespace

int64_t CountParams(const LmRunSpec& s, int64_t vocab) {
  LmRunSpec small = s;
  return LanguageModel(small, vocab).NonEmbeddingParams();
}

StatusOr<LmRunResult> RunLanguageModel(const LmRunSpec& s, const TokenCorpus& corpus,
                                       const std::function<void(int64_t, int64_t, double)>& progress) {
  const int64_t T = s.context, B = s.batch;
  const int64_t train_windows = (static_cast<int64_t>(corpus.train.size()) - 1) / T;
  const int64_t eval_windows_all = (static_cast<int64_t>(corpus.heldout.size()) - 1) / T;
  const int64_t steps = std::max<int64_t>(1, s.tokens / (B * T));
  if (steps * B > train_windows)
    return absl::InvalidArgumentError("a run of " + std::to_string(s.tokens) + " tokens needs " +
                                      std::to_string(steps * B * T) + " training tokens but the corpus has " +
                                      std::to_string(train_windows * T) + " (in windows of " + std::to_string(T) + ")");
  if (eval_windows_all < 1)
    return absl::InvalidArgumentError("the held-out documents hold fewer than " + std::to_string(T + 1) + " tokens");
  // The data order depends on the sweep's seed only, never on the model, so runs are comparable.
  const std::vector<int64_t> order = Permutation(train_windows, 0x5eed0000 + s.seed);
  const std::vector<int64_t> eval_order = Permutation(eval_windows_all, 0xe7a10000 + s.seed);
  const int64_t eval_batches = std::max<int64_t>(1, std::min(eval_windows_all, s.eval_tokens / T) / B);

  LanguageModel model(s, corpus.vocab);
  LmRunResult r;
  r.params = model.NonEmbeddingParams();
  for (Param* p : model.params()) r.total_params += p->value.size();
  r.tokens = steps * B * T;
  r.flops_6nd = 6.0 * r.params * r.tokens;
  const double head = static_cast<double>(s.width) * corpus.vocab;
  r.flops_counted = (6.0 * (r.params + head) + (s.workload == "gpt" ? 6.0 * s.layers * T * s.width : 0.0)) * r.tokens;

  OptimizerOptions oo;
  oo.name = "adam";
  oo.learning_rate = s.learning_rate;
  oo.beta2 = 0.95f;
  Adam adam(oo);
  std::vector<Param*> params = model.params();
  std::vector<std::vector<float>> state(params.size());
  for (size_t i = 0; i < params.size(); ++i) state[i].assign(params[i]->value.size() * 2, 0.0f);

  const auto start = std::chrono::steady_clock::now();
  Tensor x, y;
  double smoothed = 0.0;
  const int64_t warmup = std::min(s.warmup_steps, steps / 5);
  for (int64_t step = 0; step < steps; ++step) {
    FillBatch(corpus.train, order, step * B, B, T, &x, &y);
    for (Param* p : params) p->grad.Fill(0.0f);
    const double loss = model.Forward(x, y);
    if (!std::isfinite(loss)) {
      r.diverged = true;
      break;
    }
    model.Backward();
    std::vector<std::span<float>> grads;
    for (Param* p : params) grads.emplace_back(p->grad.data(), p->grad.size());
    ClipByGlobalNorm(grads, 1.0f);
    // Linear warmup, then cosine decay to 10% of the rate.
    double lr;
    if (step < warmup) {
      lr = s.learning_rate * (step + 1.0) / warmup;
    } else {
      const double frac = static_cast<double>(step - warmup) / std::max<int64_t>(1, steps - warmup);
      lr = s.learning_rate * (0.1 + 0.45 * (1.0 + std::cos(M_PI * frac)));
    }
    adam.SetLearningRate(static_cast<float>(lr));
    for (size_t i = 0; i < params.size(); ++i)
      adam.Apply({params[i]->value.data(), static_cast<size_t>(params[i]->value.size())}, grads[i], state[i], step + 1);
    smoothed = step == 0 ? loss : 0.95 * smoothed + 0.05 * loss;
    if (progress && (step % 20 == 0 || step + 1 == steps)) progress(step + 1, steps, smoothed);
  }
  r.final_train_loss = smoothed;
  if (!r.diverged) {
    double sum = 0.0;
    for (int64_t b = 0; b < eval_batches; ++b) {
      FillBatch(corpus.heldout, eval_order, b * B, B, T, &x, &y);
      sum += model.Forward(x, y);
    }
    r.loss = sum / eval_batches;
    if (!std::isfinite(r.loss)) r.diverged = true;
  }
  if (r.diverged) r.loss = std::nan("");
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace distbelief
