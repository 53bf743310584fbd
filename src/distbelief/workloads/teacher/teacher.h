// The teacher workload: a model-parallel replica (mp/replica.h) learning to reproduce a fixed
// random teacher of its own shape on random inputs (mean squared error). It exists to show, and
// test, that model parallelism composes with data parallelism on the one engine (Dean et al.
// 2012, figure 2): each partition's parameters are one parameter group on its own shards, and a
// replica whose partition fails is rebuilt by the driver (distributed.replica_restarts).
#pragma once

#include <cstdint>

#include "distbelief/mp/plan.h"
#include "distbelief/train/replica_model.h"
#include "distbelief/transport/transport.h"

namespace distbelief {

struct TeacherOptions {
  MpModelSpec spec;
  int partitions = 2;
  int64_t batch = 8;
  int64_t steps = 100;               // of all replicas together
  Millis partition_timeout{5000};
  uint64_t seed = 1;
};

// The job. Every replica's partitions talk over `transport` (not owned; must outlive the run).
// kInvalidArgument for a model with convolution (its tied kernel would be held by every partition).
StatusOr<Job> TeacherJob(const TeacherOptions& o, Transport* transport);

}  // namespace distbelief
