// Behavioural tests of the parameter server, run identically over the in-process and the gRPC
// transport: pull and push with versions and staleness, refusal of malformed pushes with the
// shard untouched, Sandblaster's vector operations and first-result-wins accumulation, shard
// checkpoints. gRPC-only: the shared secret, oversized messages, reconnecting to a restarted shard.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <thread>
#include <tuple>

#include "distbelief/ps/parameter_client.h"
#include "distbelief/ps/parameter_shard.h"
#include "distbelief/transport/grpc/tensor_socket.h"
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

// How the fixture's client reaches its shards.
enum Mode { kInproc = 0, kGrpc = 1, kSocket = 2 };  // kSocket: gRPC with the tensor socket

Fixture Start(int mode, const std::vector<float>& initial, int num_shards, OptimizerOptions opt = {},
              const std::string& secret = "", const std::string& ckpt_dir = "") {
  Fixture f;
  TransportOptions to;
  to.secret = secret;
  to.max_message_bytes = 1 << 20;
  to.tensor_socket = mode == kSocket;
  const bool grpc = mode != kInproc;
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

class PsTest : public ::testing::TestWithParam<int> {};
INSTANTIATE_TEST_SUITE_P(Transports, PsTest, ::testing::Values(kInproc, kGrpc, kSocket), [](const auto& info) {
  return std::string(info.param == kInproc ? "inproc" : info.param == kGrpc ? "grpc" : "grpc_tensor_socket");
});

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

// A flat vector in pieces whose cuts do not fall on the shards' cuts (11 floats over 3 shards:
// 0-3, 4-7, 8-10; pieces 0-1, 2-6, 7-10): pulls land in the pieces, pushes read from them, and a
// push's gradient is copied before PushAsync returns, so overwriting it at once changes nothing.
TEST_P(PsTest, PullsAndPushesWorkOnPiecesAndPushesCopyAtOnce) {
  OptimizerOptions opt;
  opt.learning_rate = 0.5f;
  Fixture f = Start(GetParam(), Range(11), 3, opt);
  std::vector<float> a(2), b(5), c(4);
  PullResult pr;
  ASSERT_TRUE(f.client->Pull(std::vector<std::span<float>>{a, b, c}, &pr).ok());
  std::vector<float> joined = a;
  joined.insert(joined.end(), b.begin(), b.end());
  joined.insert(joined.end(), c.begin(), c.end());
  EXPECT_EQ(joined, Range(11));
  std::vector<float> ga(2), gb(5), gc(4);
  for (int i = 0; i < 11; ++i) (i < 2 ? ga[i] : i < 7 ? gb[i - 2] : gc[i - 7]) = float(i * i);
  PendingOp op = f.client->PushAsync(std::vector<std::span<const float>>{ga, gb, gc}, pr.versions, 1);
  std::fill(gb.begin(), gb.end(), std::numeric_limits<float>::quiet_NaN());  // the caller reuses it at once
  ASSERT_TRUE(op.Wait(Millis(5000)).ok());
  std::vector<float> p(11);
  ASSERT_TRUE(f.client->Pull(p, &pr).ok());
  for (int i = 0; i < 11; ++i) EXPECT_FLOAT_EQ(p[i], 0.5f * i - 0.5f * i * i) << i;  // w - lr * g, g = i^2
  // Pieces that do not add up to the model are refused; a NaN is reported at its flat index.
  EXPECT_EQ(f.client->Pull(std::vector<std::span<float>>{a, b}, &pr).code(), absl::StatusCode::kInvalidArgument);
  Status s = f.client->PushAsync(std::vector<std::span<const float>>{ga, gb, gc}, pr.versions, 2).Wait(Millis(5000));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("at index 2;"), std::string::npos) << s;
  ASSERT_TRUE(f.client->Pull(p, &pr).ok());
  EXPECT_EQ(pr.versions, (std::vector<uint64_t>{1, 1, 1}));  // nothing applied anywhere
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
  Fixture f = Start(kSocket, Range(4), 1, {}, "s3cret");
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
  Fixture f = Start(kGrpc, Range(4), 1);  // servers accept at most 1 MiB in this fixture
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
  Fixture f = Start(kSocket, Range(4), 1);  // the restarted shard's tensor socket has a new port
  EXPECT_EQ(f.addresses[0].rfind("127.0.0.1:", 0), 0u) << f.addresses[0];
  const std::string address = f.addresses[0];
  std::vector<float> p(4);
  PullResult pr;
  ASSERT_TRUE(f.client->Pull(p, &pr).ok());  // the client has found the shard's data port
  f.servers.clear();  // the shard's server goes away...
  std::thread restart([&] {
    std::this_thread::sleep_for(Millis(500));
    auto server = f.transport->ServeShard(address, f.shards[0].get());  // ...and comes back
    ASSERT_TRUE(server.ok()) << server.status();
    f.servers.push_back(std::move(*server));
  });
  const auto t0 = std::chrono::steady_clock::now();
  Status s = f.client->Pull(p, &pr);  // retried with backoff until the shard is back
  restart.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_GE(std::chrono::steady_clock::now() - t0, Millis(400));
  EXPECT_EQ(p, Range(4));
}

// The tensor socket's own checks, byte by byte: a wrong secret, frames it cannot take, pushes the
// shard refuses, a push cut off in the middle. Each gets its status; the shard never changes.
int ConnectRaw(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  char hello[40], mac[32] = {};
  EXPECT_EQ(recv(fd, hello, sizeof(hello), MSG_WAITALL), 40);
  EXPECT_EQ(std::string(hello, 8), "DBTS0001");
  EXPECT_EQ(send(fd, mac, sizeof(mac), 0), 32);  // no secret configured: any MAC is accepted
  tensor_socket::ReplyHeader ok;
  EXPECT_EQ(recv(fd, &ok, sizeof(ok), MSG_WAITALL), 48);
  EXPECT_EQ(ok.code, 0u);
  return fd;
}

// Sends a request, returns the reply's code and message ("" and code 99 if the server closed).
std::pair<uint32_t, std::string> Exchange(int fd, const tensor_socket::RequestHeader& h, const std::string& payload) {
  std::string out(reinterpret_cast<const char*>(&h), sizeof(h));
  out += payload;
  send(fd, out.data(), out.size(), MSG_NOSIGNAL);
  tensor_socket::ReplyHeader r;
  if (recv(fd, &r, sizeof(r), MSG_WAITALL) != sizeof(r)) return {99, ""};
  std::string message(r.code ? r.payload : 0, '\0');
  if (!message.empty()) recv(fd, message.data(), message.size(), MSG_WAITALL);
  return {r.code, message};
}

TEST(TensorSocket, RefusesBadSecretsAndMalformedRequestsAndKeepsTheShard) {
  Fixture f = Start(kSocket, Range(4), 1);
  rpc::ShardInfoReply info;
  auto channel = f.transport->ConnectShard(f.addresses[0]);
  ASSERT_TRUE((*channel)->Info(&info, Millis(5000)).ok());
  const int port = static_cast<int>(info.data_port());
  ASSERT_GT(port, 0);
  {  // a wrong secret is refused (a secret-holding shard on its own port)
    Fixture g = Start(kSocket, Range(4), 1, {}, "s3cret");
    auto gc = g.transport->ConnectShard(g.addresses[0]);
    rpc::ShardInfoReply gi;
    ASSERT_TRUE((*gc)->Info(&gi, Millis(5000)).ok());
    TensorSocketClient wrong("127.0.0.1", static_cast<int>(gi.data_port()), "wrong", 1 << 20);
    rpc::PullReply pr;
    EXPECT_EQ(wrong.Pull(rpc::PullRequest(), &pr, Millis(5000)).code(), absl::StatusCode::kUnauthenticated);
    TensorSocketClient right("127.0.0.1", static_cast<int>(gi.data_port()), "s3cret", 1 << 20);
    EXPECT_TRUE(right.Pull(rpc::PullRequest(), &pr, Millis(5000)).ok());
    EXPECT_EQ(pr.values().size(), 16u);
  }
  using tensor_socket::RequestHeader;
  RequestHeader push;
  push.op = tensor_socket::kPush;
  const auto floats = [](std::vector<float> v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4); };
  int fd = ConnectRaw(port);
  push.payload = 12;  // 3 floats for a range of 4: refused by the shard, connection kept
  auto [code, message] = Exchange(fd, push, floats({1, 1, 1}));
  EXPECT_EQ(code, uint32_t(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(message.find("expected 4"), std::string::npos) << message;
  push.payload = 16;
  std::tie(code, message) = Exchange(fd, push, floats({1, std::numeric_limits<float>::quiet_NaN(), 1, 1}));
  EXPECT_EQ(code, uint32_t(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(message.find("NaN or Inf"), std::string::npos) << message;
  RequestHeader bad = push;
  bad.payload = 2 << 20;  // over the fixture's 1 MiB limit: refused before reading, then closed
  std::tie(code, message) = Exchange(fd, bad, "");
  EXPECT_EQ(code, uint32_t(absl::StatusCode::kResourceExhausted)) << message;
  EXPECT_EQ(Exchange(fd, push, floats({1, 1, 1, 1})).first, 99u);  // closed
  close(fd);
  fd = ConnectRaw(port);
  bad = push;
  bad.magic = 0x12345678;
  std::tie(code, message) = Exchange(fd, bad, "");
  EXPECT_EQ(code, uint32_t(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(message.find("bad magic"), std::string::npos) << message;
  close(fd);
  fd = ConnectRaw(port);  // a push cut off after 8 of its 16 bytes: nothing applied
  std::string half(reinterpret_cast<const char*>(&push), sizeof(push));
  half += floats({1, 1});
  send(fd, half.data(), half.size(), MSG_NOSIGNAL);
  close(fd);
  std::this_thread::sleep_for(Millis(100));
  std::vector<float> p(4);
  PullResult pr;
  ASSERT_TRUE(f.client->Pull(p, &pr).ok());
  EXPECT_EQ(p, Range(4));
  EXPECT_EQ(pr.versions, (std::vector<uint64_t>{0}));
  // And a well-formed push through the same port is applied.
  fd = ConnectRaw(port);
  EXPECT_EQ(Exchange(fd, push, floats({1, 1, 1, 1})).first, 0u);
  close(fd);
  ASSERT_TRUE(f.client->Pull(p, &pr).ok());
  EXPECT_EQ(pr.versions, (std::vector<uint64_t>{1}));
}

// A data port nobody listens on: the client says so (the gRPC channel then falls back to gRPC)
// within its 2 s connect bound, not after the call's whole deadline.
TEST(TensorSocket, AnUnreachablePortIsReportedQuickly) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);  // a free port, closed
  TensorSocketClient client("127.0.0.1", ntohs(a.sin_port), "", 1 << 20);
  rpc::PullReply reply;
  const auto t0 = std::chrono::steady_clock::now();
  Status s = client.Pull(rpc::PullRequest(), &reply, Millis(30000));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find(kCannotConnect), std::string::npos) << s;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, Millis(3000));
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
  Fixture f = Start(kInproc, Range(4), 1);
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
