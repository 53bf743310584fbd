// Downpour, Sandblaster and the launcher end to end in one process, on synthetic digits, over
// both transports: they learn, each option does what it says (and conflicting ones are refused by
// name), a slow replica is held to the staleness bound, a straggler does not hold Sandblaster's
// batch, and the launcher leaves no child behind on any way out.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <thread>

#include "distbelief/io/checkpoint.h"
#include "distbelief/optim/lbfgs.h"
#include "distbelief/train/downpour.h"
#include "distbelief/train/engine.h"
#include "distbelief/train/launch.h"
#include "distbelief/train/sandblaster.h"
#include "distbelief/transport/fault_injection.h"
#include "distbelief/workloads/mnist/mnist.h"
#include "testing/synthetic.h"

namespace distbelief {
namespace {

namespace fs = std::filesystem;

std::string RunDir(const std::string& name) {
  const auto p = fs::temp_directory_path() / ("distbelief_dist_test_" + name);
  fs::remove_all(p);
  return p.string();
}

std::shared_ptr<const MnistData> Digits() {
  static auto data = testing::SyntheticDigits(8000, 1000);
  return data;
}

// 4 Downpour replicas, 3 shards, Adagrad on the shards, warmstart: the paper's setting, small.
EngineOptions Downpour(const std::string& run, TransportKind kind = TransportKind::kInproc) {
  EngineOptions e;
  e.train.run_dir = RunDir(run);
  e.train.schedule = {};
  e.optimizer.name = Optimizer::kAdagrad;
  e.optimizer.learning_rate = 0.05f;
  e.distributed.mode = Mode::kDownpour;
  e.distributed.downpour.replicas = 4;
  e.distributed.downpour.warmstart_steps = 10;
  e.distributed.cluster.shards = 3;
  e.distributed.cluster.transport.kind = kind;
  return e;
}

MnistOptions Mlp(int64_t epochs = 2) {
  MnistOptions o;
  o.model.hidden = {64};
  o.batch_size = 32;
  o.epochs = epochs;
  return o;
}

StatusOr<RunResult> Train(const EngineOptions& e, const MnistOptions& o = Mlp()) {
  DB_ASSIGN_OR_RETURN(Job job, MnistJob(o, Digits(), e));
  return RunJob(e, job);
}

double Accuracy(const RunResult& r) { return static_cast<MnistReplica*>(r.model.get())->Evaluate().accuracy; }

// The accuracy a run must reach. Under ThreadSanitizer (5-15x slower, unfairly scheduled)
// asynchronous replicas have been seen 15 updates stale, so there it only has to beat chance
// (10%) by far: the sanitizer run checks the threads, the normal run checks the learning.
double Learned(double normal) {
#if defined(__SANITIZE_THREAD__)
  return 0.3;
#else
  return normal;
#endif
}

class DownpourTest : public ::testing::TestWithParam<TransportKind> {};
INSTANTIATE_TEST_SUITE_P(Transports, DownpourTest, ::testing::Values(TransportKind::kInproc, TransportKind::kGrpc),
                         [](const auto& info) { return info.param == TransportKind::kGrpc ? "grpc" : "inproc"; });

TEST_P(DownpourTest, FourReplicasLearn) {
  const EngineOptions e = Downpour("dp", GetParam());
  auto r = Train(e);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(Accuracy(*r), Learned(0.95));
  EXPECT_EQ(r->replicas_failed, 0);
  EXPECT_EQ(r->examples, 4 * 2 * (2000 / 32) * 32);  // each replica: 2 epochs of its quarter
  EXPECT_GT(r->max_staleness, 0u);  // asynchronous replicas do compute from stale parameters
  ASSERT_EQ(r->shard_versions.size(), 1u);
  for (uint64_t v : r->shard_versions[0]) EXPECT_EQ(v, 4u * 2 * (2000 / 32));  // every push applied once
  EXPECT_TRUE(fs::exists(e.train.run_dir + "/checkpoint.safetensors"));
}

// The paper's three threads: fetching in the background while computing still learns, and every
// replica takes each fetched copy (a replica that never took one would stay at its first pull).
// A background fetch misses the replica's own last push, so gradients are about 5 updates stale
// (3-4 without it); at the other tests' Adagrad rate 0.05 that diverged in 15 of 120 runs over
// gRPC with 3 tests at once on 2 cores (accuracy 0.29-0.77), at 0.02 in none of 90: the rate
// asynchrony of this depth calls for.
TEST_P(DownpourTest, FetchInBackgroundLearns) {
  EngineOptions e = Downpour("bg", GetParam());
  e.distributed.downpour.fetch_in_background = true;
  e.optimizer.learning_rate = 0.02f;
  auto r = Train(e);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(Accuracy(*r), Learned(0.95)) << "staleness mean " << r->mean_staleness << ", max " << r->max_staleness;
  EXPECT_EQ(r->replicas_failed, 0);
  EXPECT_GT(r->max_staleness, 0u);
}

// distributed.shard_push_log: each shard keeps a log tied to its checkpoints; without shard
// checkpoints it is refused by name.
TEST(Downpour, ShardPushLogsLiveBesideTheCheckpoints) {
  EngineOptions e = Downpour("push_log");
  e.distributed.cluster.push_log = true;
  auto refused = Train(e);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("shard_push_log needs"), std::string::npos) << refused.status();
  e.distributed.cluster.checkpoint_dir = e.train.run_dir + "/shards";
  e.distributed.cluster.checkpoint_every = 100;
  auto r = Train(e, Mlp(1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(Accuracy(*r), Learned(0.9));
  // Each shard's checkpoints carry the lineage its log is tied to.
  int shards = 0;
  for (const auto& f : fs::directory_iterator(e.distributed.cluster.checkpoint_dir)) {
    if (f.path().extension() != ".safetensors") continue;
    auto c = ReadCheckpoint(f.path().string());
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_FALSE(c->metadata["push_log_lineage"].empty()) << f.path();
    ++shards;
  }
  EXPECT_EQ(shards, 3);
}

TEST(Downpour, NPushSumsStepsAndNFetchSkipsFetches) {
  EngineOptions e = Downpour("npush");
  e.distributed.downpour.n_push = 4;
  e.distributed.downpour.n_fetch = 4;
  auto r = Train(e, Mlp(3));
  ASSERT_TRUE(r.ok()) << r.status();
  // 186 steps a replica: a push every 4th and one at the end, 47 each.
  for (uint64_t v : r->shard_versions[0]) EXPECT_EQ(v, 4u * 47);
  EXPECT_GT(Accuracy(*r), Learned(0.9));
}

TEST(Downpour, SynchronousModeBoundsStalenessByTheReplicaCount) {
  EngineOptions e = Downpour("sync");
  e.distributed.downpour.synchronous = true;
  e.distributed.downpour.warmstart_steps = 0;
  e.train.max_steps = 80;
  auto r = Train(e);
  ASSERT_TRUE(r.ok()) << r.status();
  // Within a step the R pushes are applied one after another: staleness 0 .. R-1, never more.
  EXPECT_LE(r->max_staleness, 3u);
  EXPECT_LE(r->max_clock_lead, 1);
}

// fetch_after_push (the default): a fetch waits for the replica's own push, so a lone replica
// never computes from parameters that lack its last gradient; without it, its one push in flight
// may overlap its next fetch, so its gradients are at most one update stale.
TEST(Downpour, ALoneReplicaSeesItsOwnPushes) {
  EngineOptions e = Downpour("own");
  e.distributed.downpour.replicas = 1;
  e.distributed.downpour.warmstart_steps = 0;
  e.train.max_steps = 150;
  auto r = Train(e);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->max_staleness, 0u);
  e.distributed.downpour.fetch_after_push = false;
  r = Train(e);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LE(r->max_staleness, 1u);
}

// Stale synchronous parallel: replica 0's 10-step warmstart head start makes it lead the others by
// about 10 steps when they join; with staleness_bound = 2 it waits at each fetch until it leads
// the slowest live replica by at most 2.
TEST(Downpour, BoundedStalenessHoldsTheBoundItNames) {
  EngineOptions e = Downpour("ssp");
  e.train.max_steps = 200;
  auto free = Train(e);
  ASSERT_TRUE(free.ok()) << free.status();
  EXPECT_GT(free->max_clock_lead, 2) << "without a bound, the head start shows";
  e.distributed.downpour.staleness_bound = 2;
  auto bounded = Train(e);
  ASSERT_TRUE(bounded.ok()) << bounded.status();
  EXPECT_GE(bounded->max_clock_lead, 0);
  EXPECT_LE(bounded->max_clock_lead, 2);
  EXPECT_GT(Accuracy(*bounded), Learned(0.5));
}

// A replica cut off from every shard past its retry window is dropped; the run goes on with the
// others and says so.
TEST(Downpour, AReplicaCutOffIsDroppedAndTheRunGoesOn) {
  FaultInjectingTransport t(MakeInprocTransport({}));
  EngineOptions e = Downpour("cut");
  e.distributed.cluster.injected_transport = &t;
  e.distributed.cluster.client.retry_for = Millis(300);
  e.distributed.downpour.warmstart_steps = 0;
  Fault cut;  // replica 2's calls fail from its 20th on: a host whose network went away
  cut.replica = 2;
  cut.after = 20;
  t.Inject(cut);
  auto r = Train(e, Mlp(2));  // 2 epochs: 1 left the accuracy within a point of the bar (0.891 once)
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->replicas_failed, 1);
  EXPECT_GT(Accuracy(*r), Learned(0.9));
}

// The configuration is parsed once, with its cross-field checks, and every error names the key.
StatusOr<EngineOptions> Parse(const std::string& text, const std::vector<std::string>& overrides = {}) {
  DB_ASSIGN_OR_RETURN(ConfigFile f, ConfigFile::Parse(text, "t.toml", overrides));
  return ParseEngineOptions(&f);
}

TEST(EngineOptions, ParsesTypedAndRefusesConflictsByName) {
  const std::string base = "[distributed]\nreplicas = 3\nshards = 2\n";
  auto e = Parse(base, {"distributed.transport=\"grpc\"", "distributed.data_plane=\"grpc\"", "train.lr_schedule=\"constant\""});
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->distributed.mode, Mode::kDownpour);
  EXPECT_EQ(e->distributed.downpour.replicas, 3);
  EXPECT_EQ(e->distributed.cluster.transport.kind, TransportKind::kGrpc);
  EXPECT_EQ(e->distributed.cluster.transport.data_plane, DataPlane::kGrpc);
  EXPECT_EQ(e->train.schedule.kind, Schedule::kConstant);
  EXPECT_EQ(Parse("[train]\nseed = 3\n")->distributed.mode, Mode::kLocal);
  struct Case {
    std::vector<std::string> set;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{"distributed.synchronous=true", "distributed.warmstart_steps=5"}, "warmstart_steps"},
      {{"distributed.fetch_in_background=true", "distributed.staleness_bound=2"}, "fetch_in_background"},
      {{"distributed.data_plane=\"udp\""}, "data_plane"},
      {{"distributed.transport=\"carrier-pigeon\""}, "distributed.transport"},
      {{"distributed.shard_addresses=[\"127.0.0.1:1\"]"}, "transport"},
      {{"distributed.worker_addresses=[\"127.0.0.1:1\"]"}, "worker_addresses"},
      {{"distributed.tls_cert_file=\"c.pem\""}, "tls_key_file"},
      {{"distributed.secret_file=\"/nonexistent/secret\""}, "secret_file"},
      {{"distributed.mode=\"sandblaster\"", "distributed.n_push=2"}, "n_push is a Downpour option"},
      {{"distributed.lbfgs_history=4"}, "lbfgs_history is a Sandblaster option"},
      {{"optimizer.name=\"rmsprop\""}, "optimizer.name"},
      {{"train.lr_schedule=\"step\""}, "train.lr_schedule"},
      {{"distributed.shard_push_log_sync_seconds=0.5"}, "needs distributed.shard_push_log"},
  };
  for (const Case& c : cases) {
    auto r = Parse(base, c.set);
    ASSERT_FALSE(r.ok()) << c.expect;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << r.status();
  }
}

EngineOptions Sandblaster(const std::string& run, int replicas, int64_t iterations) {
  EngineOptions e;
  e.train.run_dir = RunDir(run);
  e.distributed.mode = Mode::kSandblaster;
  e.distributed.sandblaster.replicas = replicas;
  e.distributed.sandblaster.portions_per_replica = 6;
  e.distributed.sandblaster.lbfgs.max_iterations = iterations;
  e.distributed.cluster.shards = 2;
  return e;
}

MnistOptions Autoencoder() {
  MnistOptions o;
  o.model.kind = ModelKind::kAutoencoder;
  o.model.hidden = {32};
  o.model.activation = Activation::kSigmoid;
  return o;
}

std::shared_ptr<const MnistData> SmallDigits() {
  static auto data = testing::SyntheticDigits(3000, 500);
  return data;
}

class SandblasterTest : public ::testing::TestWithParam<TransportKind> {};
INSTANTIATE_TEST_SUITE_P(Transports, SandblasterTest, ::testing::Values(TransportKind::kInproc, TransportKind::kGrpc),
                         [](const auto& info) { return info.param == TransportKind::kGrpc ? "grpc" : "inproc"; });

TEST_P(SandblasterTest, TrainsTheAutoencoderToTheSingleProcessLoss) {
  EngineOptions e = Sandblaster("sb", 3, 30);
  e.distributed.cluster.transport.kind = GetParam();
  auto job = MnistJob(Autoencoder(), SmallDigits(), e);
  ASSERT_TRUE(job.ok());
  auto r = RunJob(e, *job);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LT(r->last_loss.total, 0.4 * r->first_loss.total);

  // The single-process reference: the same L-BFGS (optim/lbfgs.h) on the same full-batch loss,
  // with the parameters and gradient in one process instead of on the shards.
  auto model = job->make_replica(0, 1);
  ASSERT_TRUE(model.ok());
  ReplicaModel* m = model->get();
  const std::vector<Param*> params = m->params(0);
  std::vector<float> flat(CountParams(params));
  CopyParamsToFlat(params, flat);
  InMemoryLbfgsSpace space(std::vector<double>(flat.begin(), flat.end()), [&](const std::vector<double>& x, std::vector<double>* g) {
    for (size_t i = 0; i < x.size(); ++i) flat[i] = static_cast<float>(x[i]);
    CopyFlatToParams(flat, params);
    const double loss = *m->ComputeGradientOn(0, m->num_examples());
    size_t at = 0;
    for (Param* p : params)
      for (int64_t i = 0; i < p->grad.size(); ++i) (*g)[at++] = p->grad[i];
    return loss;
  });
  auto local = LbfgsMinimize(&space, e.distributed.sandblaster.lbfgs);
  ASSERT_TRUE(local.ok());
  EXPECT_NEAR(r->last_loss.total, local->value, 0.03 * local->value)
      << "sandblaster " << r->last_loss.total << " vs single-process L-BFGS " << local->value;
}

// Two fast replicas, then the same two plus one whose every portion takes 400 ms longer (a
// delay injected on its channel): backup tasks keep the straggler from holding each batch.
TEST(Sandblaster, BackupTasksKeepAStragglerFromHoldingTheBatch) {
  auto mean = [](const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / v.size(); };
  EngineOptions fast = Sandblaster("sb_fast", 2, 4);
  auto job = MnistJob(Autoencoder(), SmallDigits(), fast);
  ASSERT_TRUE(job.ok());
  auto a = RunJob(fast, *job);
  ASSERT_TRUE(a.ok()) << a.status();
  FaultInjectingTransport t(MakeInprocTransport({}));
  Fault slow;
  slow.kind = Fault::Kind::kDelay;
  slow.address = "sandblaster-worker-2";
  slow.call = CallKind::kRunPortion;
  slow.delay = Millis(400);
  t.Inject(slow);
  EngineOptions with_straggler = Sandblaster("sb_slow", 3, 4);
  with_straggler.distributed.cluster.injected_transport = &t;
  auto b = RunJob(with_straggler, *job);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_GT(t.faults_injected(), 0);
  const double ta = mean(a->batch_seconds), tb = mean(b->batch_seconds);
  EXPECT_GT(b->backup_tasks, 0);
  // Without backup tasks every batch would wait >= 400 ms for the straggler's portion.
  EXPECT_LT(tb, 0.38) << "fast-only batch " << ta << " s, with straggler " << tb << " s";
  EXPECT_LT(tb, 2.0 * ta + 0.05) << "fast-only batch " << ta << " s, with straggler " << tb << " s";
}

TEST(Sandblaster, AModelWithoutAFixedExampleSetIsRefusedByName) {
  EngineOptions e = Sandblaster("sb_refused", 2, 2);
  Job job;
  job.name = "stream";
  job.steps = 1;
  job.make_replica = [](int, int) -> StatusOr<std::unique_ptr<ReplicaModel>> {
    struct Stream : ReplicaModel {
      Param w{"w", Shape{2}};
      std::vector<Param*> params(int) override { return {&w}; }
      StatusOr<StepLoss> ComputeGradient(int64_t) override { return StepLoss{}; }
    };
    return std::unique_ptr<ReplicaModel>(new Stream());
  };
  auto r = RunJob(e, job);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("distributed.mode"), std::string::npos) << r.status();
}

// ---- The launcher: every way out of Launch stops the children it started. ----

// A stand-in for the distbelief binary: a shard prints its "listening" line (unless it is the one
// told to fail) and sleeps; a replica sleeps. Each records its pid.
std::string FakeRoles(const std::string& dir) {
  const std::string path = dir + "/fake_distbelief";
  std::ofstream(path) << "#!/bin/bash\n"
                         "role=$1; shift; index=0\n"
                         "while [ $# -gt 0 ]; do [ \"$1\" = --index ] && index=$2; shift; done\n"
                         "echo $$ >> " << dir << "/pids\n"
                         "if [ \"$role\" = shard ]; then\n"
                         "  [ \"$index\" = \"$(cat " << dir << "/fail_shard 2>/dev/null)\" ] && exit 3\n"
                         "  echo \"shard $index listening on 127.0.0.1:$((40000 + index))\"\n"
                         "fi\n"
                         "exec sleep 300\n";
  chmod(path.c_str(), 0755);
  return path;
}

// The pids the fake roles recorded that are still alive (after a moment for signals to land).
int Alive(const std::string& dir) {
  std::this_thread::sleep_for(Millis(300));
  std::ifstream in(dir + "/pids");
  int alive = 0;
  for (pid_t pid; in >> pid;) alive += ::kill(pid, 0) == 0;
  return alive;
}

Job Tiny() {
  Job job;
  job.name = "tiny";
  job.steps = 10;
  job.make_replica = [](int, int) -> StatusOr<std::unique_ptr<ReplicaModel>> {
    struct One : ReplicaModel {
      Param w{"w", Shape{4}};
      std::vector<Param*> params(int) override { return {&w}; }
      StatusOr<StepLoss> ComputeGradient(int64_t) override { return StepLoss{}; }
    };
    return std::unique_ptr<ReplicaModel>(new One());
  };
  return job;
}

TEST(Launch, AShardThatFailsToStartTakesNoOtherChildWithIt) {
  const std::string dir = RunDir("launch_fail");
  fs::create_directories(dir);
  std::ofstream(dir + "/fail_shard") << "1";
  EngineOptions e = Downpour("launch_fail_run");
  e.train.run_dir = dir + "/run";
  e.distributed.cluster.shards = 2;
  auto r = Launch(e, Tiny(), {FakeRoles(dir)});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("did not start serving"), std::string::npos) << r.status();
  EXPECT_EQ(Alive(dir), 0);
}

TEST(Launch, SigtermStopsEveryChild) {
  const std::string dir = RunDir("launch_term");
  fs::create_directories(dir);
  EngineOptions e = Downpour("launch_term_run");
  e.train.run_dir = dir + "/run";
  e.distributed.cluster.shards = 2;
  e.distributed.downpour.replicas = 3;
  e.distributed.downpour.warmstart_steps = 0;
  std::thread term([] {
    std::this_thread::sleep_for(Millis(1500));
    ::kill(::getpid(), SIGTERM);
  });
  auto r = Launch(e, Tiny(), {FakeRoles(dir)});
  term.join();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
  std::ifstream pids(dir + "/pids");
  int started = 0;
  for (pid_t pid; pids >> pid;) ++started;
  EXPECT_EQ(started, 5);  // 2 shards and 3 replicas had started
  EXPECT_EQ(Alive(dir), 0);
  // The secret went to a file only its owner can read, never into the environment.
  struct stat st;
  ASSERT_EQ(::stat((dir + "/run/launch/secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(Launch, RoleArgumentsCarryTypedOptions) {
  RoleOptions r;
  r.role = Role::kReplica;
  r.config_path = "c.toml";
  r.index = 2;
  r.shards = {"127.0.0.1:1", "127.0.0.1:2"};
  r.threads = 1;
  r.secret_file = "s";
  const std::vector<std::string> want = {"replica", "--config", "c.toml", "--index", "2", "--shards",
                                         "127.0.0.1:1,127.0.0.1:2", "--threads", "1", "--secret-file", "s"};
  EXPECT_EQ(RoleArgs(r), want);
  EngineOptions e;
  const std::string secret = fs::temp_directory_path() / "distbelief_dist_test_secret";
  std::ofstream(secret) << "xyz\n";
  r.secret_file = secret;
  ASSERT_TRUE(ApplyRole(r, &e).ok());
  EXPECT_EQ(e.distributed.cluster.transport.kind, TransportKind::kGrpc);
  EXPECT_EQ(e.distributed.cluster.shard_addresses, r.shards);
  EXPECT_EQ(e.distributed.cluster.transport.secret, "xyz");
  EXPECT_EQ(e.train.threads, 1);
}

// Before, a shard started without a secret accepted any client, silently, on any address.
TEST(Launch, AShardBeyondLoopbackNeedsASecretOrInsecure) {
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:5000"));
  EXPECT_TRUE(IsLoopbackAddress("localhost:0"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:7"));
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0:5000"));
  EXPECT_FALSE(IsLoopbackAddress("node7:5000"));
  for (Role role : {Role::kShard, Role::kWorker}) {
    RoleOptions r;
    r.role = role;
    r.shards = {"127.0.0.1:1"};
    r.listen = "0.0.0.0:0";
    EngineOptions e;
    const Status refused = ApplyRole(r, &e);
    EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << RoleName(role);
    EXPECT_NE(refused.message().find("--insecure"), std::string::npos) << refused;
    r.insecure = true;
    EXPECT_TRUE(ApplyRole(r, &e).ok()) << RoleName(role);
    EXPECT_EQ(RoleArgs(r).back(), "--insecure");
    r.insecure = false;
    e.distributed.cluster.transport.secret = "s3cret";
    EXPECT_TRUE(ApplyRole(r, &e).ok()) << RoleName(role);
    r.listen = "127.0.0.1:0";
    EngineOptions loopback;
    EXPECT_TRUE(ApplyRole(r, &loopback).ok()) << RoleName(role);
  }
}

}  // namespace
}  // namespace distbelief
