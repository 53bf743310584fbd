#include "distbelief/workloads/mnist/mnist.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <numeric>

#include "distbelief/base/logging.h"
#include "distbelief/base/shuffle.h"
#include "distbelief/nn/loss.h"
#include "distbelief/train/checkpointing.h"

namespace distbelief {

StatusOr<MnistOptions> ParseMnistOptions(ConfigFile* file) {
  MnistOptions o;
  Section& m = file->section("model");
  DB_RETURN_IF_ERROR(m.Enum("kind", &o.model.kind, {{"mlp", ModelKind::kMlp}, {"autoencoder", ModelKind::kAutoencoder}}));
  DB_RETURN_IF_ERROR(m.IntList("hidden", &o.model.hidden, 1, 1 << 20));
  if (o.model.hidden.empty()) return m.Error("hidden", "must not be empty");
  DB_RETURN_IF_ERROR(m.Enum("activation", &o.model.activation,
                            {{"relu", Activation::kRelu}, {"sigmoid", Activation::kSigmoid}, {"tanh", Activation::kTanh}}));
  DB_RETURN_IF_ERROR(m.Float("dropout", &o.model.dropout, 0.0, 0.95));
  Section& t = file->section("train");
  DB_RETURN_IF_ERROR(t.String("data_dir", &o.data_dir));
  DB_RETURN_IF_ERROR(t.Int("epochs", &o.epochs, 1, 100000));
  DB_RETURN_IF_ERROR(t.Int("batch_size", &o.batch_size, 1, 1 << 20));
  DB_RETURN_IF_ERROR(t.Int("train_limit", &o.train_limit, 0, int64_t{1} << 40));
  if (o.train_limit > 0 && o.train_limit < o.batch_size)
    return t.Error("train_limit", "= " + std::to_string(o.train_limit) + " is smaller than train.batch_size = " +
                                      std::to_string(o.batch_size) + ": not one batch");
  return o;
}

StatusOr<std::shared_ptr<const MnistData>> MnistData::Load(const std::string& dir, int64_t train_limit) {
  auto d = std::make_shared<MnistData>();
  DB_ASSIGN_OR_RETURN(d->train, ReadMnist(dir, "train"));
  DB_ASSIGN_OR_RETURN(d->test, ReadMnist(dir, "t10k"));
  if (train_limit > 0 && train_limit < d->train.images.dim(0)) {
    const int64_t n = train_limit, row = d->train.images.dim(1);
    Tensor imgs({n, row}), labels({n});
    std::memcpy(imgs.data(), d->train.images.data(), n * row * sizeof(float));
    std::memcpy(labels.data(), d->train.labels.data(), n * sizeof(float));
    d->train.images = std::move(imgs);
    d->train.labels = std::move(labels);
  }
  return std::shared_ptr<const MnistData>(std::move(d));
}

void GatherRows(const Tensor& src, std::span<const int64_t> order, int64_t begin, int64_t count, Tensor* dst) {
  const int64_t n = src.dim(0), row = src.size() / n;
  Shape s = src.shape();
  s[0] = count;
  dst->Resize(s);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t r = order[begin + i];
    CHECK(r >= 0 && r < n) << "row " << r << " of " << n;
    std::memcpy(dst->data() + i * row, src.data() + r * row, row * sizeof(float));
  }
}

StatusOr<std::unique_ptr<MnistReplica>> MnistReplica::Create(const MnistOptions& o, std::shared_ptr<const MnistData> data,
                                                              uint64_t seed, int replica, int replicas) {
  std::unique_ptr<MnistReplica> m(new MnistReplica());
  ModelOptions mo = o.model;
  mo.inputs = data->train.images.dim(1);
  mo.classes = 10;
  DB_ASSIGN_OR_RETURN(m->model_, BuildModel(mo, seed));
  m->o_ = o;
  m->data_ = std::move(data);
  m->seed_ = seed;
  m->replica_ = replica;
  const int64_t n = m->data_->train.images.dim(0);
  for (int64_t i = replica; i < n; i += replicas) m->share_.push_back(i);
  if (static_cast<int64_t>(m->share_.size()) < o.batch_size)
    return absl::InvalidArgumentError("replica " + std::to_string(replica) + " of " + std::to_string(replicas) +
                                      " gets " + std::to_string(m->share_.size()) + " training examples, fewer than "
                                      "train.batch_size = " + std::to_string(o.batch_size));
  m->steps_per_epoch_ = static_cast<int64_t>(m->share_.size()) / o.batch_size;
  return m;
}

double MnistReplica::LossAndGradient(std::span<const int64_t> rows) {
  const int64_t n = static_cast<int64_t>(rows.size());
  GatherRows(data_->train.images, rows, 0, n, &x_);
  GatherRows(data_->train.labels, rows, 0, n, &target_);
  model_.ZeroGrad();
  const Tensor& out = model_.Forward(x_);
  Tensor dout;
  double loss;
  if (o_.model.kind == ModelKind::kMlp) {
    SoftmaxCrossEntropy ce;
    loss = ce.Forward(out, target_);
    ce.Backward(&dout);
  } else {
    MeanSquaredError mse;
    loss = mse.Forward(out, x_);
    mse.Backward(&dout);
  }
  model_.Backward(dout);
  return loss;
}

StatusOr<StepLoss> MnistReplica::ComputeGradient(int64_t step) {
  const int64_t epoch = step / steps_per_epoch_;
  if (epoch != epoch_) {  // this replica's share, in the order of a shuffle seeded by (seed, epoch, r)
    order_ = share_;
    Random rng(seed_ * 7919 + static_cast<uint64_t>(epoch) * 104729 + static_cast<uint64_t>(replica_));
    Shuffle(std::span<int64_t>(order_), &rng);
    epoch_ = epoch;
  }
  const int64_t b = (step % steps_per_epoch_) * o_.batch_size;
  StepLoss l;
  l.total = LossAndGradient(std::span<const int64_t>(order_).subspan(b, o_.batch_size));
  return l;
}

StatusOr<double> MnistReplica::ComputeGradientOn(int64_t begin, int64_t end) {
  if (full_order_.empty()) full_order_ = ShuffledRange(num_examples(), seed_);
  if (begin < 0 || end > num_examples() || begin >= end)
    return absl::InvalidArgumentError("examples [" + std::to_string(begin) + ", " + std::to_string(end) + ") outside the data");
  return LossAndGradient(std::span<const int64_t>(full_order_).subspan(begin, end - begin));
}

MnistEval MnistReplica::Evaluate(int64_t limit) {
  const LabelledImages& test = data_->test;
  model_.SetTraining(false);
  const int64_t n = limit > 0 ? std::min(limit, test.images.dim(0)) : test.images.dim(0), bs = 1000;
  double loss = 0.0;
  int64_t correct = 0;
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Tensor x, target;
  for (int64_t b = 0; b < n; b += bs) {
    const int64_t m = std::min(bs, n - b);
    GatherRows(test.images, order, b, m, &x);
    GatherRows(test.labels, order, b, m, &target);
    const Tensor& out = model_.Forward(x);
    if (o_.model.kind == ModelKind::kMlp) {
      SoftmaxCrossEntropy ce;
      loss += ce.Forward(out, target) * m;
      const int64_t classes = out.dim(-1);
      for (int64_t i = 0; i < m; ++i) {
        const float* row = out.data() + i * classes;
        if (std::max_element(row, row + classes) - row == static_cast<int64_t>(target[i])) ++correct;
      }
    } else {
      MeanSquaredError mse;
      loss += mse.Forward(out, x) * m;
    }
  }
  model_.SetTraining(true);
  return {loss / n, o_.model.kind == ModelKind::kMlp ? double(correct) / n : 0.0};
}

StatusOr<Job> MnistJob(const MnistOptions& o, std::shared_ptr<const MnistData> data, const EngineOptions& e) {
  const int replicas = e.distributed.mode == Mode::kDownpour ? e.distributed.downpour.replicas : 1;
  const uint64_t seed = e.train.seed;
  // Each replica's epoch is its share of the data: steps in all = R x epochs x steps of a share.
  DB_ASSIGN_OR_RETURN(auto probe, MnistReplica::Create(o, data, seed, 0, replicas));
  Job job;
  job.name = "mnist";
  job.steps = replicas * o.epochs * probe->steps_per_epoch();
  job.steps_per_epoch = probe->steps_per_epoch();
  job.examples_per_step = o.batch_size;
  job.make_replica = [o, data, seed](int r, int replicas) -> StatusOr<std::unique_ptr<ReplicaModel>> {
    DB_ASSIGN_OR_RETURN(auto m, MnistReplica::Create(o, data, seed, r, replicas));
    return std::unique_ptr<ReplicaModel>(std::move(m));
  };
  const ModelKind kind = o.model.kind;
  job.evaluate = [kind](ReplicaModel* model) -> StatusOr<Metrics> {
    const MnistEval ev = static_cast<MnistReplica*>(model)->Evaluate();
    if (kind == ModelKind::kMlp) return Metrics{{"test_loss", ev.loss}, {"test_accuracy", ev.accuracy}};
    return Metrics{{"test_loss", ev.loss}};
  };
  return job;
}

namespace {

void PrintEval(ModelKind kind, const MnistEval& ev) {
  if (kind == ModelKind::kMlp) {
    std::printf("test loss: %.4f\n", ev.loss);
    std::printf("test accuracy: %.2f%%\n", 100.0 * ev.accuracy);
  } else {
    std::printf("test reconstruction MSE: %.5f\n", ev.loss);
  }
}

class MnistWorkload : public Workload {
 public:
  explicit MnistWorkload(MnistOptions o) : o_(std::move(o)) {}

  StatusOr<Job> MakeJob(const EngineOptions& e) override {
    if (!data_) {
      DB_ASSIGN_OR_RETURN(data_, MnistData::Load(o_.data_dir, o_.train_limit));
    }
    return MnistJob(o_, data_, e);
  }

  Status Report(const EngineOptions& e, RunResult* r) override {
    const Mode mode = e.distributed.mode;
    if (r->diverged)
      return absl::InternalError("training diverged: the loss stopped being finite (lower optimizer.learning_rate)");
    if (mode == Mode::kLocal) {
      std::printf("steps: %ld\n", long(r->steps));
      std::printf("train loss: first %.4f, last %.4f\n", r->first_loss.total, r->last_loss.total);
    } else if (mode == Mode::kDownpour) {
      std::printf("mode: downpour, %d replicas, %d shards\n", e.distributed.downpour.replicas,
                  e.distributed.cluster.shards);
      if (r->seconds > 0)
        std::printf("examples: %ld in %.1f s (%.0f examples/s)\n", long(r->examples), r->seconds, r->examples / r->seconds);
      std::printf("staleness: mean %.2f, max %lu updates\n", r->mean_staleness, (unsigned long)r->max_staleness);
      if (r->replicas_failed) std::printf("replicas failed: %ld\n", long(r->replicas_failed));
    } else {
      std::printf("mode: sandblaster, %d replicas, %d shards\n", e.distributed.sandblaster.replicas,
                  e.distributed.cluster.shards);
      std::printf("function evaluations: %ld, backup tasks: %ld\n", long(r->evaluations), long(r->backup_tasks));
      std::printf("train loss: first %.5f, last %.5f\n", r->first_loss.total, r->last_loss.total);
    }
    for (const std::string& err : r->shard_errors) std::printf("shard error: %s\n", err.c_str());
    PrintEval(o_.model.kind, static_cast<MnistReplica*>(r->model.get())->Evaluate());
    std::printf("checkpoint: %s\n", RunCheckpointPath(e.train.run_dir).c_str());
    std::printf("metrics: %s/metrics.jsonl\n", e.train.run_dir.c_str());
    return absl::OkStatus();
  }

  Status Evaluate(const EngineOptions& e, const EvalRequest& request) override {
    if (!request.flags.empty()) return absl::InvalidArgumentError("eval of an MNIST model takes no flags");
    DB_ASSIGN_OR_RETURN(data_, MnistData::Load(o_.data_dir, o_.train_limit));
    DB_ASSIGN_OR_RETURN(auto model, MnistReplica::Create(o_, data_, e.train.seed, 0, 1));
    DB_RETURN_IF_ERROR(LoadModelCheckpoint(request.checkpoint, model->params(0)).status());
    PrintEval(o_.model.kind, model->Evaluate());
    return absl::OkStatus();
  }

 private:
  MnistOptions o_;
  std::shared_ptr<const MnistData> data_;
};

}  // namespace

StatusOr<std::unique_ptr<Workload>> MakeMnistWorkload(ConfigFile* file) {
  DB_ASSIGN_OR_RETURN(MnistOptions o, ParseMnistOptions(file));
  return std::unique_ptr<Workload>(new MnistWorkload(std::move(o)));
}

}  // namespace distbelief
