// Model parallelism, the runtime: one partition of a model replica. It holds its share of every
// layer (for a locally connected layer the weights of its own output rows, for a fully connected
// layer the rows of W of its own units, for convolution a copy of the tied kernel), computes its
// block, and exchanges only the boundary slices of the plan with the other partitions through
// the replica's PartitionLinks (the transport's Deliver call, in process or gRPC). Each partition is driven by its own
// thread; Forward and Backward of one step must run on every partition of the replica.
//
// A partition that stops answering makes its peers' waits fail after `timeout` with
// kDeadlineExceeded or kUnavailable, so the whole replica stops cleanly and can be rebuilt.
#pragma once

#include <memory>
#include <vector>

#include "distbelief/mp/links.h"
#include "distbelief/mp/plan.h"
#include "distbelief/nn/layer.h"

namespace distbelief {

// The unpartitioned model of a spec, seeded: the reference the partitions are cut from.
// Fully connected layers read the previous output flattened as (B, C H W).
std::vector<std::unique_ptr<Layer>> BuildMpReference(const MpModelSpec& spec, uint64_t seed);

struct MpStats {
  int64_t floats_sent = 0, messages_sent = 0;
  double compute_seconds = 0, wait_seconds = 0;
  std::vector<double> layer_seconds;  // forward + backward compute of each layer
};

class Partition {
 public:
  // Partition `index` of `plan`, its weights copied from `reference` (BuildMpReference).
  static StatusOr<std::unique_ptr<Partition>> Create(const MpModelSpec& spec, const PartitionPlan& plan, int index,
                                                     const std::vector<Layer*>& reference);
  // The replica's links, through which this partition exchanges boundary slices. REQUIRES:
  // `links` outlives every Forward and Backward.
  void Connect(PartitionLinks* links) { links_ = links; }
  // x_window (B, C, needed rows of layer 0, W): the input rows this partition reads.
  // *out: its block of the last layer's output, (B, C, own rows, W) or (B, own units).
  Status Forward(int64_t step, const Tensor& x_window, Tensor* out);
  // dout: the gradient of its block of the last output. Adds its parameters' gradients and writes
  // d loss / d x_window (the overlaps of different partitions' windows add up to the full dx).
  Status Backward(int64_t step, const Tensor& dout, Tensor* dx_window);
  std::vector<Param*> params();
  // Its layers' parameters, layer by layer (empty for pooling and LCN), to compare with the
  // reference.
  std::vector<std::vector<Param*>> layer_params();
  MpStats stats() const { return stats_; }
  void ResetStats() { stats_ = {}; }
  Millis timeout{10000};

 private:
  Partition(const PartitionPlan& plan, int index) : plan_(plan), p_(index) {}
  Status Send(int64_t step, int layer, bool backward, int to, MpRange slice, const Tensor& src, int64_t src_begin,
              bool src_rows, const MpShape& shape);

  PartitionPlan plan_;
  int p_;
  PartitionLinks* links_ = nullptr;
  std::vector<MpLayerSpec> specs_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<Tensor> windows_, outs_;  // per layer: the input window and the owned output
  std::vector<Tensor> padded_;          // convolution: the window with its zero padding
  Tensor scratch_;                      // LCN: the output over the whole window
  int64_t batch_ = 0;
  MpStats stats_;
};

}  // namespace distbelief
