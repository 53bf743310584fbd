// The tensor socket: the gRPC transport's data plane for the two bulk calls, Pull and Push.
// gRPC (HTTP/2 framing, its own threads and copies) moves a 4 MiB tensor at under half the speed
// of a plain TCP socket on one machine (bench/transport_bench); a shard served over gRPC therefore
// also listens on a plain TCP port of the same host and announces it in its Info reply. Clients
// send pulls and pushes there; everything else (Sandblaster's vector operations, Info, workers)
// stays on gRPC.
//
// Under TLS (the shard has a certificate, its clients a CA to trust), every connection first
// completes a TLS 1.3 handshake (OpenSSL; the client checks the certificate's name) and the
// protocol below runs inside it: the bytes on the wire are encrypted and authenticated per
// record with per-connection keys, so a captured push replayed on a new connection (or a record
// replayed, dropped or altered inside one) fails TLS and is never applied.
//
// Wire protocol (little-endian; one request at a time per connection; a client keeps a few
// connections per shard so a pull and a push in flight do not queue behind each other):
//   server -> client  "DBTS0003" + 32-byte random nonce
//   client -> server  HMAC-SHA256(shared secret, nonce) (32 bytes)
//   server -> client  ReplyHeader: code 0, or kUnauthenticated and the connection closes
//   then repeatedly:
//   client -> server  RequestHeader{magic, op, payload bytes, based_on_version, replica, clock,
//                     push id: client, sequence; incarnation}
//                     + payload (push: the gradient's floats; pull: none)
//   server -> client  ReplyHeader{magic, code, payload bytes, version, staleness, min clock, flags,
//                     incarnation, durable version}
//                     + payload (ok pull: the range's floats; error: the message)
// A request the server cannot frame (wrong magic, unknown op, a payload over the message limit)
// gets its error reply and the connection is closed; a push the shard refuses (wrong size, NaN)
// gets the shard's status and the connection stays open. Nothing is applied unless the whole
// payload arrived.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/ps/parameter_shard.h"
#include "distbelief/ps/shard_api.h"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace distbelief {

// An OpenSSL context for tensor-socket connections: TLS 1.3 only, made once per transport and
// shared (thread-safe) by every connection. Errors: a certificate, key or CA that cannot be read
// or does not match comes back as kInvalidArgument naming the file.
class TlsContext {
 public:
  // A server's: its certificate chain and private key (PEM files).
  static StatusOr<std::shared_ptr<TlsContext>> ForServer(const std::string& cert_file, const std::string& key_file);
  // A client's: the CA certificates it trusts (PEM file) and the name the server's certificate
  // must carry ("": the host it connects to).
  static StatusOr<std::shared_ptr<TlsContext>> ForClient(const std::string& root_file, const std::string& target_name);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  ssl_ctx_st* get() const { return ctx_; }
  const std::string& target_name() const { return target_name_; }

 private:
  TlsContext() = default;
  ssl_ctx_st* ctx_ = nullptr;
  std::string target_name_;
};

namespace tensor_socket {

constexpr uint32_t kMagic = 0x31544244;  // "DBT1"
enum Op : uint32_t { kPull = 1, kPush = 2 };

struct RequestHeader {
  uint32_t magic = kMagic;
  uint32_t op = 0;
  uint64_t payload = 0;  // bytes that follow
  uint64_t based_on_version = 0;
  int64_t replica = -1;
  int64_t replica_clock = 0;
  uint64_t client = 0;    // push id (ps/shard_api.h: PushMeta)
  uint64_t sequence = 0;
  uint64_t incarnation = 0;  // the shard process expected (0: any)
};
struct ReplyHeader {
  uint32_t magic = kMagic;
  uint32_t code = 0;     // absl::StatusCode
  uint64_t payload = 0;  // bytes that follow: the values, or the error message
  uint64_t version = 0;
  uint64_t staleness = 0;
  int64_t min_replica_clock = -1;
  uint64_t flags = 0;    // push: kDuplicate when the push id had been applied before
  uint64_t incarnation = 0;      // push: the shard process that answered
  uint64_t durable_version = 0;  // push: what the shard's last checkpoint holds
};
constexpr uint64_t kDuplicate = 1;

class Link;  // one connection, plain TCP or TLS (tensor_socket.cc)
static_assert(sizeof(RequestHeader) == 64 && sizeof(ReplyHeader) == 64);

}  // namespace tensor_socket

// Resource bounds of one server. A connection must finish its handshake within
// `handshake_timeout` and may sit idle between requests for `idle_timeout`; beyond
// `max_connections`, a new connection evicts the oldest one still in its handshake, or is closed
// at once if every slot is authenticated (its client then goes through gRPC). Each connection
// holds one request's payload at most (the message limit).
struct TensorSocketLimits {
  int max_connections = 512;
  Millis handshake_timeout{5000};
  Millis idle_timeout{300000};
};

// Serves one shard's pulls and pushes on host:0 (a free port) until destroyed.
class TensorSocketServer {
 public:
  // tls: a server context (TlsContext::ForServer) to serve TLS only; nullptr: plain TCP.
  static StatusOr<std::unique_ptr<TensorSocketServer>> Start(const std::string& host, ParameterShard* shard,
                                                             std::string secret, int64_t max_message_bytes,
                                                             TensorSocketLimits limits = {},
                                                             std::shared_ptr<TlsContext> tls = nullptr);
  ~TensorSocketServer();
  int port() const { return port_; }
  int connections();  // open now, handshaking or authenticated

 private:
  TensorSocketServer() = default;
  void AcceptLoop();
  void Serve(int fd, std::string peer, std::atomic<bool>* authenticated);
  bool Handshake(tensor_socket::Link& link, const std::string& peer);
  bool Answer(tensor_socket::Link& link, const tensor_socket::RequestHeader& h, std::vector<float>* floats);
  ParameterShard* shard_ = nullptr;
  std::shared_ptr<TlsContext> tls_;
  std::string secret_;
  int64_t max_bytes_ = 0;
  TensorSocketLimits limits_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  struct Conn {
    int fd;
    std::thread thread;
    std::atomic<bool> done{false};
    std::atomic<bool> authenticated{false};
    bool evicted = false;
  };
  // Under mu_: joins finished connections; makes room for one more (see TensorSocketLimits).
  void Reap();
  bool MakeRoom();
  std::mutex mu_;
  std::list<Conn> conns_;
};

// The client side for one shard: connections made on demand (connect, handshake), kept while they
// work and dropped on any error, which comes back as kUnavailable (retry) or kDeadlineExceeded.
// A port that cannot be reached within 2 s gives kUnavailable with kCannotConnect in its message.
// tls: a client context (TlsContext::ForClient) to speak TLS only; nullptr: plain TCP. A server
// whose certificate does not verify gives kUnauthenticated.
inline constexpr char kCannotConnect[] = "cannot connect";
class TensorSocketClient {
 public:
  TensorSocketClient(std::string host, int port, std::string secret, int64_t max_message_bytes,
                     std::shared_ptr<TlsContext> tls = nullptr);
  ~TensorSocketClient();  // closes the idle connections
  // The pulled range is received straight into `out`.
  Status Pull(int32_t replica, FloatPieces out, PullReply* reply, Millis timeout);
  Status Push(const PushMeta& meta, std::span<const float> gradient, PushReply* reply, Millis timeout);

 private:
  StatusOr<tensor_socket::Link> Acquire(std::chrono::steady_clock::time_point deadline);
  // Keeps the connection for the next call if the exchange left it in step, else closes it.
  void Release(tensor_socket::Link link, bool reusable);
  std::string host_;
  int port_;
  std::string secret_;
  int64_t max_bytes_;
  std::shared_ptr<TlsContext> tls_;
  std::mutex mu_;
  std::vector<tensor_socket::Link> idle_;
};

}  // namespace distbelief
