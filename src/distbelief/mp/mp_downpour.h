// Model parallelism composed with Downpour (Dean et al. 2012, figure 2): R model replicas, each
// split into P partitions, train asynchronously against the parameter server. The server is
// sharded by partition: the parameters of partition p live on their own `shards_per_partition`
// shards, and partition p of every replica fetches from and pushes to those shards only.
//
// The workload is a teacher-student regression (the student learns to reproduce a fixed random
// teacher of the same shape on random inputs, mean squared error), enough to show that the
// composed system trains; the cat network uses the same partitions through MpReplica.
// A replica whose step fails (a dead partition) is dropped; with restart_failed_replicas it is
// rebuilt from fresh servers and fetches the current parameters, and the run goes on.
#pragma once

#include <functional>

#include "distbelief/mp/replica.h"

namespace distbelief {

struct MpDownpourOptions {
  int partitions = 2, replicas = 2, shards_per_partition = 2;
  int64_t steps = 100;           // per replica
  int64_t batch = 8;
  float learning_rate = 0.05f;   // Adagrad, applied on the shards
  bool grpc = false;             // partitions and shards talk over loopback gRPC
  bool restart_failed_replicas = true;
  Millis partition_timeout{5000};
  uint64_t seed = 1;
  // Called by replica r before its step `step`; tests use it to kill a partition.
  std::function<void(int replica, int64_t step, MpReplica*)> before_step;
};

struct MpDownpourResult {
  double first_loss = 0, last_loss = 0;  // mean over the first and last 10% of steps
  int64_t replica_failures = 0, replica_restarts = 0;
  // Per partition: the versions of its shards at the end (pushes applied).
  std::vector<std::vector<uint64_t>> shard_versions;
};

// kInvalidArgument for a model with convolution (its tied kernel would be held by every partition).
StatusOr<MpDownpourResult> RunModelParallelDownpour(const MpModelSpec& spec, const MpDownpourOptions& o);

}  // namespace distbelief
