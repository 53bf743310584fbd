#include "distbelief/optim/update_rules.h"

#include <cmath>

#include "distbelief/base/parallel.h"

namespace distbelief {

void UpdateRule::ApplyOnPool(std::span<float> w, std::span<const float> g, std::span<float> state,
                             int64_t step) const {
  ParallelFor(static_cast<int64_t>(w.size()), 16384,
              [&](int64_t lo, int64_t hi) { ApplyRange(w, g, state, step, lo, hi); });
}

void Sgd::ApplyRange(std::span<float> w, std::span<const float> g, std::span<float> state,
                     int64_t step, int64_t lo, int64_t hi) const {
  const float lr = o_.learning_rate, wd = o_.weight_decay, mu = o_.momentum;
  if (mu > 0.0f) {
    for (int64_t i = lo; i < hi; ++i) {
      state[i] = mu * state[i] + g[i] + wd * w[i];
      w[i] -= lr * state[i];
    }
  } else {
    for (int64_t i = lo; i < hi; ++i) w[i] -= lr * (g[i] + wd * w[i]);
  }
}

void Adagrad::ApplyRange(std::span<float> w, std::span<const float> g, std::span<float> state,
                         int64_t step, int64_t lo, int64_t hi) const {
  const float lr = o_.learning_rate, wd = o_.weight_decay, eps = o_.epsilon;
  for (int64_t i = lo; i < hi; ++i) {
    const float gi = g[i] + wd * w[i];
    state[i] += gi * gi;
    w[i] -= lr * gi / std::sqrt(eps + state[i]);
  }
}

void Adam::ApplyRange(std::span<float> w, std::span<const float> g, std::span<float> state,
                      int64_t step, int64_t lo, int64_t hi) const {
  const size_t n = w.size();
  float* m = state.data();
  float* v = state.data() + n;
  const float b1 = o_.beta1, b2 = o_.beta2;
  const float c1 = 1.0f - static_cast<float>(std::pow(b1, step));
  const float c2 = 1.0f - static_cast<float>(std::pow(b2, step));
  const float lr = o_.learning_rate, eps = o_.epsilon, wd = o_.weight_decay;
  for (int64_t i = lo; i < hi; ++i) {
    const float gi = g[i] + wd * w[i];
    m[i] = b1 * m[i] + (1.0f - b1) * gi;
    v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
    w[i] -= lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + eps);
  }
}

StatusOr<std::unique_ptr<UpdateRule>> MakeUpdateRule(const OptimizerOptions& o) {
  if (!(o.learning_rate > 0.0f))
    return absl::InvalidArgumentError("optimizer.learning_rate must be > 0");
  switch (o.name) {
    case Optimizer::kSgd: return std::unique_ptr<UpdateRule>(new Sgd(o));
    case Optimizer::kAdagrad: return std::unique_ptr<UpdateRule>(new Adagrad(o));
    case Optimizer::kAdam: return std::unique_ptr<UpdateRule>(new Adam(o));
  }
  return absl::InvalidArgumentError("unknown optimizer " + std::to_string(static_cast<int>(o.name)));
}

const char* OptimizerName(Optimizer o) {
  switch (o) {
    case Optimizer::kSgd: return "sgd";
    case Optimizer::kAdagrad: return "adagrad";
    case Optimizer::kAdam: return "adam";
  }
  return "?";
}

double ClipByGlobalNorm(std::span<const std::span<float>> grads, float max_norm) {
  double sq = 0.0;
  for (auto g : grads)
    for (float v : g) sq += double(v) * v;
  const double norm = std::sqrt(sq);
  if (max_norm > 0.0f && norm > max_norm) {
    const float s = static_cast<float>(max_norm / norm);
    for (auto g : grads)
      for (float& v : g) v *= s;
  }
  return norm;
}

}  // namespace distbelief
