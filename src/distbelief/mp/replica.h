// A model-parallel replica: P partitions of one model, each served at its own address on the
// transport (in-process or gRPC) and driven by its own thread. Step runs one forward and backward
// pass of a batch through all of them and assembles the full output and input gradient, so the
// result can be compared with the unpartitioned model.
#pragma once

#include <memory>
#include <vector>

#include "distbelief/mp/partition.h"

namespace distbelief {

class MpReplica {
 public:
  // Cuts `reference` (BuildMpReference(spec, ...)) into `partitions` and serves each at a fresh
  // address of `transport`.
  static StatusOr<std::unique_ptr<MpReplica>> Create(const MpModelSpec& spec, int partitions,
                                                     const std::vector<Layer*>& reference, Transport* transport,
                                                     int replica = 0);
  ~MpReplica();
  // x (B, C, H, W) the batch; dy the gradient of the loss with respect to the full output.
  // Writes the full output and, if dx is not null, d loss / d x. Parameter gradients are added in
  // each partition. The first partition error ends the step (a dead partition makes its peers
  // time out).
  Status Step(const Tensor& x, const Tensor& dy, Tensor* y, Tensor* dx);
  // The same step in two halves, for a loss computed between them: Forward, then Backward with
  // the gradient of that output (same step, same partitions' saved activations).
  Status Forward(const Tensor& x, Tensor* y);
  Status Backward(const Tensor& dy, Tensor* dx);
  Partition& partition(int p) { return *parts_[p]; }
  int partitions() const { return static_cast<int>(parts_.size()); }
  const PartitionPlan& plan() const { return plan_; }
  // Simulates the death of partition p: its server stops and it takes no part in later steps.
  void KillPartition(int p);
  void SetTimeout(Millis t);
  MpStats TotalStats() const;

 private:
  Status Run(const Tensor* x, const Tensor* dy, Tensor* y, Tensor* dx);
  MpModelSpec spec_;
  PartitionPlan plan_;
  std::unique_ptr<PartitionLinks> links_;  // outlives the partitions' use of it
  std::vector<std::unique_ptr<Partition>> parts_;
  std::vector<bool> dead_;
  int64_t step_ = 0;
  int64_t batch_ = 0;
};

}  // namespace distbelief
