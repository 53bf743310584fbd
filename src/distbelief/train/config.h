// The run configuration, read from TOML. Every field has a documented default; an unknown key,
// a wrong type or an out-of-range value is a kInvalidArgument naming the key.
//
//   [model]      kind, hidden, activation, dropout          (models/models.h)
//   [optimizer]  name, learning_rate, momentum, weight_decay, beta1, beta2, epsilon, clip_norm
//   [train]      see TrainOptions
//   [distributed], [cat], [scale]  see their structs below
#pragma once

#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/models/models.h"
#include "distbelief/optim/update_rules.h"

namespace distbelief {

struct TrainOptions {
  std::string data_dir = "data/mnist";  // IDX files of MNIST
  int64_t epochs = 10;
  int64_t batch_size = 128;
  int64_t max_steps = 0;         // stop after this many steps in all; 0 = run all epochs
  int64_t train_limit = 0;       // use only the first N training examples; 0 = all
  uint64_t seed = 1;             // initialization, shuffling, dropout
  int64_t threads = 0;           // 0 = all cores (OMP_NUM_THREADS if set)
  bool deterministic = false;    // same seed and threads -> same bits (fixes threads to 1 if 0)
  std::string lr_schedule = "cosine";  // constant | cosine (to 5% of the rate at the end)
  std::string run_dir = "runs/mnist";  // checkpoint.safetensors and metrics.jsonl go here
  int64_t checkpoint_every = 0;  // steps between checkpoints; 0 = at the end of each epoch
  int64_t log_every = 100;       // steps between metrics records
};

// [distributed]: training over a parameter server (Dean et al. 2012, §4). Absent = one process,
// one replica (LocalTrainer).
struct DistributedOptions {
  bool enabled = false;              // true when the section is present
  std::string mode = "downpour";     // downpour | sandblaster
  int64_t replicas = 4;              // model replicas (threads here, or workers elsewhere)
  int64_t shards = 2;                // parameter-server shards started here
  int64_t n_fetch = 1;               // downpour: steps between parameter fetches
  int64_t n_push = 1;                // downpour: steps between gradient pushes
  int64_t warmstart_steps = 0;       // downpour: replica 0 alone for this many steps first
  int64_t staleness_bound = 0;       // downpour: max clock lead over the slowest replica; 0 = off
  bool synchronous = false;          // downpour: all replicas wait for each other every step
  bool fetch_in_background = false;  // downpour: the next fetch runs while the replica computes
                                     // (the paper's fetch thread); not with synchronous/staleness_bound
  // downpour: a fetch first waits for the replica's own push in flight, so a replica always
  // computes on parameters that hold its last gradient (false: the paper's fully decoupled
  // threads, one more update of staleness).
  bool fetch_after_push = true;
  // grpc: "socket" sends pulls and pushes over each shard's plain TCP data port beside gRPC
  // (same secret; off under TLS), "grpc" keeps every call on gRPC.
  std::string data_plane = "socket";
  std::string transport = "inproc";  // inproc | grpc (shards and replicas in this process)
  std::vector<std::string> shard_addresses;  // external shards (grpc); empty = start them here
  std::vector<std::string> worker_addresses; // sandblaster: external workers (grpc); empty = threads here
  std::string secret_file;           // grpc: file holding the shared secret ("" = env DISTBELIEF_SECRET)
  std::string tls_cert_file;         // grpc: server certificate (PEM); with tls_key_file, serve TLS
  std::string tls_key_file;          // grpc: server private key (PEM)
  std::string tls_root_file;         // grpc: CA certificate clients trust (PEM); set = connect with TLS
  std::string tls_target_name;       // grpc: name the server certificate is checked against ("" = host)
  std::string shard_checkpoint_dir;  // shards checkpoint here ("" = no shard checkpoints)
  int64_t shard_checkpoint_every = 0;  // updates between shard checkpoints
  int64_t portions_per_replica = 8;  // sandblaster: work portions per replica per batch
  int64_t lbfgs_iterations = 20;     // sandblaster
  int64_t lbfgs_history = 10;        // sandblaster
};

// [cat]: the cat network (Le et al. 2012); see train/cat_trainer.h. Every stage has the same shape.
struct CatOptions {
  bool enabled = false;
  int64_t frame = 32, stages = 3, maps = 8, field = 8, stride = 2, pool = 3, lcn_window = 5;
  float lambda = 0.1f;
  float init_scale = 0.05f;  // encoder's random start, as a fraction of the usual (see CatNetOptions)
  int64_t steps_per_stage = 300, batch = 32, max_side = 256;
  int64_t partitions = 1;  // model partitions per replica, split by maps (needs [distributed])
  float learning_rate = 0.05f;
  std::string train_dir = "data/cat/train", faces_dir = "data/cat/faces", nonfaces_dir = "data/cat/nonfaces";
};

// [scale]: a scaling-law sweep (scale/sweep.h). widths[i] and layers[i] give model size i;
// every size is trained on every amount in tokens, each once through fresh data. With workload =
// "autoencoder" (the MNIST autoencoder), corpus_dir is the MNIST folder, tokens count training
// images and eval_tokens test images.
struct ScaleOptions {
  bool enabled = false;
  std::string workload = "gpt";  // gpt | lstm | autoencoder
  std::string corpus_dir = "data/text", cache_dir = "runs/cache", out_dir = "runs/scale";
  int64_t vocab = 1024, context = 64, head_size = 16, batch = 16, holdout_every = 10;
  std::vector<int64_t> widths = {32, 48, 64, 96, 128}, layers = {2, 2, 2, 2, 2};
  std::vector<int64_t> tokens = {125000, 250000, 500000, 1000000};
  float learning_rate = 3e-3f;  // Adam, linear warmup then cosine to 10%
  int64_t warmup_steps = 50;
  int64_t eval_tokens = 65536;  // held-out tokens the loss is measured on
  int64_t bootstrap = 200;      // resamples for the confidence intervals
  bool check_prediction = true; // fit without the largest run, predict it, then run it
  int64_t threads = 0;          // 0 = all cores
  uint64_t seed = 1;
};

struct Config {
  CatOptions cat;
  ScaleOptions scale;
  ModelOptions model;
  OptimizerOptions optimizer;
  TrainOptions train;
  DistributedOptions distributed;
  std::string text;  // the TOML as given, with overrides applied; stored in checkpoints
};

// Parses TOML text. `overrides` are "section.key=value" strings (value in TOML syntax) applied
// on top, as from the command line's --set.
StatusOr<Config> ParseConfig(const std::string& toml_text, const std::string& origin,
                             const std::vector<std::string>& overrides = {});
// Reads and parses a file; kNotFound if it is missing.
StatusOr<Config> LoadConfig(const std::string& path, const std::vector<std::string>& overrides = {});

}  // namespace distbelief
