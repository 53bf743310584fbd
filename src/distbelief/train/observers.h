// Small observers of a run (train/replica_model.h, TrainObserver).
#pragma once

#include <cstdint>
#include <functional>

#include "distbelief/train/replica_model.h"

namespace distbelief {

// Keeps an exponentially smoothed training loss (weight 0.05 per step) and calls
// progress(step, steps, smoothed) on the first step, every 20th and the last.
class SmoothedLoss : public TrainObserver {
 public:
  using Callback = std::function<void(int64_t step, int64_t steps, double smoothed)>;
  SmoothedLoss(int64_t steps, Callback progress) : steps_(steps), progress_(std::move(progress)) {}
  void OnStep(int64_t step, const StepLoss& loss) override {
    smoothed_ = step == 1 ? loss.total : 0.95 * smoothed_ + 0.05 * loss.total;
    if (progress_ && ((step - 1) % 20 == 0 || step == steps_)) progress_(step, steps_, smoothed_);
  }
  double smoothed() const { return smoothed_; }

 private:
  int64_t steps_;
  Callback progress_;
  double smoothed_ = 0.0;
};

}  // namespace distbelief
