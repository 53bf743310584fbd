#include "distbelief/scale/autoencoder_run.h"

#include <chrono>
#include <cmath>
#include <numeric>

#include "distbelief/base/random.h"
#include "distbelief/models/models.h"
#include "distbelief/nn/loss.h"
#include "distbelief/optim/update_rules.h"
#include "distbelief/train/workload.h"

namespace distbelief {
namespace {

ModelOptions Options(const LmRunSpec& s) {
  ModelOptions m;
  m.kind = "autoencoder";
  m.hidden.assign(s.layers, s.width);
  m.activation = "sigmoid";
  m.inputs = 784;
  return m;
}

}  // namespace

int64_t CountAutoencoderParams(const LmRunSpec& s) {
  auto model = BuildModel(Options(s), s.seed);
  return model.ok() ? model->NumParameters() : 0;
}

StatusOr<LmRunResult> RunAutoencoder(const LmRunSpec& s, const LabelledImages& train, const LabelledImages& test,
                                     const std::function<void(int64_t, int64_t, double)>& progress) {
  const int64_t n_train = train.images.dim(0), B = s.batch;
  const int64_t steps = std::max<int64_t>(1, s.tokens / B);
  if (steps * B > n_train)
    return absl::InvalidArgumentError("a run of " + std::to_string(s.tokens) + " images needs more than the " +
                                      std::to_string(n_train) + " training images");
  ModelOptions mo = Options(s);
  mo.inputs = train.images.dim(1);
  DB_ASSIGN_OR_RETURN(Sequential model, BuildModel(mo, s.seed));
  // The same image order for every run of a sweep: smaller D are subsets of larger ones.
  std::vector<int64_t> order(n_train);
  std::iota(order.begin(), order.end(), 0);
  Random rng(0x5eed0000 + s.seed);
  for (int64_t i = n_train - 1; i > 0; --i) std::swap(order[i], order[rng.UniformInt(i + 1)]);

  LmRunResult r;
  r.params = r.total_params = model.NumParameters();
  r.tokens = steps * B;
  r.flops_6nd = r.flops_counted = 6.0 * r.params * r.tokens;
  OptimizerOptions oo;
  oo.name = "adam";
  oo.learning_rate = s.learning_rate;
  Adam adam(oo);
  std::vector<Param*> params = model.params();
  std::vector<std::vector<float>> state(params.size());
  for (size_t i = 0; i < params.size(); ++i) state[i].assign(params[i]->value.size() * 2, 0.0f);
  MeanSquaredError mse;
  Tensor x, dout;
  const auto start = std::chrono::steady_clock::now();
  const int64_t warmup = std::min(s.warmup_steps, steps / 5);
  double smoothed = 0.0;
  model.SetTraining(true);
  for (int64_t step = 0; step < steps; ++step) {
    GatherRows(train.images, order, step * B, B, &x);
    model.ZeroGrad();
    const double loss = mse.Forward(model.Forward(x), x);
    if (!std::isfinite(loss)) {
      r.diverged = true;
      break;
    }
    mse.Backward(&dout);
    model.Backward(dout, nullptr);
    double lr;
    if (step < warmup) {
      lr = s.learning_rate * (step + 1.0) / warmup;
    } else {
      const double frac = static_cast<double>(step - warmup) / std::max<int64_t>(1, steps - warmup);
      lr = s.learning_rate * (0.1 + 0.45 * (1.0 + std::cos(M_PI * frac)));
    }
    adam.SetLearningRate(static_cast<float>(lr));
    for (size_t i = 0; i < params.size(); ++i)
      adam.Apply(params[i]->value.span(), params[i]->grad.span(), state[i], step + 1);
    smoothed = step == 0 ? loss : 0.95 * smoothed + 0.05 * loss;
    if (progress && (step % 20 == 0 || step + 1 == steps)) progress(step + 1, steps, smoothed);
  }
  r.final_train_loss = smoothed;
  if (!r.diverged) {
    r.loss = Evaluate(&model, "autoencoder", test, s.eval_tokens).loss;
    if (!std::isfinite(r.loss)) r.diverged = true;
  }
  if (r.diverged) r.loss = std::nan("");
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace distbelief
