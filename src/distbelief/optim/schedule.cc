#include "distbelief/optim/schedule.h"

#include <algorithm>
#include <cmath>

namespace distbelief {

float ScheduledRate(const ScheduleOptions& s, float rate, int64_t step, int64_t total) {
  if (s.kind == Schedule::kConstant) return rate;
  const int64_t warmup = std::min(s.warmup_steps, total);
  if (step < warmup) return static_cast<float>(rate * (step + 1.0) / warmup);
  // Cosine from the end of warmup (progress 0) to the last step (progress 1).
  const int64_t span = std::max<int64_t>(1, total - 1 - warmup);
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
  const double f = s.final_fraction;
  return static_cast<float>(rate * (f + (1.0 - f) * 0.5 * (1.0 + std::cos(M_PI * progress))));
}

}  // namespace distbelief
