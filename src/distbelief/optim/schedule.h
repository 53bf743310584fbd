// Learning-rate schedules, the one place a rate changes over a run: the local driver asks for
// the rate of each step, and a parameter-server shard for the rate of each update it applies.
#pragma once

#include <cstdint>

namespace distbelief {

enum class Schedule {
  kConstant,  // the base rate throughout
  kCosine,    // linear warmup over warmup_steps, then cosine decay to final_fraction of the rate
              // (Loshchilov & Hutter 2017, without restarts)
};

struct ScheduleOptions {
  Schedule kind = Schedule::kConstant;
  int64_t warmup_steps = 0;     // cosine: steps of linear warmup from rate / warmup_steps
  float final_fraction = 0.05f; // cosine: the rate at the last step, as a fraction of the base
};

// The rate of step `step` (0-based) of `total` steps, for base rate `rate`.
float ScheduledRate(const ScheduleOptions& s, float rate, int64_t step, int64_t total);

}  // namespace distbelief
