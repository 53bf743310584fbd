#include "distbelief/mp/plan.h"

#include <algorithm>

namespace distbelief {

MpRange Intersect(MpRange a, MpRange b) { return {std::max(a.begin, b.begin), std::min(a.end, b.end)}; }

std::string MpModelSpec::Describe() const {
  std::string s = std::to_string(channels) + "x" + std::to_string(height) + "x" + std::to_string(width);
  for (const auto& l : layers) {
    switch (l.kind) {
      case MpLayerKind::kLocallyConnected: s += " -> lc k" + std::to_string(l.maps) + " f" + std::to_string(l.field) + " s" + std::to_string(l.stride); break;
      case MpLayerKind::kConv: s += " -> conv k" + std::to_string(l.maps) + " f" + std::to_string(l.field) + " s" + std::to_string(l.stride) + " p" + std::to_string(l.pad); break;
      case MpLayerKind::kL2Pool: s += " -> l2pool " + std::to_string(l.field) + " s" + std::to_string(l.stride); break;
      case MpLayerKind::kLcn: s += " -> lcn " + std::to_string(l.field); break;
      case MpLayerKind::kFullyConnected: s += " -> fc " + std::to_string(l.units); break;
    }
  }
  return s;
}

MpRange PartitionPlan::Send(int layer, int from, int to) const {
  if (layer == 0 || from == to) return {};
  return Intersect(layers[layer - 1].owned[from], layers[layer].needed[to]);
}

int64_t PartitionPlan::CrossingFloatsPerExample() const {
  int64_t total = 0;
  for (size_t l = 1; l < layers.size(); ++l) {
    const MpShape& in = layers[l].in;
    const int64_t per = layers[l].input_rows ? in.c * in.w : 1;  // floats per row or per unit
    for (int q = 0; q < partitions; ++q)
      for (int p = 0; p < partitions; ++p) total += Send(static_cast<int>(l), q, p).size() * per;
  }
  return total;
}

int64_t PartitionPlan::MessagesPerPass() const {
  int64_t n = 0;
  for (size_t l = 1; l < layers.size(); ++l)
    for (int q = 0; q < partitions; ++q)
      for (int p = 0; p < partitions; ++p) n += Send(static_cast<int>(l), q, p).size() > 0;
  return n;
}

int64_t PartitionPlan::MaxReceivedFloatsPerExample() const {
  int64_t best = 0;
  for (int p = 0; p < partitions; ++p) {
    int64_t total = 0;
    for (size_t l = 1; l < layers.size(); ++l) {
      const MpShape& in = layers[l].in;
      const int64_t per = layers[l].input_rows ? in.c * in.w : 1;
      for (int q = 0; q < partitions; ++q) total += Send(static_cast<int>(l), q, p).size() * per;
    }
    best = std::max(best, total);
  }
  return best;
}

StatusOr<PartitionPlan> MakePartitionPlan(const MpModelSpec& spec, int partitions) {
  if (partitions < 1) return absl::InvalidArgumentError("partitions must be at least 1");
  if (spec.layers.empty()) return absl::InvalidArgumentError("the model has no layers");
  PartitionPlan plan;
  plan.partitions = partitions;
  MpShape in{spec.channels, spec.height, spec.width};
  bool in_rows = true, seen_fc = false;
  const int P = partitions;
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const MpLayerSpec& l = spec.layers[i];
    const std::string where = "layer " + std::to_string(i + 1) + ": ";
    MpLayerPlan lp;
    lp.in = in;
    lp.input_rows = in_rows;
    const bool fc = l.kind == MpLayerKind::kFullyConnected;
    if (!fc && seen_fc) return absl::InvalidArgumentError(where + "spatial layers must come before fully connected ones");
    seen_fc |= fc;
    int64_t F = l.field, S = l.stride, pad = 0;
    switch (l.kind) {
      case MpLayerKind::kLocallyConnected:
      case MpLayerKind::kConv:
        if (l.maps < 1 || F < 1 || S < 1) return absl::InvalidArgumentError(where + "maps, field and stride must be positive");
        pad = l.kind == MpLayerKind::kConv ? l.pad : 0;
        if (F > in.h + 2 * pad || F > in.w + 2 * pad)
          return absl::InvalidArgumentError(where + "field " + std::to_string(F) + " does not fit its " +
                                            std::to_string(in.h) + "x" + std::to_string(in.w) + " input");
        lp.out = {l.maps, (in.h + 2 * pad - F) / S + 1, (in.w + 2 * pad - F) / S + 1};
        break;
      case MpLayerKind::kL2Pool:
        if (F < 1 || S < 1 || F > in.h || F > in.w) return absl::InvalidArgumentError(where + "pool window does not fit its input");
        lp.out = {in.c, (in.h - F) / S + 1, (in.w - F) / S + 1};
        break;
      case MpLayerKind::kLcn:
        if (F < 1 || F % 2 == 0) return absl::InvalidArgumentError(where + "the LCN window must be odd");
        lp.out = in;
        break;
      case MpLayerKind::kFullyConnected:
        if (l.units < 1) return absl::InvalidArgumentError(where + "units must be positive");
        lp.out = {l.units, 1, 1};
        break;
    }
    lp.rows = !fc;
    const int64_t len = fc ? lp.out.c : lp.out.h;
    if (len < P)
      return absl::InvalidArgumentError(where + "has " + std::to_string(len) + (fc ? " units" : " output rows") +
                                        "; it cannot be split " + std::to_string(P) + " ways");
    const int64_t in_len = in_rows ? in.h : in.c;
    for (int p = 0; p < P; ++p) {
      const MpRange own{len * p / P, len * (p + 1) / P};
      lp.owned.push_back(own);
      MpRange need, virt;
      switch (l.kind) {
        case MpLayerKind::kLocallyConnected:
        case MpLayerKind::kConv:
        case MpLayerKind::kL2Pool:
          virt = {own.begin * S - pad, (own.end - 1) * S + F - pad};
          need = Intersect(virt, {0, in.h});
          break;
        case MpLayerKind::kLcn: {
          const int64_t r = 2 * (F / 2);  // two smoothing passes: the mean, then the variance
          need = virt = Intersect({own.begin - r, own.end + r}, {0, in.h});
          break;
        }
        case MpLayerKind::kFullyConnected:
          need = virt = {0, in_len};
          break;
      }
      lp.needed.push_back(need);
      lp.virtual_needed.push_back(virt);
    }
    plan.layers.push_back(lp);
    in = lp.out;
    in_rows = !fc;
  }
  return plan;
}

}  // namespace distbelief
