// Behavioural tests of the parameter server, run identically over the in-process and the gRPC
// transport: pull and push with versions and staleness, refusal of malformed pushes with the
// shard untouched, Sandblaster's vector operations and first-result-wins accumulation, shard
// checkpoints. gRPC-only: the shared secret, oversized messages, reconnecting to a restarted shard.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <thread>

#include "distbelief/ps/parameter_client.h"
#include "distbelief/ps/parameter_shard.h"
#include "distbelief/transport/transport.h"

namespace distbelief {
namespace {

struct Fixture {
  std::unique_ptr<Transport> transport;
  std::vector<std::unique_ptr<ParameterShard>> shards;
  std::vector<std::unique_ptr<Transport::Server>> servers;
  std::vector<std::string> addresses;
  std::unique_ptr<ShardMap> map;
  std::unique_ptr<ParameterClient> client;
};

Fixture Start(bool grpc, const std::vector<float>& initial, int num_shards, OptimizerOptions opt = {},
              const std::string& secret = "", const std::string& ckpt_dir = "") {
  Fixture f;
  TransportOptions to;
  to.secret = secret;
  to.max_message_bytes = 1 << 20;
  f.transport = grpc ? MakeGrpcTransport(to) : MakeInprocTransport(to);
  f.map = std::make_unique<ShardMap>(initial.size(), num_shards);
  for (int s = 0; s < num_shards; ++s) {
    ShardOptions so;
    so.shard = s;
    so.optimizer = opt;
    if (!ckpt_dir.empty()) so.checkpoint_path = ckpt_dir + "/shard-" + std::to_string(s) + ".safetensors";
    auto shard = ParameterShard::Create(so, std::span<const float>(initial).subspan(f.map->begin(s), f.map->size(s)));
    EXPECT_TRUE(shard.ok()) << shard.status();
    auto server = f.transport->ServeShard(grpc ? "127.0.0.1:0" : "", shard->get());
    EXPECT_TRUE(server.ok()) << server.status();
    f.addresses.push_back((*server)->address());
    f.shards.push_back(std::move(*shard));
    f.servers.push_back(std::move(*server));
  }
  ClientOptions co;
  co.replica = 0;
  co.retry_for = Millis(3000);
  auto c = ParameterClient::Connect(f.transport.get(), f.addresses, *f.map, co);
  EXPECT_TRUE(c.ok()) << c.status();
  f.client = std::move(*c);
  return f;
}

std::vector<float> Range(int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = 0.5f * i;
  return v;
}

class PsTest : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Transports, PsTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "grpc" : "inproc"; });

TEST_P(PsTest, PullPushVersionsAndStaleness) {
  OptimizerOptions opt;
  opt.learning_rate = 0.5f;
  Fixture f = Start(GetParam(), Range(11), 3, opt);
  std::vector<float> p(11);
  PullResult pr;
  ASSERT_TRUE(f.client->Pull(p, &pr).ok());
  EXPECT_EQ(p, Range(11));
  EXPECT_EQ(pr.versions, (std::vector<uint64_t>{0, 0, 0}));
  std::vector<float> g(11, 1.0f);
  std::vector<uint64_t> staleness;
  ASSERT_TRUE(f.client->PushAsync(g, pr.versions, 1, &staleness).Wait(Millis(5000)).ok());
  EXPECT_EQ(staleness, (std::vector<uint64_t>{0, 0, 0}));
  // A second gradient computed from the old version is one update stale.
  ASSERT_TRUE(f.client->PushAsync(g, pr.versions, 2, &staleness).Wait(Millis(5000)).ok());
  EXPECT_EQ(staleness, (std::vector<uint64_t>{1, 1, 1}));
  ASSERT_TRUE(f.client->Pull(p, &pr).ok());
  EXPECT_EQ(pr.versions, (std::vector<uint64_t>{2, 2, 2}));
  for (int i = 0; i < 11; ++i) EXPECT_FLOAT_EQ(p[i], 0.5f * i - 2 * 0.5f);  // two SGD steps
  EXPECT_EQ(pr.min_replica_clock, 2);
}

TEST_P(PsTest, MalformedPushesAreRefusedAndChangeNothing) {
  Fixture f = Start(GetParam(), Range(8), 2);
  auto channel = f.transport->ConnectShard(f.addresses[0]);
  ASSERT_TRUE(channel.ok());
  rpc::PushRequest req;
  rpc::PushReply reply;
  std::vector<float> wrong(3, 1.0f);
  req.set_gradient(FloatsToBytes(wrong));
  Status s = (*channel)->Push(req, &reply, Millis(5000));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("expected 4"), std::string::npos) << s;
  req.set_gradient("abc");  // not whole floats
  EXPECT_EQ((*channel)->Push(req, &reply, Millis(5000)).code(), absl::StatusCode::kInvalidArgument);
  std::vector<float> nan(4, 1.0f);
  nan[2] = std::numeric_limits<float>::quiet_NaN();
  req.set_gradient(FloatsToBytes(nan));
  s = (*channel)->Push(req, &reply, Millis(5000));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("NaN or Inf at index 2"), std::string::npos) << s;
  nan[2] = std::numeric_limits<float>::infinity();
  req.set_gradient(FloatsToBytes(nan));
  EXPECT_EQ((*channel)->Push(req, &reply, Millis(5000)).code(), absl::StatusCode::kInvalidArgument);
  std::vector<float> p(8);
  PullResult pr;
  ASSERT_TRUE(f.client->Pull(p, &pr).ok());
  EXPECT_EQ(p, Range(8));
  EXPECT_EQ(pr.versions, (std::vector<uint64_t>{0, 0}));
  // Through the client: the error comes back, not retried, nothing applied.
  std::vector<float> g(8, 1.0f);
  g[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(f.client->PushAsync(g, pr.versions, 1).Wait(Millis(5000)).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(f.client->Pull(p, &pr).ok());
  EXPECT_EQ(p, Range(8));
}

TEST_P(PsTest, VectorOperationsSpanTheShards) {
  Fixture f = Start(GetParam(), Range(10), 3);
  auto dot = f.client->Dot("x", "x");
  ASSERT_TRUE(dot.ok());
  double want = 0;
  for (float v : Range(10)) want += double(v) * v;
  EXPECT_DOUBLE_EQ(*dot, want);
  ASSERT_TRUE(f.client->Copy("x", "d").ok());
  ASSERT_TRUE(f.client->Scale(2.0, "d").ok());
  ASSERT_TRUE(f.client->Axpy(-1.0, "x", "d").ok());  // d = 2x - x = x
  EXPECT_DOUBLE_EQ(*f.client->Dot("d", "x"), want);
  auto missing = f.client->Dot("nope", "x");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(PsTest, AccumulationCountsEachPortionOnce) {
  Fixture f = Start(GetParam(), Range(6), 2);
  ASSERT_TRUE(f.client->BeginBatch(7).ok());
  std::vector<float> g(6, 1.0f);
  ASSERT_TRUE(f.client->Accumulate(g, 7, 0).ok());
  ASSERT_TRUE(f.client->Accumulate(g, 7, 1).ok());
  ASSERT_TRUE(f.client->Accumulate(g, 7, 1).ok());  // a backup task's late duplicate
  ASSERT_TRUE(f.client->Copy("x", "ones").ok());
  ASSERT_TRUE(f.client->Scale(0.0, "ones").ok());
  std::vector<float> one(6, 1.0f);
  // acc . acc = 6 * 2^2 if portion 1 counted once.
  EXPECT_DOUBLE_EQ(*f.client->Dot("acc", "acc"), 24.0);
  Status stale = f.client->Accumulate(g, 6, 2);
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition) << stale;
}

TEST_P(PsTest, ShardRestoresFromItsCheckpoint) {
  const std::string dir = std::filesystem::temp_directory_path() / ("ps_test_ckpt" + std::to_string(GetParam()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  OptimizerOptions opt;
  opt.name = "adagrad";
  opt.learning_rate = 0.1f;
  std::vector<float> after;
  {
    Fixture f = Start(GetParam(), Range(6), 2, opt, "", dir);
    std::vector<float> g(6, 1.0f);
    PullResult pr;
    after.resize(6);
    ASSERT_TRUE(f.client->Pull(after, &pr).ok());
    ASSERT_TRUE(f.client->PushAsync(g, pr.versions, 1).Wait(Millis(5000)).ok());
    for (auto& s : f.shards) ASSERT_TRUE(s->SaveCheckpoint().ok());
    ASSERT_TRUE(f.client->Pull(after, &pr).ok());
  }
  Fixture f = Start(GetParam(), Range(6), 2, opt, "", dir);  // same initial values: ignored
  std::vector<float> p(6);
  PullResult pr;
  ASSERT_TRUE(f.client->Pull(p, &pr).ok());
  EXPECT_EQ(p, after);
  EXPECT_EQ(pr.versions, (std::vector<uint64_t>{1, 1}));
}

TEST(GrpcTransport, RefusesAMissingOrWrongSecret) {
  Fixture f = Start(true, Range(4), 1, {}, "s3cret");
  std::vector<float> p(4);
  PullResult pr;
  ASSERT_TRUE(f.client->Pull(p, &pr).ok());  // the fixture's client has the secret
  for (const std::string& secret : {std::string(""), std::string("wrong"), std::string("s3cret!")}) {
    TransportOptions to;
    to.secret = secret;
    auto other = MakeGrpcTransport(to);
    ClientOptions co;
    co.retry_for = Millis(0);
    auto c = ParameterClient::Connect(other.get(), f.addresses, *f.map, co);
    ASSERT_TRUE(c.ok());
    Status s = (*c)->Pull(p, &pr);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << "secret '" << secret << "': " << s;
  }
}

TEST(GrpcTransport, OversizedMessagesGetAClearStatus) {
  Fixture f = Start(true, Range(4), 1);  // servers accept at most 1 MiB in this fixture
  auto channel = f.transport->ConnectShard(f.addresses[0]);
  rpc::PushRequest req;
  req.set_gradient(std::string(2 << 20, '\0'));
  rpc::PushReply reply;
  Status s = (*channel)->Push(req, &reply, Millis(5000));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  std::vector<float> p(4);
  PullResult pr;
  ASSERT_TRUE(f.client->Pull(p, &pr).ok());
  EXPECT_EQ(p, Range(4));
}

TEST(GrpcTransport, ServersBindLoopbackAndClientsReconnectAfterARestart) {
  Fixture f = Start(true, Range(4), 1);
  EXPECT_EQ(f.addresses[0].rfind("127.0.0.1:", 0), 0u) << f.addresses[0];
  const std::string address = f.addresses[0];
  f.servers.clear();  // the shard's server goes away...
  std::thread restart([&] {
    std::this_thread::sleep_for(Millis(500));
    auto server = f.transport->ServeShard(address, f.shards[0].get());  // ...and comes back
    ASSERT_TRUE(server.ok()) << server.status();
    f.servers.push_back(std::move(*server));
  });
  std::vector<float> p(4);
  PullResult pr;
  const auto t0 = std::chrono::steady_clock::now();
  Status s = f.client->Pull(p, &pr);  // retried with backoff until the shard is back
  restart.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_GE(std::chrono::steady_clock::now() - t0, Millis(400));
  EXPECT_EQ(p, Range(4));
}

TEST(GrpcTransport, ServesTlsWhenConfigured) {
  const std::string dir = std::filesystem::temp_directory_path() / "ps_test_tls";
  std::filesystem::create_directories(dir);
  const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                          "-addext subjectAltName=DNS:localhost -keyout " + dir + "/key.pem -out " + dir +
                          "/cert.pem >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "openssl is needed (scripts/setup.sh installs it)";
  TransportOptions server_options;
  server_options.tls_cert_file = dir + "/cert.pem";
  server_options.tls_key_file = dir + "/key.pem";
  server_options.secret = "tls-secret";
  auto server_transport = MakeGrpcTransport(server_options);
  std::vector<float> init = Range(4);
  auto shard = ParameterShard::Create(ShardOptions{}, init);
  ASSERT_TRUE(shard.ok());
  auto server = server_transport->ServeShard("127.0.0.1:0", shard->get());
  ASSERT_TRUE(server.ok()) << server.status();
  const ShardMap map(4, 1);
  std::vector<float> p(4);
  PullResult pr;
  // A TLS client that trusts the certificate gets through.
  TransportOptions tls_client;
  tls_client.tls_root_file = dir + "/cert.pem";
  tls_client.tls_target_name = "localhost";
  tls_client.secret = "tls-secret";
  auto t1 = MakeGrpcTransport(tls_client);
  ClientOptions co;
  co.retry_for = Millis(0);
  auto c1 = ParameterClient::Connect(t1.get(), {(*server)->address()}, map, co);
  ASSERT_TRUE((*c1)->Pull(p, &pr).ok());
  EXPECT_EQ(p, init);
  // A plaintext client cannot talk to it.
  TransportOptions plain;
  plain.secret = "tls-secret";
  auto t2 = MakeGrpcTransport(plain);
  auto c2 = ParameterClient::Connect(t2.get(), {(*server)->address()}, map, co);
  EXPECT_FALSE((*c2)->Pull(p, &pr).ok());
}

// A shard bounds the norm of its constrained blocks after every update, and only those blocks.
TEST(ParameterShard, KeepsNormBlocksBounded) {
  ShardOptions so;
  so.optimizer.learning_rate = 1.0f;
  so.norm_blocks = {{2, 3, 2}};  // [2, 5) and [5, 8)
  so.max_block_norm = 1.0f;
  std::vector<float> initial(10, 0.1f);
  auto shard = ParameterShard::Create(so, initial);
  ASSERT_TRUE(shard.ok()) << shard.status();
  rpc::PushRequest req;
  std::vector<float> g(10, -2.0f);  // SGD: every value grows to 2.1
  req.set_gradient(FloatsToBytes(g));
  rpc::PushReply reply;
  ASSERT_TRUE((*shard)->Push(req, &reply).ok());
  rpc::PullRequest preq;
  rpc::PullReply prep;
  ASSERT_TRUE((*shard)->Pull(preq, &prep).ok());
  std::vector<float> v;
  ASSERT_TRUE(BytesToFloats(prep.values(), 10, &v).ok());
  EXPECT_FLOAT_EQ(v[0], 2.1f);  // outside the blocks: untouched
  EXPECT_FLOAT_EQ(v[9], 2.1f);
  for (int b = 0; b < 2; ++b) {
    double sq = 0;
    for (int i = 0; i < 3; ++i) sq += double(v[2 + 3 * b + i]) * v[2 + 3 * b + i];
    EXPECT_NEAR(std::sqrt(sq), 1.0, 1e-5);
  }
  so.norm_blocks = {{8, 3, 1}};  // runs past the end of the range
  EXPECT_EQ(ParameterShard::Create(so, initial).status().code(), absl::StatusCode::kInvalidArgument);
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

TEST(PendingOp, WaitHonoursItsDeadline) {
  Fixture f = Start(false, Range(4), 1);
  f.servers.clear();  // nothing serves the shard: the push retries for 3 s
  std::vector<float> g(4, 1.0f);
  PendingOp op = f.client->PushAsync(g, {0}, 1);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(op.Wait(Millis(200)).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, Millis(1000));
  EXPECT_EQ(op.Wait(Millis(10000)).code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace distbelief
