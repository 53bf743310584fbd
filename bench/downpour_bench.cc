// Time to a target test loss on MNIST with Downpour, side by side in one run: 1 replica on one
// core, 1 replica using both cores inside its layers, 2 replicas (one core each), asynchronous and
// synchronous. Speedups are against the 1-replica, 1-thread run. All in one process over the in-process transport,
// Adagrad on 2 shards. Usage: downpour_bench [target test loss] [repeats]
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "distbelief/base/parallel.h"
#include "distbelief/train/config.h"
#include "distbelief/train/downpour.h"

using namespace distbelief;

// CPU time of the whole process (every thread: replicas, pushes, shards, the evaluator).
double CpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char** argv) {
  const double target = argc > 1 ? std::atof(argv[1]) : 0.2;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 2;
  const int cores = NumThreads();
  const std::string base =
      "[model]\nhidden = [512]\n[optimizer]\nname = \"adagrad\"\nlearning_rate = 0.02\n"
      "[train]\nepochs = 20\nbatch_size = 64\nrun_dir = \"/tmp/distbelief_downpour_bench\"\n"
      "[distributed]\nmode = \"downpour\"\nshards = 2\n";
  struct Case {
    std::string name;
    std::vector<std::string> overrides;
    int threads = 0;  // 0 = every core, shared between the replicas
    double seconds = 0.0, examples = 0.0, cores_used = 0.0;
  };
  std::vector<Case> cases = {
      {"1 replica, 1 thread", {"distributed.replicas=1"}, 1},
      {"1 replica, 2 threads", {"distributed.replicas=1"}},
      {"2 replicas, asynchronous", {"distributed.replicas=2"}},
      {"2 replicas, async, bg fetch", {"distributed.replicas=2", "distributed.fetch_in_background=true"}},
      {"2 replicas, synchronous", {"distributed.replicas=2", "distributed.synchronous=true"}},
  };
  for (int rep = 0; rep < repeats; ++rep)
    for (Case& c : cases) {
      SetNumThreads(c.threads > 0 ? c.threads : cores);
      auto config = ParseConfig(base, "bench", c.overrides);
      if (!config.ok()) return std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str()), 1;
      const double cpu0 = CpuSeconds();
      auto r = RunDownpour(*config, target, 0.25);
      const double cpu = CpuSeconds() - cpu0;
      if (!r.ok()) return std::fprintf(stderr, "%s\n", std::string(r.status().message()).c_str()), 1;
      if (r->examples >= r->train.steps * config->distributed.replicas * config->train.batch_size)
        std::fprintf(stderr, "%s did not reach the target within its epochs\n", c.name.c_str());
      // Keep the best of the repeats: the second core is shared with other tenants.
      if (rep == 0 || r->seconds < c.seconds) {
        c.seconds = r->seconds;
        c.examples = r->examples;
        c.cores_used = (cpu - r->check_cpu_seconds) / r->seconds;
      }
    }
  std::printf("time to test loss < %.3f (MLP 784-512-10, batch 64, Adagrad on 2 shards, %d cores, best of %d)\n",
              target, cores, repeats);
  std::printf("%-28s %10s %12s %12s %11s %10s\n", "", "seconds", "examples", "examples/s", "cores busy", "speedup");
  for (const Case& c : cases)
    std::printf("%-28s %10.2f %12.0f %12.0f %11.2f %9.2fx\n", c.name.c_str(), c.seconds, c.examples,
                c.examples / c.seconds, c.cores_used, cases[0].seconds / c.seconds);
  std::printf("(the test-loss check every 0.25 s on 2,000 examples runs with the replicas parked and is left\n"
              " out of seconds; cores busy = process CPU time outside it / seconds: replicas, background\n"
              " pushes with their shard updates, fetches)\n");
  return 0;
}
