#include "distbelief/workloads/scale/autoencoder_run.h"

#include <cmath>

#include "distbelief/train/local.h"
#include "distbelief/train/observers.h"

namespace distbelief {
namespace {

MnistOptions Options(const LmRunSpec& s) {
  MnistOptions o;
  o.model.kind = ModelKind::kAutoencoder;
  o.model.hidden.assign(s.layers, s.width);
  o.model.activation = Activation::kSigmoid;
  o.batch_size = s.batch;
  o.epochs = 1;
  return o;
}

}  // namespace

int64_t CountAutoencoderParams(const LmRunSpec& s) {
  ModelOptions m = Options(s).model;
  m.inputs = 784;
  auto model = BuildModel(m, s.seed);
  return model.ok() ? model->NumParameters() : 0;
}

StatusOr<LmRunResult> RunAutoencoder(const LmRunSpec& s, std::shared_ptr<const MnistData> data,
                                     const std::function<void(int64_t, int64_t, double)>& progress) {
  const int64_t n_train = data->train.images.dim(0), B = s.batch;
  const int64_t steps = std::max<int64_t>(1, s.tokens / B);
  if (steps * B > n_train)
    return absl::InvalidArgumentError("a run of " + std::to_string(s.tokens) + " images needs more than the " +
                                      std::to_string(n_train) + " training images");
  EngineOptions e;
  e.train.seed = s.seed;
  DB_ASSIGN_OR_RETURN(Job job, MnistJob(Options(s), data, e));
  job.steps = steps;  // one pass over the first steps x B images of the fixed order
  job.write_checkpoint = false;
  job.show_progress = false;
  job.evaluate = nullptr;
  TrainOptions t;
  t.run_dir.clear();
  t.seed = s.seed;
  t.schedule = {Schedule::kCosine, std::min(s.warmup_steps, steps / 5), 0.1f};
  OptimizerOptions o;
  o.name = Optimizer::kAdam;
  o.learning_rate = s.learning_rate;
  SmoothedLoss observer(steps, progress);
  DB_ASSIGN_OR_RETURN(RunResult run, TrainLocal(t, o, job, &observer));
  LmRunResult r;
  r.params = r.total_params = CountParams(run.model->params(0));
  r.tokens = steps * B;
  r.flops_6nd = r.flops_counted = 6.0 * r.params * r.tokens;
  r.seconds = run.seconds;
  r.final_train_loss = observer.smoothed();
  r.diverged = run.diverged;
  if (!r.diverged) {
    r.loss = static_cast<MnistReplica*>(run.model.get())->Evaluate(s.eval_tokens).loss;
    r.diverged = !std::isfinite(r.loss);
  }
  if (r.diverged) r.loss = std::nan("");
  return r;
}

}  // namespace distbelief
