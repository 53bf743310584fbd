#include "distbelief/transport/grpc/tensor_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "distbelief/base/logging.h"

namespace distbelief {
namespace {

static_assert(std::endian::native == std::endian::little, "the wire format is little-endian");

using tensor_socket::kMagic;
using tensor_socket::ReplyHeader;
using tensor_socket::RequestHeader;
using Clock = std::chrono::steady_clock;

constexpr char kHello[8] = {'D', 'B', 'T', 'S', '0', '0', '0', '3'};
constexpr size_t kNonce = 32, kMac = 32;

// How an I/O step ended: done, the peer closed or failed, or the deadline passed.
enum class Io { kOk, kClosed, kTimeout };

// Waits until fd is ready for `events` or the deadline passes (time_point::max(): no deadline).
Io WaitFor(int fd, short events, Clock::time_point deadline) {
  while (true) {
    int ms = -1;
    if (deadline != Clock::time_point::max()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return Io::kTimeout;
      ms = static_cast<int>(std::min<int64_t>(left, 1 << 30));
    }
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, ms);
    if (r > 0) return Io::kOk;  // readable, writable, or an error the next call will see
    if (r == 0) return Io::kTimeout;
    if (errno != EINTR) return Io::kClosed;
  }
}

// Sends every byte of the buffers (gathered, no copy), or reports why not.
Io SendAll(int fd, iovec* iov, int n, Clock::time_point deadline) {
  while (n > 0) {
    if (iov->iov_len == 0) {
      ++iov, --n;
      continue;
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(n);
    const ssize_t sent = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return Io::kClosed;
      if (Io w = WaitFor(fd, POLLOUT, deadline); w != Io::kOk) return w;
      continue;
    }
    size_t left = static_cast<size_t>(sent);
    while (n > 0 && left >= iov->iov_len) left -= iov->iov_len, ++iov, --n;
    if (n > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return Io::kOk;
}

Io SendAll(int fd, const void* data, size_t size, Clock::time_point deadline) {
  iovec v{const_cast<void*>(data), size};
  return SendAll(fd, &v, 1, deadline);
}

Io RecvAll(int fd, void* data, size_t size, Clock::time_point deadline) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t got = recv(fd, p, size, MSG_DONTWAIT);
    if (got == 0) return Io::kClosed;
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return Io::kClosed;
      if (Io w = WaitFor(fd, POLLIN, deadline); w != Io::kOk) return w;
      continue;
    }
    p += got;
    size -= static_cast<size_t>(got);
  }
  return Io::kOk;
}

void Mac(const std::string& secret, const unsigned char* nonce, unsigned char* out) {
  unsigned int len = kMac;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), nonce, kNonce, out, &len);
}

void Tune(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

std::string Peer(const sockaddr_storage& a) {
  char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
  getnameinfo(reinterpret_cast<const sockaddr*>(&a), sizeof(a), host, sizeof(host), port, sizeof(port),
              NI_NUMERICHOST | NI_NUMERICSERV);
  return std::string(host) + ":" + port;
}

Status Failed(Io io, const std::string& what) {
  if (io == Io::kTimeout) return absl::DeadlineExceededError(what + ": deadline passed");
  return absl::UnavailableError(what + ": connection lost");
}

struct FreeAddrinfo {
  void operator()(addrinfo* a) const { freeaddrinfo(a); }
};
using Addresses = std::unique_ptr<addrinfo, FreeAddrinfo>;

// The TCP addresses of host:port ("[v6]" brackets allowed; "" with `passive`: every interface),
// or the resolver's error.
StatusOr<Addresses> Lookup(const std::string& host, int port, bool passive) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  std::string h = host;
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (int e = getaddrinfo(h.empty() && passive ? nullptr : h.c_str(), std::to_string(port).c_str(), &hints, &res); e != 0)
    return absl::UnavailableError("tensor socket: cannot resolve " + host + ": " + gai_strerror(e));
  return Addresses(res);
}

}  // namespace

// ---- server ----

StatusOr<std::unique_ptr<TensorSocketServer>> TensorSocketServer::Start(const std::string& host, ParameterShard* shard,
                                                                        std::string secret, int64_t max_message_bytes,
                                                                        TensorSocketLimits limits) {
  StatusOr<Addresses> found = Lookup(host, 0, /*passive=*/true);
  if (!found.ok()) return absl::InvalidArgumentError(found.status().message());  // a bad listen address
  Addresses res = std::move(*found);
  std::unique_ptr<TensorSocketServer> s(new TensorSocketServer());
  s->shard_ = shard;
  s->secret_ = std::move(secret);
  s->max_bytes_ = max_message_bytes;
  s->limits_ = limits;
  for (addrinfo* a = res.get(); a && s->listen_fd_ < 0; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) {
      s->listen_fd_ = fd;
    } else {
      close(fd);
    }
  }
  if (s->listen_fd_ < 0) return absl::UnavailableError("tensor socket: cannot listen on " + host);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(s->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  s->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  s->acceptor_ = std::thread([p = s.get()] { p->AcceptLoop(); });
  return s;
}

TensorSocketServer::~TensorSocketServer() {
  stopping_ = true;
  shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
  acceptor_.join();
  close(listen_fd_);
  std::lock_guard<std::mutex> lock(mu_);
  for (Conn& c : conns_) shutdown(c.fd, SHUT_RDWR);  // wakes the connection's reads
  for (Conn& c : conns_) {
    c.thread.join();
    close(c.fd);
  }
}

void TensorSocketServer::Reap() {
  for (auto it = conns_.begin(); it != conns_.end();)
    if (it->done.load()) {
      it->thread.join();
      close(it->fd);
      it = conns_.erase(it);
    } else {
      ++it;
    }
}

bool TensorSocketServer::MakeRoom() {
  int open = 0;
  for (const Conn& c : conns_) open += !c.evicted;
  if (open < limits_.max_connections) return true;
  for (Conn& c : conns_)  // oldest first
    if (!c.evicted && !c.authenticated.load()) {
      c.evicted = true;
      shutdown(c.fd, SHUT_RDWR);  // its thread sees the end and finishes; reaped later
      return true;
    }
  return false;
}

int TensorSocketServer::connections() {
  std::lock_guard<std::mutex> lock(mu_);
  int open = 0;
  for (const Conn& c : conns_) open += !c.evicted && !c.done.load();
  return open;
}

void TensorSocketServer::AcceptLoop() {
  while (!stopping_.load()) {
    sockaddr_storage peer{};
    socklen_t len = sizeof(peer);
    const int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (stopping_.load()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // e.g. out of descriptors
      continue;
    }
    Tune(fd);
    std::lock_guard<std::mutex> lock(mu_);
    Reap();
    if (stopping_.load()) {
      close(fd);
      return;
    }
    if (!MakeRoom()) {
      LOG_WARN << "tensor socket: " << limits_.max_connections << " authenticated connections already; refused "
               << Peer(peer);
      close(fd);
      continue;
    }
    Conn& c = conns_.emplace_back();
    c.fd = fd;
    c.thread = std::thread([this, fd, peer_name = Peer(peer), done = &c.done, auth = &c.authenticated] {
      Serve(fd, peer_name, auth);
      shutdown(fd, SHUT_RDWR);  // the peer sees the end now; the descriptor closes when reaped
      done->store(true);
    });
  }
}

namespace {

// A peer has 10 s to finish a handshake or a request it started; idle connections may wait.
Clock::time_point Soon() { return Clock::now() + std::chrono::seconds(10); }

// Sends a reply that carries only a status (and its message). False: the connection is lost.
bool SendStatus(int fd, absl::StatusCode code, const std::string& message) {
  ReplyHeader h;
  h.code = static_cast<uint32_t>(code);
  h.payload = message.size();
  iovec v[2] = {{&h, sizeof(h)}, {const_cast<char*>(message.data()), message.size()}};
  return SendAll(fd, v, 2, Soon()) == Io::kOk;
}

}  // namespace

// The client proves it holds the secret without sending it: HMAC of a fresh nonce.
bool TensorSocketServer::Handshake(int fd, const std::string& peer) {
  unsigned char hello[sizeof(kHello) + kNonce];
  std::memcpy(hello, kHello, sizeof(kHello));
  RAND_bytes(hello + sizeof(kHello), kNonce);
  unsigned char mac[kMac], expected[kMac];
  const Clock::time_point deadline = Clock::now() + limits_.handshake_timeout;
  if (SendAll(fd, hello, sizeof(hello), deadline) != Io::kOk || RecvAll(fd, mac, kMac, deadline) != Io::kOk) return false;
  Mac(secret_, hello + sizeof(kHello), expected);
  if (!secret_.empty() && CRYPTO_memcmp(mac, expected, kMac) != 0) {
    LOG_WARN << "refused a tensor-socket connection from " << peer << ": wrong or missing secret";
    SendStatus(fd, absl::StatusCode::kUnauthenticated, "missing or wrong shared secret");
    return false;
  }
  return SendStatus(fd, absl::StatusCode::kOk, "");
}

// One framed request: its reply, or an error reply and false when the connection must close.
bool TensorSocketServer::Answer(int fd, const RequestHeader& h, std::vector<float>* floats) {
  if (h.magic != kMagic)
    return SendStatus(fd, absl::StatusCode::kInvalidArgument, "not a distbelief tensor-socket request (bad magic)"), false;
  if (h.op != tensor_socket::kPull && h.op != tensor_socket::kPush)
    return SendStatus(fd, absl::StatusCode::kInvalidArgument, "unknown tensor-socket operation " + std::to_string(h.op)), false;
  if (h.payload > static_cast<uint64_t>(max_bytes_))
    return SendStatus(fd, absl::StatusCode::kResourceExhausted, "request of " + std::to_string(h.payload) +
                                                                    " bytes exceeds the limit of " + std::to_string(max_bytes_)),
           false;
  ReplyHeader r;
  Status s;
  if (h.op == tensor_socket::kPull) {
    if (h.payload != 0) return SendStatus(fd, absl::StatusCode::kInvalidArgument, "a pull carries no payload"), false;
    floats->resize(shard_->size());
    const std::span<float> out(*floats);
    PullReply pulled;
    s = shard_->Pull(static_cast<int32_t>(h.replica), std::span<const std::span<float>>(&out, 1), &pulled);
    r.payload = floats->size() * sizeof(float);
    r.version = pulled.version;
    r.min_replica_clock = pulled.min_replica_clock;
  } else {
    if (h.payload % sizeof(float) != 0)
      return SendStatus(fd, absl::StatusCode::kInvalidArgument, "a push of " + std::to_string(h.payload) +
                                                                    " bytes is not a whole number of floats"),
             false;
    floats->resize(h.payload / sizeof(float));
    if (RecvAll(fd, floats->data(), h.payload, Soon()) != Io::kOk) return false;  // cut short: nothing applied
    PushReply pushed;
    s = shard_->Push({h.based_on_version, static_cast<int32_t>(h.replica), h.replica_clock, h.client, h.sequence,
                      h.incarnation},
                     *floats, &pushed);
    r.version = pushed.version;
    r.staleness = pushed.staleness;
    r.flags = pushed.duplicate ? tensor_socket::kDuplicate : 0;
    r.incarnation = pushed.incarnation;
    r.durable_version = pushed.durable_version;
  }
  // A call the shard refused gets its status; the connection stays open.
  if (!s.ok()) return SendStatus(fd, s.code(), std::string(s.message()));
  iovec v[2] = {{&r, sizeof(r)}, {floats->data(), h.op == tensor_socket::kPull ? r.payload : 0}};
  return SendAll(fd, v, 2, Soon()) == Io::kOk;
}

void TensorSocketServer::Serve(int fd, std::string peer, std::atomic<bool>* authenticated) {
  if (!Handshake(fd, peer)) return;
  authenticated->store(true);
  std::vector<float> floats;  // reused: a push's payload, or a pull's range
  while (!stopping_.load()) {
    RequestHeader h;
    // Closed between requests, or idle too long (the client reconnects when it needs to).
    if (RecvAll(fd, &h, sizeof(h), Clock::now() + limits_.idle_timeout) != Io::kOk) return;
    if (!Answer(fd, h, &floats)) return;
  }
}

// ---- client ----

TensorSocketClient::~TensorSocketClient() {
  for (int fd : idle_) close(fd);
}

StatusOr<int> TensorSocketClient::Acquire(Clock::time_point call_deadline) {
  // A data port a firewall drops must not eat the whole call: connecting gets 2 s at most.
  const Clock::time_point deadline = std::min(call_deadline, Clock::now() + std::chrono::seconds(2));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      const int fd = idle_.back();
      idle_.pop_back();
      return fd;
    }
  }
  const std::string where = "tensor socket " + host_ + ":" + std::to_string(port_);
  DB_ASSIGN_OR_RETURN(Addresses res, Lookup(host_, port_, /*passive=*/false));
  int fd = -1;
  Io io = Io::kClosed;
  for (addrinfo* a = res.get(); a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    io = Io::kOk;
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      io = errno == EINPROGRESS ? WaitFor(fd, POLLOUT, deadline) : Io::kClosed;
      int err = 0;
      socklen_t len = sizeof(err);
      if (io == Io::kOk && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)) io = Io::kClosed;
    }
    if (io != Io::kOk) {
      close(fd);
      fd = -1;
    }
  }
  if (fd < 0) return absl::UnavailableError(where + ": " + std::string(kCannotConnect));
  Tune(fd);
  unsigned char hello[sizeof(kHello) + kNonce], mac[kMac];
  ReplyHeader r;
  io = RecvAll(fd, hello, sizeof(hello), deadline);
  if (io == Io::kOk && std::memcmp(hello, kHello, sizeof(kHello)) != 0) {
    close(fd);
    return absl::UnavailableError(where + ": not a distbelief tensor socket");
  }
  if (io == Io::kOk) {
    Mac(secret_, hello + sizeof(kHello), mac);
    io = SendAll(fd, mac, kMac, deadline);
  }
  if (io == Io::kOk) io = RecvAll(fd, &r, sizeof(r), deadline);
  if (io != Io::kOk) {
    close(fd);
    return Failed(io, where + " handshake");
  }
  if (r.magic != kMagic || r.code != 0) {
    close(fd);
    return absl::UnauthenticatedError(where + ": refused: missing or wrong shared secret");
  }
  return fd;
}

void TensorSocketClient::Release(int fd, bool reusable) {
  if (!reusable) {
    close(fd);
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  idle_.push_back(fd);
}

namespace {

// Reads a reply header and, for an error, its message. *in_step: the connection can carry the
// next request (the server answered this one whole and kept the connection open).
Status ReadReply(int fd, ReplyHeader* r, Clock::time_point deadline, const std::string& what, bool* in_step) {
  *in_step = false;
  if (Io io = RecvAll(fd, r, sizeof(*r), deadline); io != Io::kOk) return Failed(io, what);
  if (r->magic != kMagic) return absl::DataLossError(what + ": malformed reply");
  if (r->code == 0) {
    *in_step = true;
    return absl::OkStatus();
  }
  if (r->payload > 1 << 20) return absl::DataLossError(what + ": malformed error reply");
  std::string message(r->payload, '\0');
  if (Io io = RecvAll(fd, message.data(), message.size(), deadline); io != Io::kOk) return Failed(io, what);
  const auto code = static_cast<absl::StatusCode>(r->code);
  // The server closes after a request it could not frame; a refusal by the shard keeps it open.
  *in_step = code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kFailedPrecondition;
  return Status(code, what + ": " + message);
}

}  // namespace

Status TensorSocketClient::Pull(int32_t replica, FloatPieces out, PullReply* reply, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string what = "Pull to tensor socket " + host_ + ":" + std::to_string(port_);
  DB_ASSIGN_OR_RETURN(const int fd, Acquire(deadline));
  RequestHeader h;
  h.op = tensor_socket::kPull;
  h.replica = replica;
  if (Io io = SendAll(fd, &h, sizeof(h), deadline); io != Io::kOk) {
    close(fd);
    return Failed(io, what);
  }
  ReplyHeader r;
  bool in_step = false;
  Status s = ReadReply(fd, &r, deadline, what, &in_step);
  uint64_t want = 0;
  for (const auto& p : out) want += p.size() * sizeof(float);
  if (s.ok() && r.payload != want) {
    s = absl::DataLossError(what + ": the shard sent " + std::to_string(r.payload / sizeof(float)) +
                            " floats, its range holds " + std::to_string(want / sizeof(float)));
    in_step = false;
  }
  // Straight into the caller's pieces: one receive each, no buffer in between.
  for (size_t i = 0; s.ok() && i < out.size(); ++i)
    if (Io io = RecvAll(fd, out[i].data(), out[i].size() * sizeof(float), deadline); io != Io::kOk) {
      s = Failed(io, what);
      in_step = false;
    }
  Release(fd, in_step);
  if (!s.ok()) return s;
  reply->version = r.version;
  reply->min_replica_clock = r.min_replica_clock;
  return absl::OkStatus();
}

Status TensorSocketClient::Push(const PushMeta& meta, std::span<const float> g, PushReply* reply, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string what = "Push to tensor socket " + host_ + ":" + std::to_string(port_);
  if (static_cast<int64_t>(g.size() * sizeof(float)) > max_bytes_)  // the server would refuse it
    return absl::ResourceExhaustedError(what + ": " + std::to_string(g.size() * sizeof(float)) +
                                        " bytes exceed the message limit of " + std::to_string(max_bytes_));
  DB_ASSIGN_OR_RETURN(const int fd, Acquire(deadline));
  RequestHeader h;
  h.op = tensor_socket::kPush;
  h.payload = g.size() * sizeof(float);
  h.based_on_version = meta.based_on_version;
  h.replica = meta.replica;
  h.replica_clock = meta.replica_clock;
  h.client = meta.client;
  h.sequence = meta.sequence;
  h.incarnation = meta.incarnation;
  iovec v[2] = {{&h, sizeof(h)}, {const_cast<float*>(g.data()), g.size() * sizeof(float)}};
  if (Io io = SendAll(fd, v, 2, deadline); io != Io::kOk) {
    close(fd);
    return Failed(io, what);
  }
  ReplyHeader r;
  bool in_step = false;
  Status s = ReadReply(fd, &r, deadline, what, &in_step);
  Release(fd, in_step);
  if (!s.ok()) return s;
  reply->version = r.version;
  reply->staleness = r.staleness;
  reply->duplicate = (r.flags & tensor_socket::kDuplicate) != 0;
  reply->incarnation = r.incarnation;
  reply->durable_version = r.durable_version;
  return absl::OkStatus();
}

}  // namespace distbelief
