// Update rules on flat arrays. The same object serves the local driver and the parameter-server
// shards (Dean et al. 2012, §4.1: Adagrad applied on the shards).
// Apply is thread-compatible: distinct (w, state) spans may be updated concurrently. ApplyOnPool
// splits one update over the process's thread pool (base/parallel.h): call it only from a thread
// that owns the pool (the driver, not a shard's transport threads); its result is bitwise Apply's.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "distbelief/base/status.h"

namespace distbelief {

enum class Optimizer { kSgd, kAdagrad, kAdam };
const char* OptimizerName(Optimizer o);  // "sgd", "adagrad", "adam"

// [optimizer] in a config.
struct OptimizerOptions {
  Optimizer name = Optimizer::kSgd;
  float learning_rate = 0.01f;  // gamma
  float momentum = 0.0f;        // sgd only; 0 = plain SGD
  float weight_decay = 0.0f;    // L2 term added to the gradient
  float beta1 = 0.9f, beta2 = 0.999f;  // adam
  float epsilon = 1e-8f;        // adam; adagrad uses it inside the square root
  float clip_norm = 0.0f;       // 0 = no clipping; applied by the trainer over all gradients
};

class UpdateRule {
 public:
  virtual ~UpdateRule() = default;
  virtual std::string Name() const = 0;
  // Floats of optimizer state kept per parameter (0, 1 or 2); the state starts at zero.
  virtual int StatePerParam() const = 0;
  // w (n), g (n), state (n * StatePerParam()). `step` counts updates from 1 (Adam's bias terms).
  void Apply(std::span<float> w, std::span<const float> g, std::span<float> state, int64_t step) const {
    ApplyRange(w, g, state, step, 0, static_cast<int64_t>(w.size()));
  }
  // The same update, elements in chunks over the thread pool (every rule is elementwise).
  void ApplyOnPool(std::span<float> w, std::span<const float> g, std::span<float> state, int64_t step) const;
  // Changes gamma for later updates (learning-rate schedules).
  void SetLearningRate(float lr) { o_.learning_rate = lr; }
  const OptimizerOptions& options() const { return o_; }

 protected:
  explicit UpdateRule(const OptimizerOptions& o) : o_(o) {}
  // Updates elements [lo, hi) of the n = w.size() (state laid out for all n).
  virtual void ApplyRange(std::span<float> w, std::span<const float> g, std::span<float> state, int64_t step,
                          int64_t lo, int64_t hi) const = 0;
  OptimizerOptions o_;
};


// w -= lr (g + wd w), or with momentum: v = mu v + g; w -= lr v.
class Sgd : public UpdateRule {
 public:
  explicit Sgd(const OptimizerOptions& o) : UpdateRule(o) {}
  std::string Name() const override { return "sgd"; }
  int StatePerParam() const override { return o_.momentum > 0.0f ? 1 : 0; }

 protected:
  void ApplyRange(std::span<float> w, std::span<const float> g, std::span<float> state, int64_t step, int64_t lo,
                  int64_t hi) const override;
};

// DistBelief's Adagrad (Dean et al. 2012, §4.1; Duchi et al. 2011): each parameter's learning rate
// is gamma / sqrt(eps + sum of its squared gradients). state = the running sum.
class Adagrad : public UpdateRule {
 public:
  explicit Adagrad(const OptimizerOptions& o) : UpdateRule(o) {}
  std::string Name() const override { return "adagrad"; }
  int StatePerParam() const override { return 1; }

 protected:
  void ApplyRange(std::span<float> w, std::span<const float> g, std::span<float> state, int64_t step, int64_t lo,
                  int64_t hi) const override;
};

// Adam (Kingma & Ba 2015) with bias correction. state = [m (n), v (n)].
class Adam : public UpdateRule {
 public:
  explicit Adam(const OptimizerOptions& o) : UpdateRule(o) {}
  std::string Name() const override { return "adam"; }
  int StatePerParam() const override { return 2; }

 protected:
  void ApplyRange(std::span<float> w, std::span<const float> g, std::span<float> state, int64_t step, int64_t lo,
                  int64_t hi) const override;
};

// Returns the rule o.name names, or kInvalidArgument if the learning rate is not positive.
StatusOr<std::unique_ptr<UpdateRule>> MakeUpdateRule(const OptimizerOptions& o);

// Scales all gradients so that their joint L2 norm is at most max_norm. Returns the norm before
// clipping.
double ClipByGlobalNorm(std::span<const std::span<float>> grads, float max_norm);

}  // namespace distbelief
