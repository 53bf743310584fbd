// A cost model for model parallelism, after Dean et al. 2012's figure 3: the step time of a model
// split over M machines is, layer by layer (no overlap of compute and communication, as a
// conservative bound),
//     compute_l * (largest block's share of layer l)  +  2 * max over machines of
//     (messages received * latency + bytes received / bandwidth)          [forward and backward]
// with compute_l the measured forward+backward time of the whole layer on one machine and the
// shares and crossings taken from the partition plan. Speedup(M) = step(1) / step(M).
#pragma once

#include <vector>

#include "distbelief/mp/plan.h"

namespace distbelief {

struct LinkModel {
  double bytes_per_second = 125e6;  // 1 Gbit/s Ethernet
  double latency_seconds = 5e-4;    // per message, RPC overhead included
};

struct StepPrediction {
  double seconds = 0, compute_seconds = 0, communication_seconds = 0;
};

// layer_seconds[l]: forward + backward time of layer l, unpartitioned, for `batch` examples.
// kInvalidArgument when the model cannot be split M ways.
StatusOr<StepPrediction> PredictStep(const MpModelSpec& spec, int machines, const std::vector<double>& layer_seconds,
                                     int64_t batch, const LinkModel& link);

// Forward + backward FLOPs of each layer per example (multiply-adds x 2 x 3 for the weighted
// layers; pooling and LCN counted by their window sums), for estimating layer_seconds of models
// too large to run here from a measured FLOP rate.
std::vector<double> LayerFlopsPerExample(const MpModelSpec& spec);

}  // namespace distbelief
