// Model parallelism, the plan (Dean et al. 2012, section 3 and figure 1): a model of spatial
// layers (locally connected, convolution, L2 pooling, LCN) followed by fully connected layers is
// split over P partitions. Spatial layers are split into blocks of output rows (each partition
// owns a contiguous block of every spatial layer's output rows and needs the input rows its block
// reads: its own plus a halo from its neighbours); fully connected layers are split by output
// units (each partition needs the whole input). The plan is derived from the model and P alone;
// the model is never rewritten by the user.
//
// Every layer's output is viewed as (B, C, H, W); the partitioned axis is H (rows) for spatial
// layers and C (units, with H = W = 1) for fully connected ones. Only boundary-crossing nodes
// travel, each once per destination: partition q sends p the part of its own block of layer
// l - 1 that p's block of layer l reads (the same slice comes back as gradients in backward).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "distbelief/base/status.h"

namespace distbelief {

enum class MpLayerKind { kLocallyConnected, kConv, kL2Pool, kLcn, kFullyConnected };

struct MpLayerSpec {
  MpLayerKind kind = MpLayerKind::kLocallyConnected;
  int64_t maps = 0;    // locally connected / conv: output maps
  int64_t field = 0;   // locally connected / conv: field; L2 pool: window; LCN: window
  int64_t stride = 1;  // locally connected / conv / pool
  int64_t pad = 0;     // conv: zero padding
  int64_t units = 0;   // fully connected: outputs
};

struct MpModelSpec {
  int64_t channels = 1, height = 0, width = 0;  // the input (C, H, W)
  std::vector<MpLayerSpec> layers;              // spatial layers, then fully connected ones
  std::string Describe() const;
};

struct MpShape {
  int64_t c = 0, h = 0, w = 0;
  int64_t size() const { return c * h * w; }
};

struct MpRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end > begin ? end - begin : 0; }
};
MpRange Intersect(MpRange a, MpRange b);

struct MpLayerPlan {
  MpShape in, out;
  bool rows = true;               // output partitioned by rows (spatial) or units (fully connected)
  bool input_rows = true;         // the input's partitioned axis (the previous layer's)
  std::vector<MpRange> owned;     // per partition: its slice of this layer's output
  std::vector<MpRange> needed;    // per partition: the slice of this layer's input it reads
  // For convolution: the virtual input rows [a S - pad, (b - 1) S + F - pad) before clipping.
  std::vector<MpRange> virtual_needed;
};

struct PartitionPlan {
  int partitions = 1;
  std::vector<MpLayerPlan> layers;
  // The part of layer l's input that partition `from` owns and partition `to` reads (l >= 1).
  MpRange Send(int layer, int from, int to) const;
  // Floats per example crossing partitions in one forward pass (the same in backward): the
  // minimum the plan implies, each boundary node counted once per destination.
  int64_t CrossingFloatsPerExample() const;
  // Messages per step (forward or backward) between distinct partitions.
  int64_t MessagesPerPass() const;
  // The most floats per example any one partition receives in a forward pass.
  int64_t MaxReceivedFloatsPerExample() const;
};

// kInvalidArgument when a layer does not fit its input or cannot be split P ways (every
// partition must own at least one row or unit of every layer).
StatusOr<PartitionPlan> MakePartitionPlan(const MpModelSpec& spec, int partitions);

}  // namespace distbelief
