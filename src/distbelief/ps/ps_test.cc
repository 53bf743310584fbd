// Behavioural tests of the parameter server, run identically over the in-process transport, gRPC
// and gRPC's tensor socket: pull and push with versions and staleness, refusal of malformed pushes
// with the shard untouched, Sandblaster's vector operations and first-result-wins accumulation,
// shard checkpoints, a failing checkpoint that must not turn one push into two, push ids that make
// a retried or duplicated push apply once, and a push whose caller stops waiting.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <limits>
#include <thread>

#include "distbelief/ps/parameter_client.h"
#include "distbelief/ps/parameter_shard.h"
#include "distbelief/transport/fault_injection.h"
#include "distbelief/transport/transport.h"

namespace distbelief {
namespace {

// How the fixture's client reaches its shards.
enum Way { kInproc = 0, kGrpc = 1, kSocket = 2 };  // kSocket: gRPC with the tensor socket

struct Fixture {
  std::unique_ptr<FaultInjectingTransport> transport;  // faults only where a test injects them
  std::vector<std::unique_ptr<ParameterShard>> shards;
  std::vector<std::unique_ptr<Transport::Server>> servers;
  std::vector<std::string> addresses;
  std::unique_ptr<ShardMap> map;
  std::unique_ptr<ParameterClient> client;
};

struct FixtureOptions {
  OptimizerOptions opt;
  std::string ckpt_dir;
  int64_t checkpoint_every = 0;
  Millis checkpoint_interval{0};
  std::string ledger_dir;
  Millis retry_for{3000};
};

Fixture Start(int way, const std::vector<float>& initial, int num_shards, const FixtureOptions& fo = {}) {
  Fixture f;
  TransportOptions to;
  to.kind = way == kInproc ? TransportKind::kInproc : TransportKind::kGrpc;
  to.max_message_bytes = 1 << 20;
  to.data_plane = way == kSocket ? DataPlane::kSocket : DataPlane::kGrpc;
  f.transport = std::make_unique<FaultInjectingTransport>(MakeTransport(to));
  f.map = std::make_unique<ShardMap>(initial.size(), num_shards);
  for (int s = 0; s < num_shards; ++s) {
    ShardOptions so;
    so.shard = s;
    so.optimizer = fo.opt;
    if (!fo.ckpt_dir.empty()) so.checkpoint_path = fo.ckpt_dir + "/shard-" + std::to_string(s) + ".safetensors";
    so.checkpoint_every = fo.checkpoint_every;
    so.checkpoint_interval = fo.checkpoint_interval;
    so.ledger_dir = fo.ledger_dir;
    auto shard = ParameterShard::Create(so, std::span<const float>(initial).subspan(f.map->begin(s), f.map->size(s)));
    EXPECT_TRUE(shard.ok()) << shard.status();
    auto server = f.transport->ServeShard(f.transport->LocalAddress(""), shard->get());
    EXPECT_TRUE(server.ok()) << server.status();
    f.addresses.push_back((*server)->address());
    f.shards.push_back(std::move(*shard));
    f.servers.push_back(std::move(*server));
  }
  ClientOptions co;
  co.replica = 0;
  co.retry_for = fo.retry_for;
  co.ledger_dir = fo.ledger_dir;
  auto channels = ConnectShards(f.transport.get(), f.addresses);
  EXPECT_TRUE(channels.ok());
  auto c = ParameterClient::Create(std::move(*channels), *f.map, co);
  EXPECT_TRUE(c.ok()) << c.status();
  f.client = std::move(*c);
  return f;
}

std::vector<float> Range(int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = 0.5f * i;
  return v;
}

std::string TempDir(const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() / ("distbelief_ps_test_" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

class PsTest : public ::testing::TestWithParam<int> {};
INSTANTIATE_TEST_SUITE_P(Transports, PsTest, ::testing::Values(kInproc, kGrpc, kSocket), [](const auto& info) {
  return std::string(info.param == kInproc ? "inproc" : info.param == kGrpc ? "grpc" : "grpc_tensor_socket");
});

TEST_P(PsTest, PullPushVersionsAndStaleness) {
  FixtureOptions fo;
  fo.opt.learning_rate = 0.5f;
  Fixture f = Start(GetParam(), Range(11), 3, fo);
  std::vector<float> p(11);
  auto pr = f.client->Pull(p);
  ASSERT_TRUE(pr.ok()) << pr.status();
  EXPECT_EQ(p, Range(11));
  EXPECT_EQ(pr->versions, (std::vector<uint64_t>{0, 0, 0}));
  std::vector<float> g(11, 1.0f);
  auto pushed = f.client->PushAsync(g, pr->versions, 1).Wait(Millis(5000));
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_EQ(pushed->staleness, (std::vector<uint64_t>{0, 0, 0}));
  EXPECT_EQ(pushed->versions, (std::vector<uint64_t>{1, 1, 1}));
  // A second gradient computed from the old version is one update stale.
  pushed = f.client->PushAsync(g, pr->versions, 2).Wait(Millis(5000));
  ASSERT_TRUE(pushed.ok());
  EXPECT_EQ(pushed->staleness, (std::vector<uint64_t>{1, 1, 1}));
  pr = f.client->Pull(p);
  ASSERT_TRUE(pr.ok());
  EXPECT_EQ(pr->versions, (std::vector<uint64_t>{2, 2, 2}));
  for (int i = 0; i < 11; ++i) EXPECT_FLOAT_EQ(p[i], 0.5f * i - 2 * 0.5f);  // two SGD steps
  EXPECT_EQ(pr->min_replica_clock, 2);
}

// A flat vector in pieces whose cuts do not fall on the shards' cuts (11 floats over 3 shards:
// 0-3, 4-7, 8-10; pieces 0-1, 2-6, 7-10): pulls land in the pieces, pushes read from them, and a
// push's gradient is copied before PushAsync returns, so overwriting it at once changes nothing.
TEST_P(PsTest, PullsAndPushesWorkOnPiecesAndPushesCopyAtOnce) {
  FixtureOptions fo;
  fo.opt.learning_rate = 0.5f;
  Fixture f = Start(GetParam(), Range(11), 3, fo);
  std::vector<float> a(2), b(5), c(4);
  auto pr = f.client->Pull(std::vector<std::span<float>>{a, b, c});
  ASSERT_TRUE(pr.ok());
  std::vector<float> joined = a;
  joined.insert(joined.end(), b.begin(), b.end());
  joined.insert(joined.end(), c.begin(), c.end());
  EXPECT_EQ(joined, Range(11));
  std::vector<float> ga(2), gb(5), gc(4);
  for (int i = 0; i < 11; ++i) (i < 2 ? ga[i] : i < 7 ? gb[i - 2] : gc[i - 7]) = float(i * i);
  PendingPush op = f.client->PushAsync(std::vector<std::span<const float>>{ga, gb, gc}, pr->versions, 1);
  std::fill(gb.begin(), gb.end(), std::numeric_limits<float>::quiet_NaN());  // the caller reuses it at once
  ASSERT_TRUE(op.Wait(Millis(5000)).ok());
  std::vector<float> p(11);
  pr = f.client->Pull(p);
  ASSERT_TRUE(pr.ok());
  for (int i = 0; i < 11; ++i) EXPECT_FLOAT_EQ(p[i], 0.5f * i - 0.5f * i * i) << i;  // w - lr * g, g = i^2
  // Pieces that do not add up to the model are refused; a NaN is reported at its flat index.
  EXPECT_EQ(f.client->Pull(std::vector<std::span<float>>{a, b}).status().code(), absl::StatusCode::kInvalidArgument);
  auto s = f.client->PushAsync(std::vector<std::span<const float>>{ga, gb, gc}, pr->versions, 2).Wait(Millis(5000));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("at index 2;"), std::string::npos) << s.status();
  pr = f.client->Pull(p);
  ASSERT_TRUE(pr.ok());
  EXPECT_EQ(pr->versions, (std::vector<uint64_t>{1, 1, 1}));  // nothing applied anywhere
}

TEST_P(PsTest, MalformedPushesAreRefusedAndChangeNothing) {
  Fixture f = Start(GetParam(), Range(8), 2);
  auto channel = f.transport->ConnectShard(f.addresses[0]);
  ASSERT_TRUE(channel.ok());
  PushReply reply;
  std::vector<float> wrong(3, 1.0f);
  Status s = (*channel)->Push({}, wrong, &reply, Millis(5000));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("holds 4"), std::string::npos) << s;
  std::vector<float> nan(4, 1.0f);
  nan[2] = std::numeric_limits<float>::quiet_NaN();
  s = (*channel)->Push({}, nan, &reply, Millis(5000));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("NaN or Inf at index 2"), std::string::npos) << s;
  nan[2] = std::numeric_limits<float>::infinity();
  EXPECT_EQ((*channel)->Push({}, nan, &reply, Millis(5000)).code(), absl::StatusCode::kInvalidArgument);
  std::vector<float> p(8);
  auto pr = f.client->Pull(p);
  ASSERT_TRUE(pr.ok());
  EXPECT_EQ(p, Range(8));
  EXPECT_EQ(pr->versions, (std::vector<uint64_t>{0, 0}));
  // Through the client: the error comes back, not retried, nothing applied.
  std::vector<float> g(8, 1.0f);
  g[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(f.client->PushAsync(g, pr->versions, 1).Wait(Millis(5000)).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(f.client->Pull(p).ok());
  EXPECT_EQ(p, Range(8));
}

TEST_P(PsTest, VectorOperationsSpanTheShards) {
  Fixture f = Start(GetParam(), Range(10), 3);
  auto dot = f.client->Dot(kParamsVector, kParamsVector);
  ASSERT_TRUE(dot.ok());
  double want = 0;
  for (float v : Range(10)) want += double(v) * v;
  EXPECT_DOUBLE_EQ(*dot, want);
  const VectorId d = kFirstScratchVector;
  ASSERT_TRUE(f.client->Copy(kParamsVector, d).ok());
  ASSERT_TRUE(f.client->Scale(2.0, d).ok());
  ASSERT_TRUE(f.client->Axpy(-1.0, kParamsVector, d).ok());  // d = 2x - x = x
  EXPECT_DOUBLE_EQ(*f.client->Dot(d, kParamsVector), want);
  EXPECT_EQ(f.client->Dot(d + 1, kParamsVector).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(PsTest, AccumulationCountsEachPortionOnce) {
  Fixture f = Start(GetParam(), Range(6), 2);
  ASSERT_TRUE(f.client->BeginBatch(7).ok());
  std::vector<float> g(6, 1.0f);
  ASSERT_TRUE(f.client->Accumulate(g, 7, 0).ok());
  ASSERT_TRUE(f.client->Accumulate(g, 7, 1).ok());
  ASSERT_TRUE(f.client->Accumulate(g, 7, 1).ok());  // a backup task's late duplicate
  // acc . acc = 6 * 2^2 if portion 1 counted once.
  EXPECT_DOUBLE_EQ(*f.client->Dot(kAccumulatorVector, kAccumulatorVector), 24.0);
  Status stale = f.client->Accumulate(g, 6, 2);
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition) << stale;
}

TEST_P(PsTest, ShardRestoresFromItsCheckpoint) {
  FixtureOptions fo;
  fo.ckpt_dir = TempDir("ckpt" + std::to_string(GetParam()));
  fo.opt.name = Optimizer::kAdagrad;
  fo.opt.learning_rate = 0.1f;
  std::vector<float> after(6);
  {
    Fixture f = Start(GetParam(), Range(6), 2, fo);
    std::vector<float> g(6, 1.0f);
    auto pr = f.client->Pull(after);
    ASSERT_TRUE(f.client->PushAsync(g, pr->versions, 1).Wait(Millis(5000)).ok());
    for (auto& s : f.shards) ASSERT_TRUE(s->SaveCheckpoint().ok());
    ASSERT_TRUE(f.client->Pull(after).ok());
  }
  Fixture f = Start(GetParam(), Range(6), 2, fo);  // same initial values: ignored
  std::vector<float> p(6);
  auto pr = f.client->Pull(p);
  ASSERT_TRUE(pr.ok());
  EXPECT_EQ(p, after);
  EXPECT_EQ(pr->versions, (std::vector<uint64_t>{1, 1}));
}

// A checkpoint the shard cannot write (here a file stands where its folder should be, as a full
// or read-only disk would) does not fail the push that triggered it: the update was applied, so
// an error would make the client retry and apply the same gradient again. The failure becomes
// the shard's sticky background error, visible in Info, until a checkpoint succeeds.
TEST_P(PsTest, AFailingCheckpointNeverAppliesAPushTwice) {
  const std::string dir = TempDir("blocked" + std::to_string(GetParam()));
  std::ofstream(dir + "/not_a_folder") << "x";
  FixtureOptions fo;
  fo.ckpt_dir = dir + "/not_a_folder";
  fo.checkpoint_every = 1;  // every push asks for a checkpoint
  Fixture f = Start(GetParam(), Range(4), 2, fo);
  std::vector<float> g(4, 1.0f);
  for (uint64_t i = 1; i <= 5; ++i) {
    auto pushed = f.client->PushAsync(g, {0, 0}, static_cast<int64_t>(i)).Wait(Millis(10000));
    ASSERT_TRUE(pushed.ok()) << pushed.status();
    EXPECT_EQ(pushed->versions, (std::vector<uint64_t>{i, i})) << "each push applied exactly once";
  }
  auto infos = f.client->Info();
  ASSERT_TRUE(infos.ok());
  for (const ShardInfo& info : *infos) {
    EXPECT_EQ(info.version, 5u);
    EXPECT_NE(info.background_error.find("not_a_folder"), std::string::npos) << info.background_error;
  }
  EXPECT_FALSE(f.shards[0]->background_error().ok());
}

// A caller that stops waiting for a push (a timeout) leaves nothing the push could still write
// to: the result lives in the operation. Under AddressSanitizer the old out-pointer design was a
// heap-use-after-free here.
TEST_P(PsTest, APushThatOutlivesItsWaitWritesNothingOfTheCallers) {
  Fixture f = Start(GetParam(), Range(4), 2);
  Fault slow;
  slow.kind = Fault::Kind::kDelay;
  slow.call = CallKind::kPush;
  slow.delay = Millis(300);
  f.transport->Inject(slow);
  std::vector<float> g(4, 1.0f);
  PendingPush op;
  {
    auto scratch = std::make_unique<std::vector<uint64_t>>(2, 7);  // what a caller's frame would hold
    op = f.client->PushAsync(g, {0, 0}, 1);
    EXPECT_EQ(op.Wait(Millis(10)).status().code(), absl::StatusCode::kDeadlineExceeded);
  }
  auto done = op.Wait(Millis(10000));  // the push finishes in the background, into itself
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->versions, (std::vector<uint64_t>{1, 1}));
}

// Exactly once: a push carries its client's id and sequence number, and a shard applies an id
// at most once; a retried or duplicated push is acknowledged (with the original's version), not
// applied again. Older sequences are duplicates too; another client's pushes are its own.
TEST_P(PsTest, APushIdIsAppliedAtMostOnce) {
  Fixture f = Start(GetParam(), Range(4), 1);
  auto ch = f.transport->ConnectShard(f.addresses[0]);
  ASSERT_TRUE(ch.ok());
  std::vector<float> g(4, 1.0f);
  auto push = [&](uint64_t client, uint64_t seq) {
    PushReply r;
    PushMeta meta;
    meta.client = client;
    meta.sequence = seq;
    EXPECT_TRUE((*ch)->Push(meta, g, &r, Millis(5000)).ok());
    return r;
  };
  PushReply first = push(42, 1);
  EXPECT_FALSE(first.duplicate);
  EXPECT_EQ(first.version, 1u);
  PushReply again = push(42, 1);
  EXPECT_TRUE(again.duplicate);
  EXPECT_EQ(again.version, 1u);
  EXPECT_EQ(push(42, 2).version, 2u);
  EXPECT_TRUE(push(42, 1).duplicate);  // a late copy of an older push
  EXPECT_EQ(push(43, 1).version, 3u);  // another client
  EXPECT_EQ(f.shards[0]->version(), 3u);
  EXPECT_FLOAT_EQ(f.shards[0]->Info().version, 3u);
  EXPECT_EQ(f.shards[0]->Info().duplicate_pushes, 2u);
  auto infos = f.client->Info();
  ASSERT_TRUE(infos.ok());
  EXPECT_EQ((*infos)[0].duplicate_pushes, 2u);
  // Without an id (client 0) every push applies, as a coordinator's do.
  EXPECT_EQ(push(0, 0).version, 4u);
  EXPECT_EQ(push(0, 0).version, 5u);
}

// The client's own retries: a reply lost on the way back (the shard applied the push, the client
// times out and sends it again) or a request delivered twice is applied once. Before push ids
// both were applied twice.
TEST_P(PsTest, ARetriedOrDuplicatedPushIsAppliedOnce) {
  Fixture f = Start(GetParam(), Range(4), 2);
  std::vector<float> g(4, 1.0f);
  for (Fault::Kind kind : {Fault::Kind::kDropReply, Fault::Kind::kDuplicate}) {
    f.transport->Clear();
    Fault fault;
    fault.kind = kind;
    fault.call = CallKind::kPush;
    fault.times = 1;
    f.transport->Inject(fault);
    const int faults_before = f.transport->faults_injected();
    const uint64_t before = f.shards[0]->version();
    auto pushed = f.client->PushAsync(g, {before, before}, 1).Wait(Millis(20000));
    ASSERT_TRUE(pushed.ok()) << pushed.status();
    EXPECT_EQ(f.transport->faults_injected() - faults_before, 1);
    EXPECT_EQ(f.shards[0]->version() + f.shards[1]->version(), 2 * before + 2) << "each shard applied it once";
    EXPECT_EQ(pushed->versions, (std::vector<uint64_t>{before + 1, before + 1}));
  }
  EXPECT_EQ(f.shards[0]->Info().duplicate_pushes + f.shards[1]->Info().duplicate_pushes, 2u);
}

// Durability: a shard killed and restarted from its checkpoint (here at version 4 of 5) has lost
// the push it acknowledged after it. The client kept that push, learns of the restart from its
// next push (a new incarnation), pushes the kept one again, then its own: the shard ends holding
// every acknowledged push exactly once. Before, the restarted shard ended at version 5 of 6.
TEST_P(PsTest, AShardRestartedFromItsCheckpointLosesNoAcknowledgedPush) {
  FixtureOptions fo;
  fo.ckpt_dir = TempDir("restart" + std::to_string(GetParam()));
  fo.checkpoint_every = 2;
  fo.opt.learning_rate = 0.1f;
  Fixture f = Start(GetParam(), Range(4), 1, fo);
  auto push = [&](int k) {
    std::vector<float> g(4, static_cast<float>(k));
    return f.client->PushAsync(g, {0}, k).Wait(Millis(20000));
  };
  for (int k = 1; k <= 5; ++k) {
    auto r = push(k);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->versions[0], static_cast<uint64_t>(k));
  }
  EXPECT_EQ(f.shards[0]->Info().durable_version, 4u);
  // kill -9: the process and everything since its last checkpoint are gone.
  f.servers[0].reset();
  f.shards[0].reset();
  ShardOptions so;
  so.optimizer = fo.opt;
  so.checkpoint_path = fo.ckpt_dir + "/shard-0.safetensors";
  so.checkpoint_every = fo.checkpoint_every;
  auto restarted = ParameterShard::Create(so, Range(4));
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  ASSERT_EQ((*restarted)->version(), 4u);
  auto server = f.transport->ServeShard(f.addresses[0], restarted->get());
  ASSERT_TRUE(server.ok()) << server.status();
  auto sixth = push(6);
  ASSERT_TRUE(sixth.ok()) << sixth.status();
  EXPECT_EQ((*restarted)->version(), 6u) << "pushes 5 and 6, each once";
  EXPECT_EQ(f.client->replayed_pushes(), 1);
  std::vector<float> v(4);
  const std::span<float> out(v);
  PullReply pr;
  auto ch = f.transport->ConnectShard(f.addresses[0]);
  ASSERT_TRUE(ch.ok());
  ASSERT_TRUE((*ch)->Pull(-1, std::span<const std::span<float>>(&out, 1), &pr, Millis(5000)).ok());
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(v[i], Range(4)[i] - 0.1f * (1 + 2 + 3 + 4 + 5 + 6), 1e-4) << i;
  // A shard without checkpoints tells its clients everything is durable: they keep nothing.
  Fixture plain = Start(GetParam(), Range(4), 1);
  std::vector<float> g(4, 1.0f);
  ASSERT_TRUE(plain.client->PushAsync(g, {0}, 1).Wait(Millis(5000)).ok());
  EXPECT_EQ(plain.shards[0]->Info().durable_version, 1u);
}

// A replica that ends waits until the shards' checkpoints hold its pushes (a shard checkpoints
// updates left unsaved for its interval), pushing them again to a shard that restarted after its
// last push; both sides' ledgers name every push id.
TEST_P(PsTest, SettleWaitsUntilTheCheckpointsHoldThePushesAndLedgersRecordThem) {
  FixtureOptions fo;
  fo.ckpt_dir = TempDir("settle" + std::to_string(GetParam()));
  fo.ledger_dir = TempDir("ledger" + std::to_string(GetParam()));
  fo.checkpoint_every = 1000;             // never by count here
  fo.checkpoint_interval = Millis(300);  // by time
  Fixture f = Start(GetParam(), Range(4), 1, fo);
  std::vector<float> g(4, 1.0f);
  for (int k = 1; k <= 3; ++k) ASSERT_TRUE(f.client->PushAsync(g, {0}, k).Wait(Millis(5000)).ok());
  EXPECT_EQ(f.shards[0]->Info().durable_version, 0u) << "not by count";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(f.client->Settle(Millis(5000)).ok());
  EXPECT_EQ(f.shards[0]->Info().durable_version, 3u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, Millis(2000));
  // A push, then the shard dies before its timed checkpoint and restarts from the last one:
  // Settle pushes it again.
  ASSERT_TRUE(f.client->PushAsync(g, {0}, 4).Wait(Millis(5000)).ok());
  f.servers[0].reset();
  f.shards[0].reset();
  ShardOptions so;
  so.checkpoint_path = fo.ckpt_dir + "/shard-0.safetensors";
  so.checkpoint_every = fo.checkpoint_every;
  so.checkpoint_interval = fo.checkpoint_interval;
  so.ledger_dir = fo.ledger_dir;
  auto restarted = ParameterShard::Create(so, Range(4));
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  ASSERT_EQ((*restarted)->version(), 3u);
  auto server = f.transport->ServeShard(f.addresses[0], restarted->get());
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE(f.client->Settle(Millis(10000)).ok());
  EXPECT_EQ((*restarted)->version(), 4u);
  EXPECT_EQ((*restarted)->Info().durable_version, 4u);
  // The ledgers: the client acknowledged sequences 1-4 and replayed 4; the first shard process
  // applied 1-4, the second started at 3 and applied 4.
  std::map<std::string, std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(fo.ledger_dir)) {
    std::ifstream in(entry.path());
    std::stringstream ss;
    ss << in.rdbuf();
    files[entry.path().filename().string().substr(0, 7)] += ss.str();
  }
  ASSERT_EQ(files.size(), 2u) << "replica- and shard- files";
  const std::string client = files["replica"];
  EXPECT_EQ(std::count(client.begin(), client.end(), '\n'), 5) << client;
  EXPECT_NE(client.find("replay 0 "), std::string::npos) << client;
  const std::string shard = files["shard-0"];
  EXPECT_NE(shard.find("start 0 "), std::string::npos) << shard;
  EXPECT_NE(shard.find("start 3 "), std::string::npos) << shard;
  EXPECT_EQ(std::count(shard.begin(), shard.end(), '\n'), 2 + 4 + 1) << shard;
}

// The table of applied ids lives in the shard's checkpoint: a shard restarted from it still
// refuses to apply a push it had applied before the checkpoint.
TEST(ParameterShard, RemembersAppliedPushIdsAcrossARestart) {
  const std::string dir = TempDir("push_ids");
  ShardOptions so;
  so.checkpoint_path = dir + "/shard.safetensors";
  so.checkpoint_every = 1;
  std::vector<float> g(4, 1.0f);
  PushMeta meta;
  meta.client = 7;
  meta.sequence = 3;
  PushReply r;
  {
    auto shard = ParameterShard::Create(so, Range(4));
    ASSERT_TRUE(shard.ok());
    ASSERT_TRUE((*shard)->Push(meta, g, &r).ok());
    EXPECT_FALSE(r.duplicate);
  }
  auto restarted = ParameterShard::Create(so, Range(4));
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  ASSERT_EQ((*restarted)->version(), 1u);
  ASSERT_TRUE((*restarted)->Push(meta, g, &r).ok());
  EXPECT_TRUE(r.duplicate);
  EXPECT_EQ(r.version, 1u);
  EXPECT_EQ((*restarted)->version(), 1u);
  meta.sequence = 4;
  ASSERT_TRUE((*restarted)->Push(meta, g, &r).ok());
  EXPECT_EQ((*restarted)->version(), 2u);
}

// The push log: a shard killed between checkpoints comes back with every push it acknowledged,
// bit for bit the state of a shard that was never killed (Adagrad's state too), its push ids
// still remembered, and with no help from any client.
TEST(ParameterShard, APushLogRestoresWhatTheCheckpointLacks) {
  const std::string dir = TempDir("push_log");
  ShardOptions so;
  so.optimizer.name = Optimizer::kAdagrad;
  so.optimizer.learning_rate = 0.1f;
  so.checkpoint_path = dir + "/shard.safetensors";
  so.checkpoint_every = 3;
  so.push_log = true;
  auto gradient = [](int k) {
    std::vector<float> g(6);
    for (int i = 0; i < 6; ++i) g[i] = std::sin(1.0f + k * 7 + i);
    return g;
  };
  PushMeta meta;
  meta.client = 9;
  PushReply r;
  ShardOptions plain = so;
  plain.checkpoint_path.clear();
  plain.push_log = false;
  auto never_killed = ParameterShard::Create(plain, Range(6));
  ASSERT_TRUE(never_killed.ok());
  {
    auto shard = ParameterShard::Create(so, Range(6));
    ASSERT_TRUE(shard.ok()) << shard.status();
    for (int k = 1; k <= 5; ++k) {
      meta.sequence = k;
      PushReply twin;
      ASSERT_TRUE((*never_killed)->Push(meta, gradient(k), &twin).ok());
      ASSERT_TRUE((*shard)->Push(meta, gradient(k), &r).ok());
    }
    // The log survives the process, not the machine: clients keep their copies until a checkpoint.
    EXPECT_EQ(r.durable_version, 3u);
  }  // killed: no checkpoint after update 3; the log's run holds 4 and 5 over the old 1 and 2
  auto restarted = ParameterShard::Create(so, Range(6));
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  EXPECT_EQ((*restarted)->version(), 5u);
  std::vector<float> a(6), b(6);
  std::span<float> pa(a), pb(b);
  PullReply pr;
  ASSERT_TRUE((*restarted)->Pull(-1, std::span<const std::span<float>>(&pa, 1), &pr).ok());
  ASSERT_TRUE((*never_killed)->Pull(-1, std::span<const std::span<float>>(&pb, 1), &pr).ok());
  EXPECT_EQ(a, b);
  meta.sequence = 5;  // a retry of the last push: remembered from the log
  ASSERT_TRUE((*restarted)->Push(meta, gradient(5), &r).ok());
  EXPECT_TRUE(r.duplicate);
  EXPECT_EQ(r.version, 5u);
  meta.sequence = 6;  // and the next one goes on from the same Adagrad state
  PushReply twin;
  ASSERT_TRUE((*never_killed)->Push(meta, gradient(6), &twin).ok());
  ASSERT_TRUE((*restarted)->Push(meta, gradient(6), &r).ok());
  ASSERT_TRUE((*restarted)->Pull(-1, std::span<const std::span<float>>(&pa, 1), &pr).ok());
  ASSERT_TRUE((*never_killed)->Pull(-1, std::span<const std::span<float>>(&pb, 1), &pr).ok());
  EXPECT_EQ(a, b);
  EXPECT_EQ(pr.version, 6u);
  EXPECT_EQ(r.durable_version, 6u);
  restarted->reset();
  // The checkpoint at 6 holds everything; the log's older records are not applied again.
  auto again = ParameterShard::Create(so, Range(6));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->version(), 6u);
  ASSERT_TRUE((*again)->Pull(-1, std::span<const std::span<float>>(&pa, 1), &pr).ok());
  EXPECT_EQ(a, b);
  // Destroyed with everything in its checkpoint, a shard removes its spent log.
  EXPECT_TRUE(std::filesystem::exists(PushLogPath(so)));
  again->reset();
  EXPECT_FALSE(std::filesystem::exists(PushLogPath(so)));
}

// What a crash can leave in a log, and what a restarted shard makes of it: a record whose magic
// was never stored (a process killed inside Append) ends the log; so does a record that fails its
// hash (a synced log: pages lost with the machine) or an unsynced record written before a reboot.
// A log of another lineage (its checkpoint lost) is not trusted; one that does not continue its
// checkpoint (an older one put back) is refused.
TEST(ParameterShard, APushLogEndsAtWhatACrashLeftAndRefusesALogThatDoesNotFit) {
  const std::string dir = TempDir("push_log_torn");
  ShardOptions so;
  so.optimizer.learning_rate = 1.0f;
  so.checkpoint_path = dir + "/shard.safetensors";
  so.push_log = true;
  std::string wal = PushLogPath(so);
  EXPECT_EQ(wal.rfind("/dev/shm/distbelief-shard.safetensors-", 0), 0u) << wal;
  const std::streamoff record = 88 + 4 * sizeof(float);
  std::vector<float> g(4, 1.0f);
  PushMeta meta;
  PushReply r;
  auto fill = [&](const ShardOptions& o) {
    wal = PushLogPath(o);
    std::filesystem::remove(wal);
    auto shard = ParameterShard::Create(o, Range(4));
    ASSERT_TRUE(shard.ok()) << shard.status();
    for (int k = 0; k < 3; ++k) ASSERT_TRUE((*shard)->Push(meta, g, &r).ok());
  };
  auto poke = [&](std::streamoff at, char byte) {
    std::fstream f(wal, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(at);
    f.put(byte);
  };
  auto version_after_restart = [&](const ShardOptions& o) -> int64_t {
    auto shard = ParameterShard::Create(o, Range(4));
    EXPECT_TRUE(shard.ok()) << shard.status();
    return shard.ok() ? static_cast<int64_t>((*shard)->version()) : -1;
  };
  fill(so);
  EXPECT_EQ(version_after_restart(so), 3);
  poke(2 * record, 0);  // the third record's magic never stored
  EXPECT_EQ(version_after_restart(so), 2);
  poke(0 * record + 16, 0x55);  // the first record's boot is another one
  EXPECT_EQ(version_after_restart(so), 0);
  ShardOptions synced = so;
  synced.push_log_sync = Millis(50);
  fill(synced);
  EXPECT_EQ(wal, synced.checkpoint_path + ".wal");
  poke(1 * record + 88 + 5, 0x7f);  // a byte of the second record's gradient
  EXPECT_EQ(version_after_restart(synced), 1);
  {  // the checkpoint lost: a fresh shard with a new lineage, the old log not trusted
    fill(so);
    std::filesystem::remove(so.checkpoint_path);
    EXPECT_EQ(version_after_restart(so), 0);
  }
  {  // an older checkpoint of the same lineage put back: updates 4-5 do not continue version 1
    std::filesystem::remove(PushLogPath(so));
    auto shard = ParameterShard::Create(so, Range(4));
    ASSERT_TRUE(shard.ok());
    ASSERT_TRUE((*shard)->Push(meta, g, &r).ok());
    ASSERT_TRUE((*shard)->SaveCheckpoint().ok());
    std::filesystem::copy_file(so.checkpoint_path, dir + "/old.safetensors");
    for (int k = 0; k < 2; ++k) ASSERT_TRUE((*shard)->Push(meta, g, &r).ok());
    ASSERT_TRUE((*shard)->SaveCheckpoint().ok());  // version 3; the log rewound
    for (int k = 0; k < 2; ++k) ASSERT_TRUE((*shard)->Push(meta, g, &r).ok());
  }
  std::filesystem::copy_file(dir + "/old.safetensors", so.checkpoint_path,
                             std::filesystem::copy_options::overwrite_existing);
  auto gap = ParameterShard::Create(so, Range(4));
  ASSERT_FALSE(gap.ok());
  EXPECT_EQ(gap.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(gap.status().message().find("update 4 follows version 1"), std::string::npos) << gap.status();
  // A push log needs a checkpoint beside it.
  ShardOptions nowhere;
  nowhere.push_log = true;
  EXPECT_FALSE(ParameterShard::Create(nowhere, Range(4)).ok());
}

TEST(PendingPush, WaitHonoursItsDeadline) {
  FixtureOptions fo;
  fo.retry_for = Millis(3000);
  Fixture f = Start(kInproc, Range(4), 1, fo);
  f.servers.clear();  // nothing serves the shard: the push retries for 3 s
  std::vector<float> g(4, 1.0f);
  PendingPush op = f.client->PushAsync(g, {0}, 1);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(op.Wait(Millis(200)).status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, Millis(1000));
  EXPECT_EQ(op.Wait(Millis(10000)).status().code(), absl::StatusCode::kUnavailable);
}

// A shard bounds the norm of its constrained blocks after every update, and only those blocks.
TEST(ParameterShard, KeepsNormBlocksBounded) {
  ShardOptions so;
  so.optimizer.learning_rate = 1.0f;
  so.norm_bound = {{2, 3, 2}, 1.0f};  // [2, 5) and [5, 8)
  std::vector<float> initial(10, 0.1f);
  auto shard = ParameterShard::Create(so, initial);
  ASSERT_TRUE(shard.ok()) << shard.status();
  std::vector<float> g(10, -2.0f);  // SGD: every value grows to 2.1
  PushReply reply;
  ASSERT_TRUE((*shard)->Push({}, g, &reply).ok());
  std::vector<float> v(10);
  const std::span<float> out(v);
  PullReply pulled;
  ASSERT_TRUE((*shard)->Pull(-1, std::span<const std::span<float>>(&out, 1), &pulled).ok());
  EXPECT_FLOAT_EQ(v[0], 2.1f);  // outside the blocks: untouched
  EXPECT_FLOAT_EQ(v[9], 2.1f);
  for (int b = 0; b < 2; ++b) {
    double sq = 0;
    for (int i = 0; i < 3; ++i) sq += double(v[2 + 3 * b + i]) * v[2 + 3 * b + i];
    EXPECT_NEAR(std::sqrt(sq), 1.0, 1e-5);
  }
  so.norm_bound = {{8, 3, 1}, 1.0f};  // runs past the end of the range
  EXPECT_EQ(ParameterShard::Create(so, initial).status().code(), absl::StatusCode::kInvalidArgument);
}

// Under a schedule the shard sets the rate of each update from its own version.
TEST(ParameterShard, FollowsItsScheduleByUpdateCount) {
  ShardOptions so;
  so.optimizer.learning_rate = 1.0f;
  so.schedule = {Schedule::kCosine, 0, 0.0f};
  so.total_updates = 3;  // rates 1, 0.5, 0
  auto shard = ParameterShard::Create(so, std::vector<float>(1, 0.0f));
  ASSERT_TRUE(shard.ok());
  std::vector<float> g = {1.0f}, v(1);
  const std::span<float> out(v);
  PushReply reply;
  PullReply pulled;
  for (float want : {-1.0f, -1.5f, -1.5f}) {
    ASSERT_TRUE((*shard)->Push({}, g, &reply).ok());
    ASSERT_TRUE((*shard)->Pull(-1, std::span<const std::span<float>>(&out, 1), &pulled).ok());
    EXPECT_NEAR(v[0], want, 1e-6);
  }
}

TEST(ShardMap, AlignedCutsNeverSplitABlock) {
  const ShardMap even(100, 3);
  EXPECT_EQ(even.begin(1), 33);
  const ShardMap m = ShardMap::Aligned(100, 3, {{10, 7, 12}});  // blocks cover [10, 94)
  EXPECT_EQ(m.begin(0), 0);
  EXPECT_EQ(m.end(2), 100);
  for (int s = 1; s < 3; ++s) EXPECT_EQ((m.begin(s) - 10) % 7, 0) << m.begin(s);
  EXPECT_LE(std::abs(m.begin(1) - 33), 4);
}

}  // namespace
}  // namespace distbelief
