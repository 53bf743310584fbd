// Time to a target test loss on MNIST with Downpour, side by side in one run: 1 replica on one
// core, 1 replica using both cores inside its layers, 2 replicas (one core each), asynchronous and
// synchronous, at each of a few learning rates (how much asynchrony costs depends on the step
// size). Speedups are against the 1-replica, 1-thread run at the same rate, and best against best.
// All in one process over the in-process transport, Adagrad on 2 shards.
// Usage: downpour_bench [target test loss] [repeats] [lr,lr,...] [key=value overrides...]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "distbelief/base/parallel.h"
#include "distbelief/train/downpour.h"
#include "distbelief/workloads/mnist/mnist.h"

using namespace distbelief;

// Ends a run once the loss on the first 2,000 test examples falls below the target; the driver
// runs the check with the replicas parked and leaves its time out of the run's seconds.
class TargetLoss : public TrainObserver {
 public:
  TargetLoss(double target, double every_s) : target_(target), every_s_(every_s) {}
  double check_interval_seconds() const override { return every_s_; }
  bool Check(ReplicaModel* model) override { return static_cast<MnistReplica*>(model)->Evaluate(2000).loss < target_; }

 private:
  double target_, every_s_;
};

struct Run {
  double seconds = 0.0, examples = 0.0, cores_busy = 0.0;
};

// The median run by time: the second core is shared with other tenants, and an asynchronous
// run's path (and so the examples it needs) differs from run to run.
Run Median(std::vector<Run> runs) {
  std::sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.seconds < b.seconds; });
  return runs[runs.size() / 2];
}

// One Downpour run of the MNIST workload from config text, stopped at the target loss.
StatusOr<RunResult> RunToTarget(const std::string& text, const std::vector<std::string>& overrides, double target) {
  static std::shared_ptr<const MnistData> data;
  DB_ASSIGN_OR_RETURN(ConfigFile file, ConfigFile::Parse(text, "bench", overrides));
  DB_ASSIGN_OR_RETURN(const EngineOptions e, ParseEngineOptions(&file));
  DB_ASSIGN_OR_RETURN(const MnistOptions o, ParseMnistOptions(&file));
  DB_RETURN_IF_ERROR(file.CheckAllRead());
  if (!data) {
    DB_ASSIGN_OR_RETURN(data, MnistData::Load(o.data_dir, o.train_limit));
  }
  DB_ASSIGN_OR_RETURN(Job job, MnistJob(o, data, e));
  job.show_progress = false;
  TargetLoss observer(target, 0.05);
  return RunDownpour(e, job, &observer);
}

int main(int argc, char** argv) {
  const double target = argc > 1 ? std::atof(argv[1]) : 0.10;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 3;
  std::vector<double> rates;
  for (absl::string_view rate : absl::StrSplit(argc > 3 ? argv[3] : "0.01,0.02,0.04", ',', absl::SkipEmpty())) {
    double lr = 0.0;
    if (!absl::SimpleAtod(rate, &lr) || lr <= 0) return std::fprintf(stderr, "bad learning rate '%s'\n", std::string(rate).c_str()), 2;
    rates.push_back(lr);
  }
  const std::vector<std::string> extra(argv + std::min(argc, 4), argv + argc);  // key=value overrides
  if (target <= 0 || repeats < 1 || rates.empty())
    return std::fprintf(stderr, "usage: downpour_bench [target loss] [repeats] [lr,lr,...] [key=value...]\n"), 2;
  const int cores = NumThreads();
  // Warmstart (Dean et al. 2012, section 4.1): replica 0 alone for its first 100 steps; it does
  // not change a 1-replica run, and synchronous replicas cannot use it.
  const std::string base =
      "[model]\nhidden = [512]\n[optimizer]\nname = \"adagrad\"\n"
      "[train]\nepochs = 20\nbatch_size = 64\nlr_schedule = \"constant\"\nrun_dir = \"/tmp/distbelief_downpour_bench\"\n"
      "[distributed]\nmode = \"downpour\"\nshards = 2\nwarmstart_steps = 100\n";
  struct Case {
    std::string name;
    std::vector<std::string> overrides;
    int threads = 0;  // 0 = every core, shared between the replicas
  };
  const std::vector<Case> cases = {
      {"1 replica, 1 thread", {"distributed.replicas=1"}, 1},
      {"1 replica, 2 threads", {"distributed.replicas=1"}},
      {"2 replicas, asynchronous", {"distributed.replicas=2"}},
      {"2 replicas, async, bg fetch", {"distributed.replicas=2", "distributed.fetch_in_background=true"}},
      {"2 replicas, synchronous", {"distributed.replicas=2", "distributed.synchronous=true", "distributed.warmstart_steps=0"}},
  };
  std::vector<std::vector<Run>> median(rates.size(), std::vector<Run>(cases.size()));
  for (size_t l = 0; l < rates.size(); ++l) {
    std::vector<std::vector<Run>> runs(cases.size());
    // Cases alternate within each repeat, so a noisy stretch of the shared core hits them alike.
    for (int rep = 0; rep < repeats; ++rep)
      for (size_t k = 0; k < cases.size(); ++k) {
        const Case& c = cases[k];
        SetNumThreads(c.threads > 0 ? c.threads : cores);
        std::vector<std::string> overrides = extra;
        overrides.push_back("optimizer.learning_rate=" + std::to_string(rates[l]));
        overrides.insert(overrides.end(), c.overrides.begin(), c.overrides.end());
        auto r = RunToTarget(base, overrides, target);
        if (!r.ok()) return std::fprintf(stderr, "%s\n", std::string(r.status().message()).c_str()), 1;
        if (!r->stopped_early)
          std::fprintf(stderr, "lr %g, %s: did not reach the target within its epochs\n", rates[l], c.name.c_str());
        runs[k].push_back({r->seconds, static_cast<double>(r->examples), r->cpu_seconds / r->seconds});
      }
    for (size_t k = 0; k < cases.size(); ++k) median[l][k] = Median(runs[k]);
  }
  std::printf("time to test loss < %.3f: MLP 784-512-10, batch 64 per replica, Adagrad on 2 shards, %d cores,\n"
              "median of %d runs per row\n", target, cores, repeats);
  for (size_t l = 0; l < rates.size(); ++l) {
    std::printf("\nlearning rate %g\n%-28s %10s %12s %12s %11s %10s\n", rates[l], "", "seconds", "examples",
                "examples/s", "cores busy", "speedup");
    for (size_t k = 0; k < cases.size(); ++k) {
      const Run& m = median[l][k];
      std::printf("%-28s %10.2f %12.0f %12.0f %11.2f %9.2fx\n", cases[k].name.c_str(), m.seconds, m.examples,
                  m.examples / m.seconds, m.cores_busy, median[l][0].seconds / m.seconds);
    }
  }
  // Each setup at its own best learning rate, against the best single replica.
  std::printf("\neach row at its best learning rate (speedup against 1 replica, 1 thread at its best)\n");
  double best_single = 0.0;
  for (size_t l = 0; l < rates.size(); ++l)
    if (l == 0 || median[l][0].seconds < best_single) best_single = median[l][0].seconds;
  for (size_t k = 0; k < cases.size(); ++k) {
    size_t best = 0;
    for (size_t l = 1; l < rates.size(); ++l)
      if (median[l][k].seconds < median[best][k].seconds) best = l;
    std::printf("%-28s %10.2f s at lr %-6g %9.2fx\n", cases[k].name.c_str(), median[best][k].seconds, rates[best],
                best_single / median[best][k].seconds);
  }
  std::printf("(the test-loss check every 0.05 s on 2,000 examples runs with the replicas parked and is left\n"
              " out of seconds; cores busy = process CPU time outside it / seconds: replicas, background\n"
              " pushes with their shard updates, fetches)\n");
  return 0;
}
