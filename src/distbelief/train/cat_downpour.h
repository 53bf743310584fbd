// The cat network trained with Downpour (Dean et al. 2012, §4.1; Le et al. 2012 trained it this
// way): stage by stage, the stage's encoder and decoder live on the parameter-server shards, which
// apply Adagrad and the decoder-basis norm bound themselves (shard cuts never split a basis);
// config.distributed.replicas replica threads, each drawing its own random crops, fetch every
// n_fetch steps and push every n_push steps. In one process with the in-process transport by
// default; transport = "grpc" puts the same shards behind loopback gRPC.
#pragma once

#include "distbelief/train/cat_trainer.h"
#include "distbelief/train/config.h"

namespace distbelief {

struct CatDownpourStats {
  double mean_staleness = 0.0;
  int64_t replicas_failed = 0;
  double seconds = 0.0;
};

// Same result as TrainCatNet (losses, face-neuron report); `o.steps_per_stage` counts steps of
// all replicas together, so the examples seen match a single-process run.
StatusOr<CatTrainResult> TrainCatNetDownpour(CatNet* net, const CatTrainOptions& o, const Config& config,
                                             CatDownpourStats* stats = nullptr);

}  // namespace distbelief
