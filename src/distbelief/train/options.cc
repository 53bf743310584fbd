#include "distbelief/train/options.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace distbelief {
namespace {

Status ParseTrain(Section& t, TrainOptions* o) {
  DB_RETURN_IF_ERROR(t.Uint("seed", &o->seed));
  DB_RETURN_IF_ERROR(t.Int("threads", &o->threads, 0, 1024));
  DB_RETURN_IF_ERROR(t.Bool("deterministic", &o->deterministic));
  DB_RETURN_IF_ERROR(t.Enum("lr_schedule", &o->schedule.kind,
                            {{"constant", Schedule::kConstant}, {"cosine", Schedule::kCosine}}));
  DB_RETURN_IF_ERROR(t.Int("warmup_steps", &o->schedule.warmup_steps, 0, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(t.String("run_dir", &o->run_dir));
  DB_RETURN_IF_ERROR(t.Int("checkpoint_every", &o->checkpoint_every, 0, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(t.Int("log_every", &o->log_every, 1, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(t.Int("max_steps", &o->max_steps, 0, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(t.Bool("tensorboard", &o->tensorboard));
  if (o->run_dir.empty()) return t.Error("run_dir", "must not be empty");
  return absl::OkStatus();
}

Status ParseOptimizer(Section& o, OptimizerOptions* opt) {
  DB_RETURN_IF_ERROR(o.Enum("name", &opt->name,
                            {{"sgd", Optimizer::kSgd}, {"adagrad", Optimizer::kAdagrad}, {"adam", Optimizer::kAdam}}));
  DB_RETURN_IF_ERROR(o.Float("learning_rate", &opt->learning_rate, 1e-9, 100.0));
  DB_RETURN_IF_ERROR(o.Float("momentum", &opt->momentum, 0.0, 0.9999));
  DB_RETURN_IF_ERROR(o.Float("weight_decay", &opt->weight_decay, 0.0, 1.0));
  DB_RETURN_IF_ERROR(o.Float("beta1", &opt->beta1, 0.0, 0.9999));
  DB_RETURN_IF_ERROR(o.Float("beta2", &opt->beta2, 0.0, 0.999999));
  DB_RETURN_IF_ERROR(o.Float("epsilon", &opt->epsilon, 0.0, 1.0));
  DB_RETURN_IF_ERROR(o.Float("clip_norm", &opt->clip_norm, 0.0, 1e9));
  return absl::OkStatus();
}

Status ParseTransport(Section& d, TransportOptions* t) {
  DB_RETURN_IF_ERROR(d.Enum("transport", &t->kind, {{"inproc", TransportKind::kInproc}, {"grpc", TransportKind::kGrpc}}));
  DB_RETURN_IF_ERROR(d.Enum("data_plane", &t->data_plane, {{"socket", DataPlane::kSocket}, {"grpc", DataPlane::kGrpc}}));
  std::string secret_file;
  DB_RETURN_IF_ERROR(d.String("secret_file", &secret_file));
  if (!secret_file.empty()) {
    StatusOr<std::string> s = ReadSecretFile(secret_file);
    if (!s.ok()) return d.Error("secret_file", std::string(s.status().message()));
    t->secret = *s;
  } else if (const char* env = std::getenv("DISTBELIEF_SECRET")) {
    t->secret = env;
  }
  DB_RETURN_IF_ERROR(d.String("tls_cert_file", &t->tls_cert_file));
  DB_RETURN_IF_ERROR(d.String("tls_key_file", &t->tls_key_file));
  DB_RETURN_IF_ERROR(d.String("tls_root_file", &t->tls_root_file));
  DB_RETURN_IF_ERROR(d.String("tls_target_name", &t->tls_target_name));
  if (t->tls_cert_file.empty() != t->tls_key_file.empty())
    return d.Error("tls_cert_file", "and distributed.tls_key_file go together");
  return absl::OkStatus();
}

Status ParseDistributed(Section& d, DistributedOptions* o) {
  o->mode = Mode::kDownpour;
  DB_RETURN_IF_ERROR(d.Enum("mode", &o->mode, {{"downpour", Mode::kDownpour}, {"sandblaster", Mode::kSandblaster}}));
  int replicas = 4;
  DB_RETURN_IF_ERROR(d.Int("replicas", &replicas, 1, 4096));
  o->downpour.replicas = o->sandblaster.replicas = replicas;
  DownpourOptions& dp = o->downpour;
  DB_RETURN_IF_ERROR(d.Int("n_fetch", &dp.n_fetch, 1, 1 << 20));
  DB_RETURN_IF_ERROR(d.Int("n_push", &dp.n_push, 1, 1 << 20));
  DB_RETURN_IF_ERROR(d.Int("warmstart_steps", &dp.warmstart_steps, 0, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(d.Int("staleness_bound", &dp.staleness_bound, 0, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(d.Bool("synchronous", &dp.synchronous));
  DB_RETURN_IF_ERROR(d.Bool("fetch_in_background", &dp.fetch_in_background));
  DB_RETURN_IF_ERROR(d.Bool("fetch_after_push", &dp.fetch_after_push));
  DB_RETURN_IF_ERROR(d.Int("replica_restarts", &dp.replica_restarts, 0, 1 << 20));
  SandblasterOptions& sb = o->sandblaster;
  DB_RETURN_IF_ERROR(d.Int("portions_per_replica", &sb.portions_per_replica, 1, 1 << 20));
  DB_RETURN_IF_ERROR(d.Int("lbfgs_iterations", &sb.lbfgs.max_iterations, 1, 1 << 20));
  DB_RETURN_IF_ERROR(d.Int("lbfgs_history", &sb.lbfgs.history, 1, 100));
  DB_RETURN_IF_ERROR(d.StringList("worker_addresses", &sb.worker_addresses));
  ClusterOptions& c = o->cluster;
  DB_RETURN_IF_ERROR(d.Int("shards", &c.shards, 1, 4096));
  DB_RETURN_IF_ERROR(d.StringList("shard_addresses", &c.shard_addresses));
  DB_RETURN_IF_ERROR(d.String("shard_checkpoint_dir", &c.checkpoint_dir));
  DB_RETURN_IF_ERROR(d.Int("shard_checkpoint_every", &c.checkpoint_every, 0, int64_t{1} << 40));
  float checkpoint_seconds = 0.0f;
  DB_RETURN_IF_ERROR(d.Float("shard_checkpoint_seconds", &checkpoint_seconds, 0.0, 86400.0));
  c.checkpoint_interval = std::chrono::milliseconds(static_cast<int64_t>(checkpoint_seconds * 1000.0));
  DB_RETURN_IF_ERROR(d.Bool("shard_push_log", &c.push_log));
  float sync_seconds = 0.0f;
  DB_RETURN_IF_ERROR(d.Float("shard_push_log_sync_seconds", &sync_seconds, 0.0, 3600.0));
  c.push_log_sync = std::chrono::milliseconds(static_cast<int64_t>(sync_seconds * 1000.0));
  if (d.Has("shard_push_log_sync_seconds") && !c.push_log)
    return d.Error("shard_push_log_sync_seconds", "needs distributed.shard_push_log = true");
  DB_RETURN_IF_ERROR(d.String("ledger_dir", &c.ledger_dir));
  c.client.ledger_dir = c.ledger_dir;
  DB_RETURN_IF_ERROR(ParseTransport(d, &c.transport));

  // Combinations that cannot work, named here rather than discovered mid-run.
  if (dp.fetch_in_background && (dp.synchronous || dp.staleness_bound > 0))
    return d.Error("fetch_in_background", "cannot be used with distributed.synchronous or distributed.staleness_bound "
                                          "(both need the parameters of this very step)");
  if (dp.synchronous && dp.warmstart_steps > 0)
    return d.Error("warmstart_steps", "cannot be used with distributed.synchronous = true (the other replicas would "
                                      "wait for a replica that waits for them)");
  const bool grpc = c.transport.kind == TransportKind::kGrpc;
  if (!c.shard_addresses.empty()) {
    if (!grpc) return d.Error("shard_addresses", "needs distributed.transport = \"grpc\"");
    c.shards = static_cast<int>(c.shard_addresses.size());
  }
  if (!sb.worker_addresses.empty()) {
    if (!grpc || o->mode != Mode::kSandblaster)
      return d.Error("worker_addresses", "needs mode = \"sandblaster\" and transport = \"grpc\"");
    sb.replicas = static_cast<int>(sb.worker_addresses.size());
  }
  if (o->mode == Mode::kSandblaster) {
    // Downpour's keys mean nothing to Sandblaster: a config that sets them is refused.
    for (const char* key : {"n_fetch", "n_push", "warmstart_steps", "staleness_bound", "synchronous",
                            "fetch_in_background", "fetch_after_push", "replica_restarts"})
      if (d.Has(key)) return d.Error(key, "is a Downpour option; mode = \"sandblaster\" does not use it");
  } else {
    for (const char* key : {"portions_per_replica", "lbfgs_iterations", "lbfgs_history", "worker_addresses"})
      if (d.Has(key)) return d.Error(key, "is a Sandblaster option; mode = \"downpour\" does not use it");
  }
  return absl::OkStatus();
}

}  // namespace

StatusOr<std::string> ReadSecretFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return absl::NotFoundError("secret file " + path + " is not a readable file");
  if (std::filesystem::file_size(path, ec) > 4096) return absl::InvalidArgumentError("secret file " + path + " is over 4 KiB");
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read secret file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  if (s.empty()) return absl::InvalidArgumentError("secret file " + path + " is empty");
  return s;
}

StatusOr<EngineOptions> ParseEngineOptions(ConfigFile* file) {
  EngineOptions e;
  DB_RETURN_IF_ERROR(ParseTrain(file->section("train"), &e.train));
  DB_RETURN_IF_ERROR(ParseOptimizer(file->section("optimizer"), &e.optimizer));
  Section& d = file->section("distributed");
  if (d.present()) DB_RETURN_IF_ERROR(ParseDistributed(d, &e.distributed));
  e.train.config_text = file->text();
  return e;
}

}  // namespace distbelief
