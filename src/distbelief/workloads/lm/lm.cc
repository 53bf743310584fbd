#include "distbelief/workloads/lm/lm.h"

#include <chrono>
#include <cmath>
#include <cstdio>

#include "distbelief/base/shuffle.h"
#include "distbelief/models/gpt.h"
#include "distbelief/models/sequential.h"
#include "distbelief/nn/loss.h"
#include "distbelief/nn/sequence.h"
#include "distbelief/train/checkpointing.h"
#include "distbelief/train/local.h"
#include "distbelief/train/observers.h"

namespace distbelief {
namespace {

// The model of a spec behind one interface: loss of (tokens, targets) and its gradient.
class LanguageModel {
 public:
  LanguageModel(const LmRunSpec& s, int64_t vocab) {
    if (s.workload == LmKind::kGpt) {
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
  std::unique_ptr<Gpt> gpt_;
  Sequential net_;
  SoftmaxCrossEntropy loss_;
};

// Fills (B, T) ids and targets from windows order[first .. first + B) of `stream`.
void FillBatch(const std::vector<uint16_t>& stream, const std::vector<int64_t>& order, int64_t first, int64_t batch,
               int64_t context, Tensor* x, Tensor* y) {
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

// The window orders of a spec: training and held-out, fixed by the seed alone.
struct Windows {
  std::vector<int64_t> train, heldout;
};

class LmReplica : public ReplicaModel {
 public:
  LmReplica(const LmRunSpec& s, std::shared_ptr<const TokenCorpus> corpus, std::shared_ptr<const Windows> windows,
            int replica, int replicas)
      : s_(s), corpus_(std::move(corpus)), windows_(std::move(windows)), model_(s, corpus_->vocab), r_(replica),
        replicas_(replicas) {}
  std::vector<Param*> params(int) override { return model_.params(); }
  StatusOr<StepLoss> ComputeGradient(int64_t step) override {
    FillBatch(corpus_->train, windows_->train, (step * replicas_ + r_) * s_.batch, s_.batch, s_.context, &x_, &y_);
    for (Param* p : model_.params()) p->grad.Fill(0.0f);
    StepLoss l;
    l.total = model_.Forward(x_, y_);
    if (std::isfinite(l.total)) model_.Backward();
    return l;
  }
  double HeldOut() {
    const int64_t windows = static_cast<int64_t>(windows_->heldout.size());
    const int64_t batches = std::max<int64_t>(1, std::min(windows, s_.eval_tokens / s_.context) / s_.batch);
    double sum = 0.0;
    for (int64_t b = 0; b < batches; ++b) {
      FillBatch(corpus_->heldout, windows_->heldout, b * s_.batch, s_.batch, s_.context, &x_, &y_);
      sum += model_.Forward(x_, y_);
    }
    return sum / static_cast<double>(batches);
  }
  LanguageModel& model() { return model_; }

 private:
  LmRunSpec s_;
  std::shared_ptr<const TokenCorpus> corpus_;
  std::shared_ptr<const Windows> windows_;
  LanguageModel model_;
  int r_, replicas_;
  Tensor x_, y_;
};

}  // namespace

int64_t CountParams(const LmRunSpec& s, int64_t vocab) { return LanguageModel(s, vocab).NonEmbeddingParams(); }

StatusOr<Job> LmJob(const LmRunSpec& s, std::shared_ptr<const TokenCorpus> corpus, int replicas) {
  const int64_t T = s.context, B = s.batch;
  const int64_t train_windows = (static_cast<int64_t>(corpus->train.size()) - 1) / T;
  const int64_t eval_windows = (static_cast<int64_t>(corpus->heldout.size()) - 1) / T;
  const int64_t steps = std::max<int64_t>(1, s.tokens / (B * T));
  if (steps * B > train_windows)
    return absl::InvalidArgumentError("a run of " + std::to_string(s.tokens) + " tokens needs " +
                                      std::to_string(steps * B * T) + " training tokens but the corpus has " +
                                      std::to_string(train_windows * T) + " (in windows of " + std::to_string(T) + ")");
  if (eval_windows < 1)
    return absl::InvalidArgumentError("the held-out documents hold fewer than " + std::to_string(T + 1) + " tokens");
  auto windows = std::make_shared<Windows>();
  windows->train = ShuffledRange(train_windows, 0x5eed0000 + s.seed);
  windows->heldout = ShuffledRange(eval_windows, 0xe7a10000 + s.seed);
  Job job;
  job.name = "lm";
  job.steps = (steps / replicas) * replicas;  // whole steps for every replica: no window twice
  if (job.steps == 0) job.steps = steps;
  job.examples_per_step = B * T;
  job.make_replica = [s, corpus, windows](int r, int replicas) -> StatusOr<std::unique_ptr<ReplicaModel>> {
    return std::unique_ptr<ReplicaModel>(new LmReplica(s, corpus, windows, r, replicas));
  };
  job.evaluate = [](ReplicaModel* m) -> StatusOr<Metrics> { return Metrics{{"heldout_loss", HeldOutLoss(m)}}; };
  return job;
}

double HeldOutLoss(ReplicaModel* model) { return static_cast<LmReplica*>(model)->HeldOut(); }

StatusOr<LmRunResult> RunLanguageModel(const LmRunSpec& s, std::shared_ptr<const TokenCorpus> corpus,
                                       const std::function<void(int64_t, int64_t, double)>& progress) {
  DB_ASSIGN_OR_RETURN(Job job, LmJob(s, corpus, 1));
  job.write_checkpoint = false;
  job.show_progress = false;
  job.evaluate = nullptr;
  TrainOptions t;
  t.run_dir.clear();  // nothing written: the sweep keeps its own records
  t.seed = s.seed;
  t.schedule = {Schedule::kCosine, std::min(s.warmup_steps, job.steps / 5), 0.1f};
  OptimizerOptions o;
  o.name = Optimizer::kAdam;
  o.learning_rate = s.learning_rate;
  o.beta2 = 0.95f;
  o.clip_norm = 1.0f;
  SmoothedLoss observer(job.steps, progress);
  DB_ASSIGN_OR_RETURN(RunResult run, TrainLocal(t, o, job, &observer));
  LmRunResult r;
  auto* model = static_cast<LmReplica*>(run.model.get());
  r.params = model->model().NonEmbeddingParams();
  r.total_params = CountParams(model->params(0));
  r.tokens = job.steps * job.examples_per_step;
  r.flops_6nd = 6.0 * r.params * r.tokens;
  const double head = static_cast<double>(s.width) * corpus->vocab;
  r.flops_counted =
      (6.0 * (r.params + head) + (s.workload == LmKind::kGpt ? 6.0 * s.layers * s.context * s.width : 0.0)) * r.tokens;
  r.seconds = run.seconds;
  r.final_train_loss = observer.smoothed();
  r.diverged = run.diverged;
  if (!r.diverged) {
    r.loss = model->HeldOut();
    r.diverged = !std::isfinite(r.loss);
  }
  if (r.diverged) r.loss = std::nan("");
  return r;
}

namespace {

struct LmWorkloadOptions {
  LmRunSpec spec;
  CorpusOptions corpus;
};

class LmWorkload : public Workload {
 public:
  explicit LmWorkload(LmWorkloadOptions o) : o_(std::move(o)) {}
  StatusOr<Job> MakeJob(const EngineOptions& e) override {
    if (!corpus_) {
      DB_ASSIGN_OR_RETURN(TokenCorpus c, LoadTokenCorpus(o_.corpus));
      corpus_ = std::make_shared<const TokenCorpus>(std::move(c));
    }
    LmRunSpec s = o_.spec;
    s.seed = e.train.seed;
    const int replicas = e.distributed.mode == Mode::kDownpour ? e.distributed.downpour.replicas : 1;
    return LmJob(s, corpus_, replicas);
  }
  Status Report(const EngineOptions& e, RunResult* r) override {
    if (r->diverged) return absl::InternalError("the language model diverged (lower optimizer.learning_rate)");
    std::printf("steps: %ld, %ld tokens in %.1f s\n", long(r->steps), long(r->examples), r->seconds);
    std::printf("train loss: first %.4f, last %.4f\n", r->first_loss.total, r->last_loss.total);
    if (e.distributed.mode == Mode::kDownpour)
      std::printf("downpour: %d replicas, mean staleness %.2f updates\n", e.distributed.downpour.replicas, r->mean_staleness);
    std::printf("held-out loss: %.4f nats/token\n", HeldOutLoss(r->model.get()));
    std::printf("checkpoint: %s\n", RunCheckpointPath(e.train.run_dir).c_str());
    return absl::OkStatus();
  }
  Status Evaluate(const EngineOptions& e, const EvalRequest& request) override {
    DB_ASSIGN_OR_RETURN(Job job, MakeJob(e));
    DB_ASSIGN_OR_RETURN(auto model, job.make_replica(0, 1));
    DB_RETURN_IF_ERROR(LoadModelCheckpoint(request.checkpoint, model->params(0)).status());
    std::printf("held-out loss: %.4f nats/token\n", HeldOutLoss(model.get()));
    return absl::OkStatus();
  }

 private:
  LmWorkloadOptions o_;
  std::shared_ptr<const TokenCorpus> corpus_;
};

}  // namespace

StatusOr<std::unique_ptr<Workload>> MakeLmWorkload(ConfigFile* file) {
  LmWorkloadOptions o;
  Section& l = file->section("lm");
  DB_RETURN_IF_ERROR(l.String("corpus_dir", &o.corpus.dir));
  DB_RETURN_IF_ERROR(l.String("cache_dir", &o.corpus.cache_dir));
  DB_RETURN_IF_ERROR(l.Int("vocab", &o.corpus.vocab, 16, 65536));
  DB_RETURN_IF_ERROR(l.Int("holdout_every", &o.corpus.holdout_every, 2, 1 << 20));
  LmRunSpec& s = o.spec;
  DB_RETURN_IF_ERROR(l.Enum("workload", &s.workload, {{"gpt", LmKind::kGpt}, {"lstm", LmKind::kLstm}}));
  DB_RETURN_IF_ERROR(l.Int("width", &s.width, 1, 1 << 16));
  DB_RETURN_IF_ERROR(l.Int("layers", &s.layers, 1, 1024));
  DB_RETURN_IF_ERROR(l.Int("head_size", &s.head_size, 1, 4096));
  DB_RETURN_IF_ERROR(l.Int("context", &s.context, 2, 4096));
  DB_RETURN_IF_ERROR(l.Int("batch", &s.batch, 1, 1 << 16));
  DB_RETURN_IF_ERROR(l.Int("tokens", &s.tokens, 1, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(l.Int("eval_tokens", &s.eval_tokens, 1, int64_t{1} << 40));
  if (s.workload == LmKind::kGpt && s.width % s.head_size != 0)
    return l.Error("width", "= " + std::to_string(s.width) + " is not a multiple of lm.head_size = " +
                                std::to_string(s.head_size));
  return std::unique_ptr<Workload>(new LmWorkload(std::move(o)));
}

}  // namespace distbelief
