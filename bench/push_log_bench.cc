// What the shards' push log (distributed.shard_push_log, ps/push_log.h) costs, side by side in one
// run: (1) one shard's pushes per second (1 Mi floats, Adagrad, a checkpoint every 100 updates in
// every row) without a log, with the log in the page cache, and with it fdatasynced every 100 ms;
// (2) Downpour training throughput on MNIST (MLP 784-512-10, 2 replicas, 2 shards, 3 epochs, a shard
// checkpoint every 100 updates in every row) without and with the log, in process and over gRPC.
// Rows alternate within each repeat (the second core is shared); medians are printed.
// Usage: push_log_bench [repeats]   (PUSH_LOG_BENCH_SHARD_ONLY=1: the shard table only)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "distbelief/base/parallel.h"
#include "distbelief/ps/parameter_shard.h"
#include "distbelief/train/downpour.h"
#include "distbelief/workloads/mnist/mnist.h"

using namespace distbelief;
namespace fs = std::filesystem;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Pushes per second into one fresh shard: over its first checkpoint interval (100 updates, while
// a log grows to its size) and over the next 300 (steady state: the log rewritten in place).
struct Rates {
  double first = 0.0, steady = 0.0;
};
Rates ShardPushes(bool log, int sync_ms) {
  const std::string dir = "/tmp/distbelief_push_log_bench";
  fs::remove_all(dir);
  ShardOptions so;
  so.optimizer.name = Optimizer::kAdagrad;
  so.checkpoint_path = dir + "/shard.safetensors";
  so.checkpoint_every = 100;
  so.push_log = log;
  so.push_log_sync = std::chrono::milliseconds(sync_ms);
  const int64_t n = 1 << 20;
  auto shard = ParameterShard::Create(so, std::vector<float>(n, 0.1f));
  if (!shard.ok()) std::fprintf(stderr, "%s\n", std::string(shard.status().message()).c_str()), std::exit(1);
  std::vector<float> g(n);
  for (int64_t i = 0; i < n; ++i) g[i] = std::sin(static_cast<float>(i));
  PushMeta meta;
  meta.client = 1;
  PushReply reply;
  int k = 0;
  auto pushes = [&](int count) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < count; ++i) {
      meta.sequence = ++k;
      if (!(*shard)->Push(meta, g, &reply).ok()) std::fprintf(stderr, "push failed\n"), std::exit(1);
    }
    return count / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  Rates r;
  r.first = pushes(100);
  r.steady = pushes(300);
  return r;
}

// Training examples per second of a Downpour run (3 epochs: the shards' start, a first checkpoint
// and, with the log, its first allocation, are in the run's time).
double Training(bool log, bool grpc) {
  static std::shared_ptr<const MnistData> data;
  const std::string run = "/tmp/distbelief_push_log_bench_run";
  fs::remove_all(run);
  const std::string text =
      "[model]\nhidden = [512]\n[optimizer]\nname = \"adagrad\"\nlearning_rate = 0.01\n"
      "[train]\nepochs = 3\nbatch_size = 64\nrun_dir = \"" + run + "\"\n"
      "[distributed]\nmode = \"downpour\"\nreplicas = 2\nshards = 2\nwarmstart_steps = 0\n"
      "shard_checkpoint_dir = \"" + run + "/shards\"\nshard_checkpoint_every = 100\n";
  std::vector<std::string> set = {std::string("distributed.shard_push_log=") + (log ? "true" : "false"),
                                  std::string("distributed.transport=") + (grpc ? "\"grpc\"" : "\"inproc\"")};
  auto file = ConfigFile::Parse(text, "bench", set);
  auto e = ParseEngineOptions(&*file);
  auto o = ParseMnistOptions(&*file);
  if (!e.ok() || !o.ok()) std::fprintf(stderr, "bad bench config\n"), std::exit(1);
  if (!data) {
    auto d = MnistData::Load(o->data_dir, o->train_limit);
    if (!d.ok()) std::fprintf(stderr, "%s\n", std::string(d.status().message()).c_str()), std::exit(1);
    data = *d;
  }
  auto job = MnistJob(*o, data, *e);
  if (!job.ok()) std::fprintf(stderr, "%s\n", std::string(job.status().message()).c_str()), std::exit(1);
  job->show_progress = false;
  auto r = RunDownpour(*e, *job, nullptr);
  if (!r.ok()) std::fprintf(stderr, "%s\n", std::string(r.status().message()).c_str()), std::exit(1);
  return static_cast<double>(r->examples) / r->seconds;
}

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 3;
  if (repeats < 1) return std::fprintf(stderr, "usage: push_log_bench [repeats]\n"), 2;
  struct Row {
    const char* name;
    bool log;
    int sync_ms;
    std::vector<double> first, steady;
  };
  std::vector<Row> rows = {{"no push log", false, 0, {}, {}},
                           {"push log (tmpfs, mapped)", true, 0, {}, {}},
                           {"push log, fdatasync every 100 ms", true, 100, {}, {}}};
  for (int r = 0; r < repeats; ++r)
    for (Row& row : rows) {
      const Rates x = ShardPushes(row.log, row.sync_ms);
      row.first.push_back(x.first);
      row.steady.push_back(x.steady);
    }
  std::printf("one shard, 1 Mi floats (4 MiB pushes), Adagrad, checkpoint every 100 updates, %d cores\n", NumThreads());
  std::printf("%-34s %14s %10s %14s %10s\n", "", "first 100 /s", "vs none", "next 300 /s", "vs none");
  const double f0 = Median(rows[0].first), s0 = Median(rows[0].steady);
  for (const Row& row : rows)
    std::printf("%-34s %14.1f %9.1f%% %14.1f %9.1f%%\n", row.name, Median(row.first), 100.0 * Median(row.first) / f0,
                Median(row.steady), 100.0 * Median(row.steady) / s0);
  if (std::getenv("PUSH_LOG_BENCH_SHARD_ONLY")) return 0;
  std::printf("\nDownpour, MNIST MLP 784-512-10, 2 replicas, 2 shards, 3 epochs, shard checkpoint every 100 updates\n");
  std::printf("%-34s %12s %12s %10s\n", "", "no log ex/s", "log ex/s", "cost");
  for (bool grpc : {false, true}) {
    std::vector<double> without, with;
    for (int r = 0; r < repeats; ++r) {
      without.push_back(Training(false, grpc));
      with.push_back(Training(true, grpc));
    }
    const double a = Median(without), b = Median(with);
    std::printf("%-34s %12.0f %12.0f %9.1f%%\n", grpc ? "over gRPC (tensor socket)" : "in process", a, b,
                100.0 * (1.0 - b / a));
  }
  return 0;
}
