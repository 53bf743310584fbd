// The gRPC transport and its tensor socket, byte by byte where it matters: the shared secret,
// oversized messages, loopback binding and reconnecting to a restarted shard, malformed frames,
// an unreachable data port, TLS; and the fault-injecting transport that tests use.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <limits>
#include <thread>
#include <tuple>

#include "distbelief/ps/parameter_client.h"
#include "distbelief/ps/parameter_shard.h"
#include "distbelief/transport/fault_injection.h"
#include "distbelief/transport/grpc/tensor_socket.h"
#include "distbelief/transport/transport.h"

namespace distbelief {
namespace {

std::vector<float> Range(int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = 0.5f * i;
  return v;
}

std::unique_ptr<ParameterClient> ClientOf(Transport* t, const std::string& address, int64_t size,
                                          Millis retry_for = Millis(3000)) {
  auto channels = ConnectShards(t, {address});
  EXPECT_TRUE(channels.ok());
  ClientOptions co;
  co.retry_for = retry_for;
  auto c = ParameterClient::Create(std::move(*channels), ShardMap(size, 1), co);
  EXPECT_TRUE(c.ok());
  return std::move(*c);
}

// One shard of `initial` served over gRPC, and a client of it.
struct Served {
  std::unique_ptr<Transport> transport;
  std::unique_ptr<ParameterShard> shard;
  std::unique_ptr<Transport::Server> server;
  std::unique_ptr<ParameterClient> client;
  std::string address() const { return server->address(); }
};

Served Serve(const std::vector<float>& initial, DataPlane plane, const std::string& secret = "",
             TransportOptions to = {}) {
  Served s;
  to.kind = TransportKind::kGrpc;
  to.secret = secret;
  to.max_message_bytes = 1 << 20;
  to.data_plane = plane;
  s.transport = MakeTransport(to);
  auto shard = ParameterShard::Create(ShardOptions{}, initial);
  EXPECT_TRUE(shard.ok());
  s.shard = std::move(*shard);
  auto server = s.transport->ServeShard("127.0.0.1:0", s.shard.get());
  EXPECT_TRUE(server.ok()) << server.status();
  s.server = std::move(*server);
  s.client = ClientOf(s.transport.get(), s.address(), static_cast<int64_t>(initial.size()));
  return s;
}

TEST(GrpcTransport, RefusesAMissingOrWrongSecret) {
  for (DataPlane plane : {DataPlane::kSocket, DataPlane::kGrpc}) {
    Served f = Serve(Range(4), plane, "s3cret");
    std::vector<float> p(4);
    ASSERT_TRUE(f.client->Pull(p).ok());  // the fixture's client has the secret
    for (const std::string& secret : {std::string(""), std::string("wrong"), std::string("s3cret!")}) {
      TransportOptions to;
      to.secret = secret;
      to.data_plane = plane;
      auto other = MakeGrpcTransport(to);
      auto c = ClientOf(other.get(), f.address(), 4, Millis(0));
      Status s = c->Pull(p).status();
      EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << "secret '" << secret << "': " << s;
      std::vector<float> g(4, 1.0f);
      EXPECT_EQ(c->PushAsync(g, {0}, 1).Wait(Millis(5000)).status().code(), absl::StatusCode::kUnauthenticated);
    }
    EXPECT_EQ(f.shard->version(), 0u);
  }
}

TEST(GrpcTransport, OversizedMessagesGetAClearStatus) {
  Served f = Serve(Range(4), DataPlane::kGrpc);  // servers accept at most 1 MiB in this fixture
  auto channel = f.transport->ConnectShard(f.address());
  std::vector<float> big((2 << 20) / 4, 1.0f);
  PushReply reply;
  Status s = (*channel)->Push({}, big, &reply, Millis(5000));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  std::vector<float> p(4);
  ASSERT_TRUE(f.client->Pull(p).ok());
  EXPECT_EQ(p, Range(4));
}

TEST(GrpcTransport, ServersBindLoopbackAndClientsReconnectAfterARestart) {
  Served f = Serve(Range(4), DataPlane::kSocket);  // the restarted shard's tensor socket has a new port
  EXPECT_EQ(f.address().rfind("127.0.0.1:", 0), 0u) << f.address();
  const std::string address = f.address();
  std::vector<float> p(4);
  ASSERT_TRUE(f.client->Pull(p).ok());  // the client has found the shard's data port
  f.server.reset();  // the shard's server goes away...
  std::thread restart([&] {
    std::this_thread::sleep_for(Millis(500));
    auto server = f.transport->ServeShard(address, f.shard.get());  // ...and comes back
    ASSERT_TRUE(server.ok()) << server.status();
    f.server = std::move(*server);
  });
  const auto t0 = std::chrono::steady_clock::now();
  Status s = f.client->Pull(p).status();  // retried with backoff until the shard is back
  restart.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_GE(std::chrono::steady_clock::now() - t0, Millis(400));
  EXPECT_EQ(p, Range(4));
}

// A TCP connection to a loopback port, nothing sent (-1 if it fails).
int Dial(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) return fd;
  close(fd);
  return -1;
}

// A connection past the handshake (the server has no secret, so any MAC passes).
int ConnectRaw(int port) {
  const int fd = Dial(port);
  EXPECT_GE(fd, 0);
  char hello[40], mac[32] = {};
  EXPECT_EQ(recv(fd, hello, sizeof(hello), MSG_WAITALL), 40);
  EXPECT_EQ(std::string(hello, 8), "DBTS0003");
  EXPECT_EQ(send(fd, mac, sizeof(mac), 0), 32);  // no secret configured: any MAC is accepted
  tensor_socket::ReplyHeader ok;
  EXPECT_EQ(recv(fd, &ok, sizeof(ok), MSG_WAITALL), 64);
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

// The tensor socket's own checks, byte by byte: a wrong secret, frames it cannot take, pushes the
// shard refuses, a push cut off in the middle. Each gets its status; the shard never changes.
TEST(TensorSocket, RefusesBadSecretsAndMalformedRequestsAndKeepsTheShard) {
  auto shard = ParameterShard::Create(ShardOptions{}, Range(4));
  ASSERT_TRUE(shard.ok());
  auto server = TensorSocketServer::Start("127.0.0.1", shard->get(), "", 1 << 20);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  ASSERT_GT(port, 0);
  {  // a wrong secret is refused (a secret-holding shard on its own port)
    auto g = ParameterShard::Create(ShardOptions{}, Range(4));
    auto gs = TensorSocketServer::Start("127.0.0.1", g->get(), "s3cret", 1 << 20);
    ASSERT_TRUE(gs.ok());
    std::vector<float> v(4);
    const std::span<float> out(v);
    PullReply pr;
    TensorSocketClient wrong("127.0.0.1", (*gs)->port(), "wrong", 1 << 20);
    EXPECT_EQ(wrong.Pull(-1, std::span<const std::span<float>>(&out, 1), &pr, Millis(5000)).code(),
              absl::StatusCode::kUnauthenticated);
    TensorSocketClient right("127.0.0.1", (*gs)->port(), "s3cret", 1 << 20);
    EXPECT_TRUE(right.Pull(-1, std::span<const std::span<float>>(&out, 1), &pr, Millis(5000)).ok());
    EXPECT_EQ(v, Range(4));
  }
  using tensor_socket::RequestHeader;
  RequestHeader push;
  push.op = tensor_socket::kPush;
  const auto floats = [](std::vector<float> v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4); };
  int fd = ConnectRaw(port);
  push.payload = 12;  // 3 floats for a range of 4: refused by the shard, connection kept
  auto [code, message] = Exchange(fd, push, floats({1, 1, 1}));
  EXPECT_EQ(code, uint32_t(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(message.find("holds 4"), std::string::npos) << message;
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
  EXPECT_EQ((*shard)->version(), 0u);
  // And a well-formed push through the same port is applied.
  fd = ConnectRaw(port);
  EXPECT_EQ(Exchange(fd, push, floats({1, 1, 1, 1})).first, 0u);
  close(fd);
  EXPECT_EQ((*shard)->version(), 1u);
}

// A data port nobody listens on: the client says so (the gRPC channel then falls back to gRPC)
// within its 2 s connect bound, not after the call's whole deadline.
// Raises this process's open-file limit to its hard limit; returns the new limit.
rlim_t RaiseOpenFileLimit() {
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = files.rlim_max;
  setrlimit(RLIMIT_NOFILE, &files);
  return files.rlim_cur;
}

// Resource bounds: 1,000 connections opened and abandoned (no handshake, or authenticated and
// idle) neither exhaust the shard nor lock out a correct client, which is still served on the
// socket itself; abandoned handshakes are evicted at the cap and time out; idle ones time out.
TEST(TensorSocket, AbandonedConnectionsLeaveCorrectClientsServed) {
  if (const rlim_t limit = RaiseOpenFileLimit(); limit < 2600)
    GTEST_SKIP() << "needs 2,600 open files, the limit is " << limit;
  auto shard = ParameterShard::Create(ShardOptions{}, Range(4));
  ASSERT_TRUE(shard.ok());
  TensorSocketLimits limits;
  limits.max_connections = 64;
  limits.handshake_timeout = Millis(1500);
  limits.idle_timeout = Millis(1500);
  auto server = TensorSocketServer::Start("127.0.0.1", shard->get(), "", 1 << 20, limits);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  std::vector<int> abandoned;
  for (int i = 0; i < 10; ++i) abandoned.push_back(ConnectRaw(port));  // authenticated, then idle
  for (int i = 0; i < 990; ++i) {  // connected, never a handshake
    abandoned.push_back(Dial(port));
    ASSERT_GE(abandoned.back(), 0);
  }
  std::this_thread::sleep_for(Millis(200));
  EXPECT_LE((*server)->connections(), limits.max_connections);
  TensorSocketClient client("127.0.0.1", port, "", 1 << 20);
  std::vector<float> v(4), g(4, 1.0f);
  const std::span<float> out(v);
  for (int i = 0; i < 200; ++i) {  // each within its 2 s, on the socket itself (no gRPC to fall back to)
    PullReply pr;
    PushReply pu;
    ASSERT_TRUE(client.Pull(0, std::span<const std::span<float>>(&out, 1), &pr, Millis(2000)).ok()) << i;
    ASSERT_TRUE(client.Push({}, g, &pu, Millis(2000)).ok()) << i;
  }
  EXPECT_EQ((*shard)->version(), 200u);
  // Every abandoned connection is closed by the server within its timeouts.
  std::this_thread::sleep_for(Millis(2500));
  EXPECT_LE((*server)->connections(), 1);  // the client's own, if its idle connection is still open
  for (int fd : abandoned) close(fd);
}

// True once the peer has closed `fd` (whatever it sent before is read and dropped).
bool ClosedByPeer(int fd) {
  char buf[4096];
  while (true) {
    const ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) continue;
    return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }
}

// The same for the gRPC port (all calls on gRPC here): 1,000 connections opened and abandoned,
// half silent, half stopping right after the HTTP/2 preface, leave a correct client served at
// full speed, and the server closes every one of them within its handshake and idle timeouts.
TEST(GrpcTransport, AbandonedConnectionsLeaveCorrectClientsServedAtFullSpeed) {
  if (const rlim_t limit = RaiseOpenFileLimit(); limit < 2600)
    GTEST_SKIP() << "needs 2,600 open files, the limit is " << limit;
  TransportOptions to;
  to.handshake_timeout = Millis(1500);
  to.idle_timeout = Millis(1500);
  Served f = Serve(Range(4), DataPlane::kGrpc, "", to);
  std::vector<float> p(4), g(4, 1.0f);
  auto round = [&] {  // 200 pulls and pushes, each within 2 s; their time
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 200; ++i) {
      EXPECT_TRUE(f.client->Pull(p).ok()) << i;
      EXPECT_TRUE(f.client->PushAsync(g, {0}, 1).Wait(Millis(2000)).ok()) << i;
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const double before = round();
  const int port = std::stoi(f.address().substr(f.address().rfind(':') + 1));
  static const char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  std::vector<int> abandoned;
  for (int i = 0; i < 1000; ++i) {
    abandoned.push_back(Dial(port));
    ASSERT_GE(abandoned.back(), 0) << i;
    if (i % 2) {
      ASSERT_EQ(send(abandoned.back(), kPreface, sizeof(kPreface) - 1, 0), ssize_t(sizeof(kPreface) - 1));
    }
  }
  // Abandoned: they sit there while the client works (the server has taken them in by now; under
  // the sanitizers taking in 1,000 connections alone takes a few hundred ms).
  std::this_thread::sleep_for(Millis(500));
  const double after = round();
  // The speed bound is checked in the optimized build only: under AddressSanitizer taking in the
  // 1,000 connections overlaps the round on a busy second core (0.78 s against a bound of 0.66 s
  // in one CI run); the sanitizer build still runs every call and the closing checks below.
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  EXPECT_LT(after, 2 * before + 0.2) << "200 pulls and pushes took " << before << " s before, " << after
                                      << " s beside 1,000 abandoned connections";
#endif
  (void)before;
  (void)after;
  EXPECT_EQ(f.shard->version(), 400u);
  std::this_thread::sleep_for(Millis(3500));
  int open = 0;
  for (int fd : abandoned) open += !ClosedByPeer(fd);
  EXPECT_EQ(open, 0) << "of 1,000 abandoned connections still open after the timeouts";
  for (int fd : abandoned) close(fd);
}

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
  std::vector<float> v(4);
  const std::span<float> out(v);
  PullReply reply;
  const auto t0 = std::chrono::steady_clock::now();
  Status s = client.Pull(-1, std::span<const std::span<float>>(&out, 1), &reply, Millis(30000));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find(kCannotConnect), std::string::npos) << s;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, Millis(3000));
}

// A self-signed certificate for `name` in dir/name.pem and dir/name.key.
void MakeCertificate(const std::string& dir, const std::string& name) {
  std::filesystem::create_directories(dir);
  const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=" + name +
                          " -addext subjectAltName=DNS:" + name + " -keyout " + dir + "/" + name + ".key -out " + dir +
                          "/" + name + ".pem >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "openssl is needed (scripts/setup.sh installs it)";
}

// A man in the middle on loopback: forwards one connection to `port` both ways and records what
// the client sent; with corrupt_at >= 0, flips the bits of that byte of the client's stream.
class RecordingProxy {
 public:
  explicit RecordingProxy(int port, int64_t corrupt_at = -1) : target_(port), corrupt_at_(corrupt_at) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    socklen_t len = sizeof(a);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    listen(listen_fd_, 4);
    thread_ = std::thread([this] { Run(); });
  }
  ~RecordingProxy() {
    stop_ = true;
    shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    close(listen_fd_);
  }
  int port() const { return port_; }
  std::string sent() {
    std::lock_guard<std::mutex> lock(mu_);
    return sent_;
  }

 private:
  void Run() {
    const int c = accept(listen_fd_, nullptr, nullptr);
    if (c < 0) return;
    const int s = Dial(target_);
    pollfd p[2] = {{c, POLLIN, 0}, {s, POLLIN, 0}};
    char buf[1 << 16];
    while (!stop_) {
      if (poll(p, 2, 50) <= 0) continue;
      if (p[0].revents) {
        const ssize_t n = recv(c, buf, sizeof(buf), 0);
        if (n <= 0) break;
        std::lock_guard<std::mutex> lock(mu_);
        const int64_t at = corrupt_at_ - static_cast<int64_t>(sent_.size());
        sent_.append(buf, n);
        if (at >= 0 && at < n) buf[at] = static_cast<char>(~buf[at]);
        send(s, buf, n, MSG_NOSIGNAL);
      }
      if (p[1].revents) {
        const ssize_t n = recv(s, buf, sizeof(buf), 0);
        if (n <= 0) break;
        send(c, buf, n, MSG_NOSIGNAL);
      }
    }
    close(c);
    close(s);
  }
  int target_, port_ = 0, listen_fd_ = -1;
  int64_t corrupt_at_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::string sent_;
};

// Under TLS the tensor socket's bytes are encrypted (a recognizable gradient shows in the clear
// without TLS and not with it), a captured push replayed on a new connection is not applied, and
// a client that does not trust the server's certificate is refused.
TEST(TensorSocket, UnderTlsEncryptsAndRefusesAReplayedPush) {
  const std::string dir = std::filesystem::temp_directory_path() / "tensor_socket_tls";
  MakeCertificate(dir, "localhost");
  MakeCertificate(dir, "impostor");
  auto server_tls = TlsContext::ForServer(dir + "/localhost.pem", dir + "/localhost.key");
  ASSERT_TRUE(server_tls.ok()) << server_tls.status();
  auto client_tls = TlsContext::ForClient(dir + "/localhost.pem", "localhost");
  ASSERT_TRUE(client_tls.ok()) << client_tls.status();
  EXPECT_EQ(TlsContext::ForServer(dir + "/localhost.pem", dir + "/impostor.key").status().code(),
            absl::StatusCode::kInvalidArgument);  // a key that does not match
  EXPECT_EQ(TlsContext::ForClient(dir + "/missing.pem", "").status().code(), absl::StatusCode::kInvalidArgument);

  const std::vector<float> gradient(4096, 1234.5f);
  const std::string clear(reinterpret_cast<const char*>(gradient.data()), 64);  // 16 floats as they are in memory
  for (bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "TLS" : "plain");
    auto shard = ParameterShard::Create(ShardOptions{}, std::vector<float>(gradient.size(), 0.0f));
    ASSERT_TRUE(shard.ok());
    auto server = TensorSocketServer::Start("127.0.0.1", shard->get(), "s3cret", 1 << 20, {},
                                            tls ? *server_tls : nullptr);
    ASSERT_TRUE(server.ok()) << server.status();
    RecordingProxy proxy((*server)->port());
    TensorSocketClient client("127.0.0.1", proxy.port(), "s3cret", 1 << 20, tls ? *client_tls : nullptr);
    PushReply reply;
    ASSERT_TRUE(client.Push({0, 0, 0, 77, 1, 0}, gradient, &reply, Millis(5000)).ok());
    EXPECT_EQ((*shard)->version(), 1u);
    const std::string captured = proxy.sent();
    ASSERT_GT(captured.size(), gradient.size() * sizeof(float));
    EXPECT_EQ(captured.find(clear) != std::string::npos, !tls) << "the gradient's bytes on the wire";
    // The captured bytes, replayed on a new connection, apply nothing: the server's fresh nonce
    // (plain) or fresh keys (TLS) make them worthless.
    const int fd = Dial((*server)->port());
    send(fd, captured.data(), captured.size(), MSG_NOSIGNAL);
    char sink[4096];
    pollfd p{fd, POLLIN, 0};
    while (poll(&p, 1, 3000) > 0 && recv(fd, sink, sizeof(sink), 0) > 0) {
    }
    close(fd);
    EXPECT_EQ((*shard)->version(), 1u) << "a replayed push was applied";
    // A byte of the push altered in flight (past the handshakes, inside the 16 KiB gradient):
    // without TLS the shard applies a wrong gradient; with TLS the record fails its tag, the
    // connection closes and nothing is applied.
    {
      RecordingProxy mitm((*server)->port(), /*corrupt_at=*/10000);
      TensorSocketClient victim("127.0.0.1", mitm.port(), "s3cret", 1 << 20, tls ? *client_tls : nullptr);
      const Status pushed = victim.Push({0, 0, 0, 77, 2, 0}, gradient, &reply, Millis(5000));
      EXPECT_EQ(pushed.ok(), !tls) << pushed;
      EXPECT_EQ((*shard)->version(), tls ? 1u : 2u);
    }
  }
  {  // a client that trusts another certificate is refused before any byte of the protocol
    auto shard = ParameterShard::Create(ShardOptions{}, std::vector<float>(4, 0.0f));
    auto server = TensorSocketServer::Start("127.0.0.1", shard->get(), "s3cret", 1 << 20, {}, *server_tls);
    ASSERT_TRUE(server.ok());
    auto wrong_root = TlsContext::ForClient(dir + "/impostor.pem", "localhost");
    ASSERT_TRUE(wrong_root.ok());
    auto wrong_name = TlsContext::ForClient(dir + "/localhost.pem", "elsewhere");
    ASSERT_TRUE(wrong_name.ok());
    std::vector<float> g(4, 1.0f);
    PushReply reply;
    for (const auto& ctx : {*wrong_root, *wrong_name}) {
      TensorSocketClient client("127.0.0.1", (*server)->port(), "s3cret", 1 << 20, ctx);
      EXPECT_EQ(client.Push({}, g, &reply, Millis(5000)).code(), absl::StatusCode::kUnauthenticated);
    }
    TensorSocketClient plain("127.0.0.1", (*server)->port(), "s3cret", 1 << 20);
    EXPECT_FALSE(plain.Push({}, g, &reply, Millis(3000)).ok());
    EXPECT_EQ((*shard)->version(), 0u);
  }
}

TEST(GrpcTransport, ServesTlsWhenConfigured) {
  const std::string dir = std::filesystem::temp_directory_path() / "ps_test_tls";
  std::filesystem::create_directories(dir);
  const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                          "-addext subjectAltName=DNS:localhost -keyout " + dir + "/key.pem -out " + dir +
                          "/cert.pem >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "openssl is needed (scripts/setup.sh installs it)";
  TransportOptions server_options;
  server_options.kind = TransportKind::kGrpc;
  server_options.tls_cert_file = dir + "/cert.pem";
  server_options.tls_key_file = dir + "/key.pem";
  server_options.secret = "tls-secret";
  auto server_transport = MakeGrpcTransport(server_options);
  std::vector<float> init = Range(4);
  auto shard = ParameterShard::Create(ShardOptions{}, init);
  ASSERT_TRUE(shard.ok());
  auto server = server_transport->ServeShard("127.0.0.1:0", shard->get());
  ASSERT_TRUE(server.ok()) << server.status();
  std::vector<float> p(4);
  // A TLS client that trusts the certificate gets through.
  TransportOptions tls_client;
  tls_client.tls_root_file = dir + "/cert.pem";
  tls_client.tls_target_name = "localhost";
  tls_client.secret = "tls-secret";
  auto t1 = MakeGrpcTransport(tls_client);
  auto c1 = ClientOf(t1.get(), (*server)->address(), 4, Millis(0));
  ASSERT_TRUE(c1->Pull(p).ok());
  EXPECT_EQ(p, init);
  // A plaintext client cannot talk to it.
  TransportOptions plain;
  plain.secret = "tls-secret";
  auto t2 = MakeGrpcTransport(plain);
  auto c2 = ClientOf(t2.get(), (*server)->address(), 4, Millis(0));
  EXPECT_FALSE(c2->Pull(p).ok());
}

// The fault-injecting transport does what each fault says, to the calls it names, and no more.
TEST(FaultInjection, FailsDropsDelaysAndDuplicatesTheCallsItIsTold) {
  FaultInjectingTransport t(MakeInprocTransport({}));
  auto shard = ParameterShard::Create(ShardOptions{}, Range(2));
  auto server = t.ServeShard("shard", shard->get());
  ASSERT_TRUE(server.ok());
  auto ch = t.ConnectShard("shard");
  ASSERT_TRUE(ch.ok());
  std::vector<float> g(2, 1.0f);
  PushReply reply;
  auto push = [&] { return (*ch)->Push({}, g, &reply, Millis(1000)); };
  // A dead peer: every call fails, nothing reaches the shard.
  Fault dead;
  dead.address = "shard";
  dead.times = 2;
  t.Inject(dead);
  EXPECT_EQ(push().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(push().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*shard)->version(), 0u);
  ASSERT_TRUE(push().ok());  // its two faults are spent
  EXPECT_EQ((*shard)->version(), 1u);
  t.Clear();
  // A lost request: the shard never sees it. A lost reply: it does, the caller is not told.
  Fault lost;
  lost.kind = Fault::Kind::kDropRequest;
  lost.times = 1;
  t.Inject(lost);
  EXPECT_EQ(push().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ((*shard)->version(), 1u);
  t.Clear();
  lost.kind = Fault::Kind::kDropReply;
  t.Inject(lost);
  EXPECT_EQ(push().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ((*shard)->version(), 2u);
  t.Clear();
  // A duplicated request arrives twice; a delayed one, late.
  Fault twice;
  twice.kind = Fault::Kind::kDuplicate;
  twice.call = CallKind::kPush;
  twice.times = 1;
  t.Inject(twice);
  ASSERT_TRUE(push().ok());
  EXPECT_EQ((*shard)->version(), 4u);
  t.Clear();
  Fault late;
  late.kind = Fault::Kind::kDelay;
  late.delay = Millis(150);
  late.after = 1;  // the first call goes through untouched
  t.Inject(late);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(push().ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, Millis(100));
  t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(push().ok());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, Millis(150));
  EXPECT_EQ(t.faults_injected(), 6);
  // Pulls are untouched by a push-only rule.
  t.Clear();
  t.Inject(twice);
  std::vector<float> v(2);
  const std::span<float> out(v);
  PullReply pulled;
  ASSERT_TRUE((*ch)->Pull(0, std::span<const std::span<float>>(&out, 1), &pulled, Millis(1000)).ok());
  EXPECT_EQ(pulled.version, 6u);
}

}  // namespace
}  // namespace distbelief
