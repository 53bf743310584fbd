#include "distbelief/train/downpour.h"

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <future>
#include <optional>
#include <mutex>
#include <numeric>
#include <thread>

#include <time.h>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"
#include "distbelief/base/random.h"
#include "distbelief/io/metrics.h"
#include "distbelief/ps/parameter_client.h"
#include "distbelief/train/cluster.h"
#include "distbelief/train/workload.h"

namespace distbelief {
namespace {

using Clock = std::chrono::steady_clock;

struct Shared {
  std::atomic<int64_t> examples{0};
  std::atomic<int64_t> replica0_steps{0};
  std::atomic<bool> stop{false};
  std::atomic<int64_t> failed{0};
  // The target-loss check runs off the clock: it raises `pause`, replicas park at the top of
  // their next step (counted in `parked`), and the paused time is left out of the run's seconds.
  std::atomic<bool> pause{false};
  std::atomic<int> parked{0};
  std::mutex mu;
  double loss_sum = 0.0;  // since the last metrics record
  int64_t loss_count = 0;
  double staleness_sum = 0.0;
  int64_t staleness_count = 0;
  uint64_t staleness_max = 0;
};

double ProcessCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Replica r's examples: every R-th of the training set, reshuffled each epoch.
std::vector<int64_t> ReplicaOrder(int64_t n, int r, int replicas, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order;
  for (int64_t i = r; i < n; i += replicas) order.push_back(i);
  Random rng(seed * 7919 + static_cast<uint64_t>(epoch) * 104729 + r);
  for (int64_t i = static_cast<int64_t>(order.size()) - 1; i > 0; --i)
    std::swap(order[i], order[rng.UniformInt(i + 1)]);
  return order;
}

Status RunReplica(const Config& config, int r, std::shared_ptr<const Dataset> data, Cluster* cluster,
                  int64_t steps, int threads, std::barrier<>* sync, Shared* shared) {
  const DistributedOptions& d = config.distributed;
  const TrainOptions& o = config.train;
  SetNumThreads(threads);  // this thread's share of the cores (OpenMP's per-thread setting)
  DB_ASSIGN_OR_RETURN(auto w, Workload::Create(config, data));
  ClientOptions co;
  co.replica = r;
  DB_ASSIGN_OR_RETURN(auto client, ParameterClient::Connect(cluster->transport.get(), cluster->addresses, *cluster->map, co));
  if (r > 0 && d.warmstart_steps > 0)  // warmstart: wait for replica 0's head start
    while (shared->replica0_steps.load() < d.warmstart_steps && !shared->stop.load())
      std::this_thread::sleep_for(Millis(2));

  const int64_t n = w->num_params();
  // Pulls land in the model's tensors and pushes read its gradients (pieces), so the only
  // flat buffers are the accumulator (n_push > 1) and the background fetch's landing place.
  const std::vector<std::span<float>> model_params = w->ParamPieces();
  const std::vector<std::span<const float>> model_grads = w->GradPieces();
  std::vector<float> acc(d.n_push > 1 ? n : 0, 0.0f);
  std::vector<uint64_t> staleness;
  PullResult pulled;
  std::vector<uint64_t> based_on;
  std::optional<PendingOp> pending;
  const std::vector<int64_t> first = ReplicaOrder(data->train.images.dim(0), r, static_cast<int>(d.replicas), o.seed, 0);
  const int64_t per_epoch = std::max<int64_t>(1, static_cast<int64_t>(first.size()) / o.batch_size);
  std::vector<int64_t> order = first;
  auto finish_push = [&]() -> Status {
    if (!pending) return absl::OkStatus();
    Status s = pending->Wait(Millis(120000));
    pending.reset();
    DB_RETURN_IF_ERROR(s);
    std::lock_guard<std::mutex> lock(shared->mu);
    for (uint64_t st : staleness) {
      shared->staleness_sum += st;
      shared->staleness_count++;
      shared->staleness_max = std::max(shared->staleness_max, st);
    }
    return absl::OkStatus();
  };
  // Background fetch (the paper's fetch thread): the next pull runs into its own buffers while
  // the replica computes; at a fetch step the replica takes what arrived and starts the next.
  std::vector<float> params(d.fetch_in_background ? n : 0), next_params(d.fetch_in_background ? n : 0);
  PullResult next_pulled;
  std::optional<std::future<Status>> fetching;
  auto start_fetch = [&] {
    fetching = std::async(std::launch::async, [&] { return client->Pull(next_params, &next_pulled); });
  };
  auto finish_fetch = [&]() -> Status {
    if (!fetching) return absl::OkStatus();
    Status s = fetching->get();
    fetching.reset();
    return s;
  };
  // The steps; whatever way they end, the push and the fetch in flight are waited for before the
  // client they use goes away.
  auto run_steps = [&]() -> Status {
    for (int64_t step = 0; step < steps && !shared->stop.load(); ++step) {
      if (shared->pause.load()) {
        shared->parked++;
        while (shared->pause.load() && !shared->stop.load()) std::this_thread::sleep_for(std::chrono::microseconds(200));
        shared->parked--;
      }
      if (sync) sync->arrive_and_wait();
      if (d.fetch_in_background && step % d.n_fetch == 0) {
        if (fetching) {
          DB_RETURN_IF_ERROR(finish_fetch());
          params.swap(next_params);
          pulled = next_pulled;
          w->SetParams(params);
        } else {
          DB_RETURN_IF_ERROR(client->Pull(model_params, &pulled));  // the first fetch: nothing to compute on yet
        }
        based_on = pulled.versions;
        start_fetch();
      } else if (step % d.n_fetch == 0) {
        // Synchronous: everyone sees every update; fetch_after_push: this replica sees its own.
        if (sync || d.fetch_after_push) DB_RETURN_IF_ERROR(finish_push());
        DB_RETURN_IF_ERROR(client->Pull(model_params, &pulled));
        // Bounded staleness: wait while this replica leads the slowest live one by more than k.
        while (d.staleness_bound > 0 && pulled.min_replica_clock >= 0 &&
               step - pulled.min_replica_clock > d.staleness_bound && !shared->stop.load()) {
          std::this_thread::sleep_for(Millis(1));
          DB_RETURN_IF_ERROR(client->Pull(model_params, &pulled));
        }
        based_on = pulled.versions;
      }
      if (step % per_epoch == 0 && step > 0) order = ReplicaOrder(data->train.images.dim(0), r, static_cast<int>(d.replicas), o.seed, step / per_epoch);
      const int64_t b = (step % per_epoch) * o.batch_size;
      const double loss = w->ComputeGradient(std::span<const int64_t>(order).subspan(b, o.batch_size));
      if (!std::isfinite(loss)) return absl::InternalError("replica " + std::to_string(r) + ": loss is not finite");
      if (d.n_push > 1) {
        int64_t off = 0;
        for (std::span<const float> g : model_grads) {
          float* a = acc.data() + off;
          for (size_t i = 0; i < g.size(); ++i) a[i] += g[i];
          off += static_cast<int64_t>(g.size());
        }
      }
      if ((step + 1) % d.n_push == 0 || step + 1 == steps) {
        DB_RETURN_IF_ERROR(finish_push());  // at most one push in flight
        // PushAsync copies what it sends, so the gradients and the accumulator are free at once.
        if (d.n_push > 1) {
          pending = client->PushAsync(acc, based_on, step + 1, &staleness);
          std::fill(acc.begin(), acc.end(), 0.0f);
        } else {
          pending = client->PushAsync(model_grads, based_on, step + 1, &staleness);
        }
        if (sync) DB_RETURN_IF_ERROR(finish_push());
      }
      shared->examples += o.batch_size;
      if (r == 0) shared->replica0_steps++;
      std::lock_guard<std::mutex> lock(shared->mu);
      shared->loss_sum += loss;
      shared->loss_count++;
    }
    return absl::OkStatus();
  };
  Status status = run_steps();
  Status pushed = finish_push();
  Status fetched = finish_fetch();
  if (status.ok()) status = pushed;
  if (status.ok()) status = fetched;
  DB_RETURN_IF_ERROR(status);
  if (sync) sync->arrive_and_drop();
  return absl::OkStatus();
}

}  // namespace

int64_t DownpourStepsPerReplica(const Config& config, int64_t train_examples) {
  const int64_t replicas = config.distributed.replicas;
  const TrainOptions& o = config.train;
  int64_t steps = o.epochs * std::max<int64_t>(1, train_examples / replicas / o.batch_size);
  if (o.max_steps > 0) steps = std::min(steps, std::max<int64_t>(1, o.max_steps / replicas));
  return steps;
}

Status RunDownpourReplicaProcess(const Config& config, int index, const std::vector<std::string>& shard_addresses) {
  if (index < 0 || index >= config.distributed.replicas)
    return absl::InvalidArgumentError("replica index " + std::to_string(index) + " outside [0, " +
                                      std::to_string(config.distributed.replicas) + ")");
  Config c = config;
  c.distributed.transport = "grpc";
  c.distributed.shard_addresses = shard_addresses;
  c.distributed.shards = static_cast<int64_t>(shard_addresses.size());
  if (c.train.threads > 0) SetNumThreads(static_cast<int>(c.train.threads));
  DB_ASSIGN_OR_RETURN(auto data, Dataset::Load(c.train));
  DB_ASSIGN_OR_RETURN(auto probe, Workload::Create(c, data));
  std::vector<float> initial(probe->num_params());
  DB_ASSIGN_OR_RETURN(auto cluster, StartCluster(c, initial));  // connects; serves nothing
  const int64_t steps = DownpourStepsPerReplica(c, data->train.images.dim(0));
  Shared shared;
  // Another process runs replica 0, so a warmstart wait here would never end: the launcher
  // starts the other replicas late instead.
  c.distributed.warmstart_steps = 0;
  std::atomic<bool> done{false};
  std::thread watch([&] {
    Progress progress(steps * c.train.batch_size, "examples");
    while (!done.load()) {
      std::this_thread::sleep_for(Millis(200));
      double loss = 0.0;
      {
        std::lock_guard<std::mutex> lock(shared.mu);
        if (shared.loss_count) loss = shared.loss_sum / shared.loss_count;
        shared.loss_sum = 0.0;
        shared.loss_count = 0;
      }
      char status[64];
      std::snprintf(status, sizeof(status), "replica %d loss %.4f", index, loss);
      progress.Update(shared.examples.load(), status);
    }
  });
  Status s = RunReplica(c, index, data, cluster.get(), steps, NumThreads(), nullptr, &shared);
  done = true;
  watch.join();
  return s;
}

StatusOr<EvalResult> EvaluateShards(const Config& config, const std::vector<std::string>& shard_addresses) {
  Config c = config;
  c.distributed.transport = "grpc";
  c.distributed.shard_addresses = shard_addresses;
  c.distributed.shards = static_cast<int64_t>(shard_addresses.size());
  DB_ASSIGN_OR_RETURN(auto data, Dataset::Load(c.train));
  DB_ASSIGN_OR_RETURN(auto w, Workload::Create(c, data));
  std::vector<float> params(w->num_params());
  DB_ASSIGN_OR_RETURN(auto cluster, StartCluster(c, params));
  DB_ASSIGN_OR_RETURN(auto client, ParameterClient::Connect(cluster->transport.get(), cluster->addresses, *cluster->map, ClientOptions{}));
  PullResult pr;
  DB_RETURN_IF_ERROR(client->Pull(params, &pr));
  w->SetParams(params);
  const EvalResult e = w->Evaluate();
  DB_RETURN_IF_ERROR(w->SaveCheckpoint(c.train.run_dir + "/checkpoint.safetensors", c.text, 0));
  return e;
}

StatusOr<DistributedResult> RunDownpour(const Config& config, double stop_below, double eval_every_s) {
  const DistributedOptions& d = config.distributed;
  const TrainOptions& o = config.train;
  DB_ASSIGN_OR_RETURN(DistributedSetup setup, SetUpDistributed(config));
  auto& data = setup.data;
  const std::vector<float>& initial = setup.initial;
  auto& cluster = setup.cluster;
  MetricsWriter metrics;
  DB_RETURN_IF_ERROR(metrics.Open(o.run_dir + "/metrics.jsonl"));

  const int replicas = static_cast<int>(d.replicas);
  const int64_t steps = DownpourStepsPerReplica(config, data->train.images.dim(0));
  const int cores = o.threads > 0 ? static_cast<int>(o.threads) : NumThreads();
  const int threads = std::max(1, cores / replicas);
  LOG_INFO << "downpour: " << replicas << " replicas x " << steps << " steps of batch " << o.batch_size
           << ", " << cluster->addresses.size() << " shards over " << d.transport << ", n_fetch "
           << d.n_fetch << ", n_push " << d.n_push << (d.synchronous ? ", synchronous" : "");

  Shared shared;
  std::unique_ptr<std::barrier<>> sync;
  if (d.synchronous) sync = std::make_unique<std::barrier<>>(replicas);
  std::vector<Status> results(replicas);
  std::vector<std::thread> threads_v;
  const auto start = Clock::now();
  const double cpu_start = ProcessCpuSeconds();
  double check_cpu = 0.0;  // spent in target-loss checks, left out of result.cpu_seconds
  for (int r = 0; r < replicas; ++r)
    threads_v.emplace_back([&, r] {
      results[r] = RunReplica(config, r, data, cluster.get(), steps, threads, sync.get(), &shared);
      if (!results[r].ok()) {
        LOG_WARN << "replica " << r << " stopped: " << results[r];
        shared.failed++;
        if (sync) sync->arrive_and_drop();
      }
    });

  // Watch: progress, metrics and (for benchmarks) early stopping on a target test loss.
  Progress progress(steps * replicas * o.batch_size, "examples");
  ClientOptions watch_options;
  DB_ASSIGN_OR_RETURN(auto watcher, ParameterClient::Connect(cluster->transport.get(), cluster->addresses, *cluster->map, watch_options));
  DB_ASSIGN_OR_RETURN(auto eval_model, Workload::Create(config, data));
  std::vector<float> params(initial.size());
  auto last_record = Clock::now(), last_eval = Clock::now();
  Clock::duration paused{0};  // spent in target-loss checks, left out of result.seconds
  DistributedResult result;
  bool first = true;
  std::atomic<int> finished{0};
  std::vector<std::thread> joiners;
  for (auto& t : threads_v) joiners.emplace_back([&t, &finished] { t.join(); finished++; });
  while (finished.load() < replicas) {
    std::this_thread::sleep_for(Millis(50));
    const auto now = Clock::now();
    double mean_loss = 0.0;
    {
      std::lock_guard<std::mutex> lock(shared.mu);
      if (shared.loss_count) mean_loss = shared.loss_sum / shared.loss_count;
    }
    char status[96];
    std::snprintf(status, sizeof(status), "loss %.4f", mean_loss);
    progress.Update(shared.examples.load(), status);
    if (std::chrono::duration<double>(now - last_record).count() >= 1.0) {
      std::lock_guard<std::mutex> lock(shared.mu);
      if (shared.loss_count) {
        const double mean = shared.loss_sum / shared.loss_count;
        if (first) result.train.first_train_loss = mean;
        first = false;
        result.train.last_train_loss = mean;
        metrics.Write({{"examples", shared.examples.load()},
                       {"seconds", std::chrono::duration<double>(now - start).count()},
                       {"train_loss", mean},
                       {"mean_staleness", shared.staleness_count ? shared.staleness_sum / shared.staleness_count : 0.0},
                       {"max_staleness", shared.staleness_max}});
        shared.loss_sum = 0.0;
        shared.loss_count = 0;
      }
      last_record = now;
    }
    if (stop_below > 0 && std::chrono::duration<double>(now - last_eval).count() >= eval_every_s) {
      // Off the clock: park the replicas (a replica blocked elsewhere, e.g. in the synchronous
      // barrier behind a parked one, is not computing either; hence the bounded wait).
      const auto paused_at = Clock::now();
      const double cpu_at = ProcessCpuSeconds();
      shared.pause = true;
      while (shared.parked.load() < replicas - finished.load() && Clock::now() - paused_at < Millis(50))
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      PullResult pr;
      if (watcher->Pull(params, &pr).ok()) {
        eval_model->SetParams(params);
        // 2,000 held-out examples: enough to see the target.
        if (eval_model->Evaluate(2000).loss < stop_below) shared.stop = true;
      }
      shared.pause = false;
      last_eval = Clock::now();
      paused += last_eval - paused_at;
      check_cpu += ProcessCpuSeconds() - cpu_at;
    }
  }
  for (auto& j : joiners) j.join();
  progress.Finish();
  result.seconds = std::chrono::duration<double>(Clock::now() - start - paused).count();
  result.cpu_seconds = ProcessCpuSeconds() - cpu_start - check_cpu;
  result.examples = shared.examples.load();
  result.replicas_failed = shared.failed.load();
  if (result.replicas_failed == replicas) return results[0];
  result.mean_staleness = shared.staleness_count ? shared.staleness_sum / shared.staleness_count : 0.0;
  result.max_staleness = shared.staleness_max;
  PullResult pr;
  DB_RETURN_IF_ERROR(watcher->Pull(params, &pr));
  eval_model->SetParams(params);
  const EvalResult e = eval_model->Evaluate();
  result.train.test_loss = e.loss;
  result.train.test_accuracy = e.accuracy;
  result.train.steps = steps;
  metrics.Write({{"examples", result.examples}, {"test_loss", e.loss}, {"test_accuracy", e.accuracy},
                 {"seconds", result.seconds}, {"mean_staleness", result.mean_staleness},
                 {"max_staleness", result.max_staleness}, {"replicas_failed", result.replicas_failed}});
  DB_RETURN_IF_ERROR(eval_model->SaveCheckpoint(o.run_dir + "/checkpoint.safetensors", config.text, steps));
  return result;
}

}  // namespace distbelief
