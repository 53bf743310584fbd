#include "distbelief/train/local_trainer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"
#include "distbelief/base/random.h"
#include "distbelief/io/checkpoint.h"
#include "distbelief/io/metrics.h"
#include "distbelief/models/models.h"
#include "distbelief/nn/loss.h"

namespace distbelief {
namespace {

// The order of examples in `epoch`: a Fisher-Yates shuffle seeded by (seed, epoch), so a resumed
// run sees the same order as an uninterrupted one.
std::vector<int64_t> EpochOrder(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Random rng(seed * 1000003 + static_cast<uint64_t>(epoch));
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.UniformInt(i + 1)]);
  return order;
}

}  // namespace

StatusOr<std::unique_ptr<LocalTrainer>> LocalTrainer::Create(const Config& config) {
  std::unique_ptr<LocalTrainer> t(new LocalTrainer(config));
  const TrainOptions& o = t->config_.train;
  int threads = static_cast<int>(o.threads);
  if (o.deterministic && threads == 0) threads = 1;
  SetNumThreads(threads);
  DB_ASSIGN_OR_RETURN(t->data_, Dataset::Load(o));
  ModelOptions mo = t->config_.model;
  mo.inputs = t->data_->train.images.dim(1);
  mo.classes = 10;
  DB_ASSIGN_OR_RETURN(t->model_, BuildModel(mo, o.seed));
  DB_ASSIGN_OR_RETURN(t->rule_, MakeUpdateRule(t->config_.optimizer));
  for (Param* p : t->model_.params())
    t->state_.emplace_back(Shape{p->value.size() * t->rule_->StatePerParam()});
  t->steps_per_epoch_ = std::max<int64_t>(1, t->data_->train.images.dim(0) / o.batch_size);
  t->total_steps_ = t->steps_per_epoch_ * o.epochs;
  if (o.max_steps > 0) t->total_steps_ = std::min(t->total_steps_, o.max_steps);
  return t;
}

float LocalTrainer::LearningRate(int64_t step) const {
  const float lr = config_.optimizer.learning_rate;
  if (config_.train.lr_schedule == "constant" || total_steps_ <= 1) return lr;
  // Cosine decay from lr to 5% of lr over the run (Loshchilov & Hutter 2017, no restarts).
  const double progress = double(step) / double(total_steps_ - 1);
  return static_cast<float>(lr * (0.05 + 0.95 * 0.5 * (1.0 + std::cos(M_PI * progress))));
}

void LocalTrainer::Step(const Tensor& x, const Tensor& target, double* loss) {
  model_.ZeroGrad();
  const Tensor& out = model_.Forward(x);
  Tensor dout;
  if (config_.model.kind == "mlp") {
    SoftmaxCrossEntropy ce;
    *loss = ce.Forward(out, target);
    ce.Backward(&dout);
  } else {
    MeanSquaredError mse;
    *loss = mse.Forward(out, x);
    mse.Backward(&dout);
  }
  model_.Backward(dout);
  std::vector<Param*> params = model_.params();
  if (config_.optimizer.clip_norm > 0.0f) {
    std::vector<std::span<float>> grads;
    for (Param* p : params) grads.push_back(p->grad.span());
    ClipByGlobalNorm(grads, config_.optimizer.clip_norm);
  }
  ++step_;
  for (size_t i = 0; i < params.size(); ++i)
    rule_->Apply(params[i]->value.span(), params[i]->grad.span(), state_[i].span(), step_);
}

StatusOr<TrainResult> LocalTrainer::Run(int64_t stop_at) {
  const int64_t end = stop_at > 0 ? std::min(stop_at, total_steps_) : total_steps_;
  const TrainOptions& o = config_.train;
  MetricsWriter metrics;
  DB_RETURN_IF_ERROR(metrics.Open(o.run_dir + "/metrics.jsonl"));
  LOG_INFO << "training " << config_.model.kind << " with " << model_.NumParameters()
           << " parameters on " << data_->train.images.dim(0) << " examples, " << total_steps_
           << " steps of batch " << o.batch_size << ", " << NumThreads() << " thread(s)";
  TrainResult r;
  Progress progress(total_steps_ * o.batch_size, "examples");
  Tensor x, target;
  double window_loss = 0.0;
  int64_t window_steps = 0;
  bool first_window = true;
  model_.SetTraining(true);
  while (step_ < end) {
    const int64_t epoch = step_ / steps_per_epoch_;
    const std::vector<int64_t> order = EpochOrder(data_->train.images.dim(0), o.seed, epoch);
    for (int64_t b = step_ % steps_per_epoch_; b < steps_per_epoch_ && step_ < end; ++b) {
      GatherRows(data_->train.images, order, b * o.batch_size, o.batch_size, &x);
      GatherRows(data_->train.labels, order, b * o.batch_size, o.batch_size, &target);
      rule_->SetLearningRate(LearningRate(step_));
      double loss = 0.0;
      Step(x, target, &loss);
      if (!std::isfinite(loss))
        return absl::InternalError("training diverged: loss is " + std::to_string(loss) +
                                   " at step " + std::to_string(step_) +
                                   " (lower optimizer.learning_rate)");
      window_loss += loss;
      ++window_steps;
      char status[64];
      std::snprintf(status, sizeof(status), "epoch %ld loss %.4f", long(epoch + 1), loss);
      progress.Update(step_ * o.batch_size, status);
      if (step_ % o.log_every == 0 || step_ == total_steps_) {
        const double mean = window_loss / window_steps;
        if (first_window) r.first_train_loss = mean;
        first_window = false;
        r.last_train_loss = mean;
        metrics.Write({{"step", step_}, {"epoch", epoch + 1}, {"train_loss", mean},
                       {"lr", LearningRate(step_ - 1)}});
        window_loss = 0.0;
        window_steps = 0;
      }
      if (o.checkpoint_every > 0 && step_ % o.checkpoint_every == 0)
        DB_RETURN_IF_ERROR(SaveCheckpoint());
    }
    if (step_ % steps_per_epoch_ == 0 || step_ == total_steps_) {
      Evaluate(&r);
      model_.SetTraining(true);
      metrics.Write({{"step", step_}, {"epoch", epoch + 1}, {"test_loss", r.test_loss},
                     {"test_accuracy", r.test_accuracy}});
      if (o.checkpoint_every == 0) DB_RETURN_IF_ERROR(SaveCheckpoint());
    }
  }
  progress.Finish();
  if (window_steps > 0) r.last_train_loss = window_loss / window_steps;
  r.steps = step_;
  return r;
}

void LocalTrainer::Evaluate(TrainResult* r) {
  const EvalResult e = distbelief::Evaluate(&model_, config_.model.kind, data_->test);
  r->test_loss = e.loss;
  r->test_accuracy = e.accuracy;
}

Status LocalTrainer::SaveCheckpoint() const {
  Checkpoint c;
  auto& self = const_cast<LocalTrainer&>(*this);  // params() hands out mutable pointers
  std::vector<Param*> params = self.model_.params();
  for (size_t i = 0; i < params.size(); ++i) {
    c.tensors.emplace(params[i]->name, params[i]->value);
    if (state_[i].size() > 0) c.tensors.emplace("optimizer/" + params[i]->name, state_[i]);
  }
  c.metadata["step"] = std::to_string(step_);
  c.metadata["optimizer"] = rule_->Name();
  c.metadata["config"] = config_.text;
  c.metadata["format"] = "distbelief-checkpoint-1";
  return WriteCheckpoint(checkpoint_path(), c);
}

Status LocalTrainer::Resume(const std::string& path) {
  DB_ASSIGN_OR_RETURN(Checkpoint c, ReadCheckpoint(path));
  auto step_it = c.metadata.find("step");
  if (step_it == c.metadata.end()) return absl::DataLossError(path + ": metadata has no step");
  int64_t step = 0;
  try {
    step = std::stoll(step_it->second);
  } catch (const std::exception&) {
    return absl::DataLossError(path + ": step '" + step_it->second + "' is not a number");
  }
  // Check everything before changing anything, so a bad file never half-loads.
  std::vector<Param*> params = model_.params();
  for (size_t i = 0; i < params.size(); ++i) {
    auto it = c.tensors.find(params[i]->name);
    if (it == c.tensors.end())
      return absl::InvalidArgumentError(path + ": no tensor for parameter " + params[i]->name);
    if (it->second.shape() != params[i]->value.shape())
      return absl::InvalidArgumentError(path + ": " + params[i]->name + " has shape " +
                                        it->second.ShapeString() + ", the model wants " +
                                        params[i]->value.ShapeString());
    if (state_[i].size() > 0) {
      // A checkpoint of a distributed run keeps optimizer state on the shards, not here: a missing
      // state starts from zero; a state of the wrong size is refused.
      auto st = c.tensors.find("optimizer/" + params[i]->name);
      if (st != c.tensors.end() && st->second.size() != state_[i].size())
        return absl::InvalidArgumentError(path + ": optimizer state for " + params[i]->name +
                                          " has the wrong size");
    }
  }
  for (size_t i = 0; i < params.size(); ++i) {
    params[i]->value = c.tensors.at(params[i]->name);
    auto st = c.tensors.find("optimizer/" + params[i]->name);
    if (state_[i].size() > 0 && st != c.tensors.end()) state_[i] = st->second;
  }
  step_ = step;
  return absl::OkStatus();
}

}  // namespace distbelief
