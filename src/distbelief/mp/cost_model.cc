#include "distbelief/mp/cost_model.h"

#include <algorithm>

namespace distbelief {

StatusOr<StepPrediction> PredictStep(const MpModelSpec& spec, int machines, const std::vector<double>& layer_seconds,
                                     int64_t batch, const LinkModel& link) {
  if (layer_seconds.size() != spec.layers.size())
    return absl::InvalidArgumentError("one measured time per layer is needed");
  DB_ASSIGN_OR_RETURN(PartitionPlan plan, MakePartitionPlan(spec, machines));
  StepPrediction pred;
  for (size_t l = 0; l < plan.layers.size(); ++l) {
    const MpLayerPlan& lp = plan.layers[l];
    const int64_t total = lp.rows ? lp.out.h : lp.out.c;
    // LCN computes its whole window; the other layers exactly their block.
    double share = 0;
    for (int p = 0; p < machines; ++p) {
      const int64_t rows = spec.layers[l].kind == MpLayerKind::kLcn ? lp.needed[p].size() : lp.owned[p].size();
      share = std::max(share, static_cast<double>(rows) / total);
    }
    pred.compute_seconds += layer_seconds[l] * share;
    if (l == 0) continue;
    const double per = lp.input_rows ? lp.in.c * lp.in.w : 1.0;
    double worst = 0;
    for (int p = 0; p < machines; ++p) {
      double bytes = 0, messages = 0;
      for (int q = 0; q < machines; ++q) {
        const int64_t n = plan.Send(static_cast<int>(l), q, p).size();
        bytes += n * per * 4.0 * batch;
        messages += n > 0;
      }
      worst = std::max(worst, messages * link.latency_seconds + bytes / link.bytes_per_second);
    }
    pred.communication_seconds += 2 * worst;
  }
  pred.seconds = pred.compute_seconds + pred.communication_seconds;
  return pred;
}

std::vector<double> LayerFlopsPerExample(const MpModelSpec& spec) {
  std::vector<double> out;
  auto plan = MakePartitionPlan(spec, 1);
  if (!plan.ok()) return out;
  for (size_t l = 0; l < spec.layers.size(); ++l) {
    const MpLayerSpec& s = spec.layers[l];
    const MpLayerPlan& lp = plan->layers[l];
    double f = 0;
    switch (s.kind) {
      case MpLayerKind::kLocallyConnected:
      case MpLayerKind::kConv:
        f = 6.0 * lp.out.size() * lp.in.c * s.field * s.field;
        break;
      case MpLayerKind::kL2Pool:
        f = 3.0 * 2.0 * lp.out.size() * s.field * s.field;
        break;
      case MpLayerKind::kLcn:
        f = 3.0 * 4.0 * lp.out.size() * s.field * s.field;
        break;
      case MpLayerKind::kFullyConnected:
        f = 6.0 * lp.in.size() * lp.out.c;
        break;
    }
    out.push_back(f);
  }
  return out;
}

}  // namespace distbelief
