// Downpour and Sandblaster end to end on real MNIST, in one process, over both transports.
#include <gtest/gtest.h>

#include <filesystem>
#include <numeric>

#include "distbelief/train/config.h"
#include "distbelief/train/downpour.h"
#include "distbelief/train/local_trainer.h"
#include "distbelief/optim/lbfgs.h"
#include "distbelief/train/sandblaster.h"
#include "distbelief/train/workload.h"

namespace distbelief {
namespace {

std::string RunDir(const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() / ("distbelief_dist_test_" + name);
  std::filesystem::remove_all(p);
  return p.string();
}

Config MakeConfig(const std::string& text, std::vector<std::string> overrides) {
  auto c = ParseConfig(text, "test", overrides);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

const char* kDownpour =
    "[model]\nhidden = [128]\n[optimizer]\nname = \"adagrad\"\nlearning_rate = 0.05\n"
    "[train]\nepochs = 2\nbatch_size = 32\ntrain_limit = 8000\n"
    "[distributed]\nmode = \"downpour\"\nreplicas = 4\nshards = 3\nwarmstart_steps = 10\n";

class DownpourTest : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Transports, DownpourTest, ::testing::Values("inproc", "grpc"));

TEST_P(DownpourTest, FourReplicasLearnMnist) {
  Config c = MakeConfig(kDownpour, {"distributed.transport=\"" + GetParam() + "\"",
                                    "train.run_dir=\"" + RunDir("dp_" + GetParam()) + "\""});
  auto r = RunDownpour(c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->train.test_accuracy, 0.88);
  EXPECT_EQ(r->replicas_failed, 0);
  EXPECT_EQ(r->examples, 4 * 2 * (2000 / 32) * 32);
  EXPECT_GT(r->max_staleness, 0u);  // asynchronous replicas do compute from stale parameters
  EXPECT_TRUE(std::filesystem::exists(c.train.run_dir + "/checkpoint.safetensors"));
}

// The paper's three threads: fetching in the background while computing still learns, and every
// replica takes each fetched copy (a replica that never took one would stay at its first pull).
TEST_P(DownpourTest, FetchInBackgroundLearnsMnist) {
  Config c = MakeConfig(kDownpour, {"distributed.transport=\"" + GetParam() + "\"", "distributed.fetch_in_background=true",
                                    "train.run_dir=\"" + RunDir("bg_" + GetParam()) + "\""});
  auto r = RunDownpour(c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->train.test_accuracy, 0.88);
  EXPECT_EQ(r->replicas_failed, 0);
  EXPECT_EQ(r->examples, 4 * 2 * (2000 / 32) * 32);
  EXPECT_GT(r->max_staleness, 0u);
}

TEST(Downpour, SynchronousModeBoundsStalenessByTheReplicaCount) {
  Config c = MakeConfig(kDownpour, {"distributed.synchronous=true", "distributed.warmstart_steps=0", "train.max_steps=80",
                                    "train.run_dir=\"" + RunDir("sync") + "\""});
  auto r = RunDownpour(c);
  ASSERT_TRUE(r.ok()) << r.status();
  // Within a step the R pushes are applied one after another: staleness 0 .. R-1, never more.
  EXPECT_LE(r->max_staleness, 3u);
}

// fetch_after_push (the default): a fetch waits for the replica's own push, so a lone replica
// never computes from parameters that lack its last gradient; without it, its one push in flight
// may overlap its next fetch, so its gradients are at most one update stale (whether they are
// depends on timing).
TEST(Downpour, ALoneReplicaSeesItsOwnPushes) {
  Config c = MakeConfig(kDownpour, {"distributed.replicas=1", "distributed.warmstart_steps=0", "train.max_steps=150",
                                    "train.run_dir=\"" + RunDir("own") + "\""});
  auto r = RunDownpour(c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->max_staleness, 0u);
  c.distributed.fetch_after_push = false;
  r = RunDownpour(c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LE(r->max_staleness, 1u);
}

TEST(Downpour, BoundedStalenessRuns) {
  Config c = MakeConfig(kDownpour, {"distributed.staleness_bound=2", "train.max_steps=200",
                                    "train.run_dir=\"" + RunDir("ssp") + "\""});
  auto r = RunDownpour(c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->train.test_accuracy, 0.5);
}

TEST(Downpour, ConflictingOptionsAreAClearError) {
  auto c = ParseConfig(kDownpour, "test", {"distributed.synchronous=true"});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("warmstart_steps"), std::string::npos) << c.status();
}

TEST(Downpour, BackgroundFetchWithABoundIsAClearError) {
  auto c = ParseConfig(kDownpour, "test", {"distributed.fetch_in_background=true", "distributed.staleness_bound=2"});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("fetch_in_background"), std::string::npos) << c.status();
}

TEST(Downpour, AnUnknownDataPlaneIsAClearError) {
  auto c = ParseConfig(kDownpour, "test", {"distributed.data_plane=\"udp\""});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("data_plane"), std::string::npos) << c.status();
  EXPECT_TRUE(ParseConfig(kDownpour, "test", {"distributed.data_plane=\"grpc\""}).ok());
}

TEST(Downpour, BadShardAddressesAreAClearError) {
  auto c = ParseConfig(kDownpour, "test", {"distributed.shard_addresses=[\"127.0.0.1:1\"]"});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("transport"), std::string::npos) << c.status();
}

const char* kSandblaster =
    "[model]\nkind = \"autoencoder\"\nhidden = [64]\nactivation = \"sigmoid\"\n"
    "[train]\ntrain_limit = 3000\n"
    "[distributed]\nmode = \"sandblaster\"\nreplicas = 3\nshards = 2\nportions_per_replica = 6\n"
    "lbfgs_iterations = 30\n";

class SandblasterTest : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Transports, SandblasterTest, ::testing::Values("inproc", "grpc"));

TEST_P(SandblasterTest, TrainsTheAutoencoderToTheSingleProcessLoss) {
  Config c = MakeConfig(kSandblaster, {"distributed.transport=\"" + GetParam() + "\"",
                                       "distributed.lbfgs_iterations=40",
                                       "train.run_dir=\"" + RunDir("sb_" + GetParam()) + "\""});
  auto r = RunSandblaster(c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LT(r->run.train.last_train_loss, 0.25 * r->run.train.first_train_loss);

  // The single-process reference: the same L-BFGS (optim/lbfgs.h) on the same full-batch loss,
  // with the parameters and gradient in one process instead of on the shards.
  auto data = Dataset::Load(c.train);
  ASSERT_TRUE(data.ok());
  auto w = Workload::Create(c, *data);
  ASSERT_TRUE(w.ok());
  const int64_t n = (*data)->train.images.dim(0);
  std::vector<int64_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  std::vector<float> pf((*w)->num_params()), gf((*w)->num_params());
  (*w)->GetParams(pf);
  std::vector<double> x(pf.begin(), pf.end());
  auto f = [&](const std::vector<double>& xd, std::vector<double>* g) {
    for (size_t i = 0; i < xd.size(); ++i) pf[i] = static_cast<float>(xd[i]);
    (*w)->SetParams(pf);
    const double loss = (*w)->LossAndGradient(all, gf);
    for (size_t i = 0; i < gf.size(); ++i) (*g)[i] = gf[i];
    return loss;
  };
  LbfgsOptions lo;
  lo.max_iterations = 40;
  lo.history = 10;
  lo.gradient_tolerance = 0.0;
  const LbfgsResult local = LbfgsMinimize(f, &x, lo);
  EXPECT_NEAR(r->run.train.last_train_loss, local.value, 0.03 * local.value)
      << "sandblaster " << r->run.train.last_train_loss << " vs single-process L-BFGS " << local.value;
}

TEST(Sandblaster, BackupTasksKeepAStragglerFromHoldingTheBatch) {
  auto mean = [](const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / v.size(); };
  // Two fast replicas alone...
  Config fast = MakeConfig(kSandblaster, {"distributed.replicas=2", "distributed.lbfgs_iterations=4",
                                          "train.run_dir=\"" + RunDir("sb_fast") + "\""});
  auto a = RunSandblaster(fast);
  ASSERT_TRUE(a.ok()) << a.status();
  // ...and the same two plus a replica that takes 400 ms longer on every portion.
  Config slow = MakeConfig(kSandblaster, {"distributed.replicas=3", "distributed.lbfgs_iterations=4",
                                          "train.run_dir=\"" + RunDir("sb_slow") + "\""});
  SandblasterOptions so;
  so.worker_delay_ms = {0, 0, 400};
  auto b = RunSandblaster(slow, so);
  ASSERT_TRUE(b.ok()) << b.status();
  const double ta = mean(a->batch_seconds), tb = mean(b->batch_seconds);
  EXPECT_GT(b->backup_tasks, 0);
  // Without backup tasks every batch would wait >= 400 ms for the straggler's portion.
  EXPECT_LT(tb, 0.38) << "fast-only batch " << ta << " s, with straggler " << tb << " s";
  EXPECT_LT(tb, 2.0 * ta + 0.05) << "fast-only batch " << ta << " s, with straggler " << tb << " s";
}

}  // namespace
}  // namespace distbelief
