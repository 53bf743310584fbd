#include "distbelief/transport/grpc/tensor_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

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

// The newest OpenSSL error on this thread's queue, for a message ("" if none).
std::string SslError() {
  char buf[256] = "";
  if (unsigned long e = ERR_peek_last_error(); e != 0) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

// OpenSSL's socket BIO writes with write(2), which raises SIGPIPE when the peer has gone; ours
// sends with MSG_NOSIGNAL (like the plain path) and never blocks (the Link waits with poll).
int BioWrite(BIO* b, const char* data, int size) {
  BIO_clear_retry_flags(b);
  const ssize_t n = send(static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(b))), data, static_cast<size_t>(size),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_write(b);
  return static_cast<int>(n);
}
int BioRead(BIO* b, char* data, int size) {
  BIO_clear_retry_flags(b);
  const ssize_t n = recv(static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(b))), data, static_cast<size_t>(size),
                         MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_read(b);
  return static_cast<int>(n);
}
long BioCtrl(BIO*, int cmd, long, void*) { return cmd == BIO_CTRL_FLUSH ? 1 : 0; }
int BioCreate(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}
const BIO_METHOD* SocketBio() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "distbelief socket");
    BIO_meth_set_write(m, BioWrite);
    BIO_meth_set_read(m, BioRead);
    BIO_meth_set_ctrl(m, BioCtrl);
    BIO_meth_set_create(m, BioCreate);
    return m;
  }();
  return method;
}

}  // namespace

// ---- TLS ----

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

namespace {

// TLS 1.3 only; AES-128-GCM first (the fastest AEAD with AES-NI), ChaCha20 for machines without.
Status NewTls(const SSL_METHOD* method, SSL_CTX** ctx) {
  *ctx = SSL_CTX_new(method);
  if (*ctx == nullptr) return absl::InternalError("tensor socket: cannot make a TLS context: " + SslError());
  SSL_CTX_set_min_proto_version(*ctx, TLS1_3_VERSION);
  SSL_CTX_set_ciphersuites(*ctx, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384");
  // Writes may be partial and resumed from a moved buffer (we loop over an iovec); records are
  // read ahead in one large buffer (fewer system calls per 16 KiB record).
  SSL_CTX_set_mode(*ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_read_ahead(*ctx, 1);
  SSL_CTX_set_default_read_buffer_len(*ctx, 256 << 10);
  SSL_CTX_set_session_cache_mode(*ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(*ctx, 0);
  return absl::OkStatus();
}

}  // namespace

StatusOr<std::shared_ptr<TlsContext>> TlsContext::ForServer(const std::string& cert_file, const std::string& key_file) {
  std::shared_ptr<TlsContext> t(new TlsContext());
  DB_RETURN_IF_ERROR(NewTls(TLS_server_method(), &t->ctx_));
  if (SSL_CTX_use_certificate_chain_file(t->ctx_, cert_file.c_str()) != 1)
    return absl::InvalidArgumentError("tensor socket: cannot use the TLS certificate " + cert_file + ": " + SslError());
  if (SSL_CTX_use_PrivateKey_file(t->ctx_, key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    return absl::InvalidArgumentError("tensor socket: cannot use the TLS key " + key_file + ": " + SslError());
  if (SSL_CTX_check_private_key(t->ctx_) != 1)
    return absl::InvalidArgumentError("tensor socket: the TLS key " + key_file + " does not match the certificate " +
                                      cert_file);
  return t;
}

StatusOr<std::shared_ptr<TlsContext>> TlsContext::ForClient(const std::string& root_file, const std::string& target_name) {
  std::shared_ptr<TlsContext> t(new TlsContext());
  DB_RETURN_IF_ERROR(NewTls(TLS_client_method(), &t->ctx_));
  if (SSL_CTX_load_verify_locations(t->ctx_, root_file.c_str(), nullptr) != 1)
    return absl::InvalidArgumentError("tensor socket: cannot use the TLS root certificates " + root_file + ": " +
                                      SslError());
  SSL_CTX_set_verify(t->ctx_, SSL_VERIFY_PEER, nullptr);
  t->target_name_ = target_name;
  return t;
}

namespace tensor_socket {

// One connection: a socket and, under TLS, its session. Moves; closes what it owns.
//
// Under TLS a connection has two phases. The handshake (TLS 1.3, then the secret's HMAC exchange
// inside it) goes through OpenSSL's records. Then both sides switch to bulk records keyed from
// the session (the RFC 8446 exporter: one AES-128-GCM key and IV per direction). Each buffer sent
// is cut into records of at most kRecord bytes, [u32 length][ciphertext][16-byte tag], the length
// authenticated too and the nonce the IV xor a per-direction record counter: a record replayed,
// reordered, cut or altered fails its tag and ends the connection. Records are received straight
// into the caller's memory and decrypted there: no buffer in between and 16x fewer records than
// TLS's 16 KiB, which is what makes the encrypted socket fast (bench/transport_bench). A Recv that
// ends inside a record returns bytes whose tag is checked when the record ends; the protocol
// reads every header as one whole record and uses a payload only after all of it arrived.
class Link {
 public:
  static constexpr size_t kRecord = 256 << 10, kTag = 16, kIv = 12, kKey = 16;

  Link() = default;
  Link(int fd, bool owns_fd) : fd_(fd), owns_fd_(owns_fd) {}
  Link(Link&& o) noexcept { *this = std::move(o); }
  Link& operator=(Link&& o) noexcept {
    if (this != &o) {
      Close();
      fd_ = std::exchange(o.fd_, -1);
      owns_fd_ = o.owns_fd_;
      ssl_ = std::exchange(o.ssl_, nullptr);
      bulk_ = std::move(o.bulk_);
    }
    return *this;
  }
  ~Link() { Close(); }
  void Close() {
    if (ssl_) SSL_free(ssl_);
    if (owns_fd_ && fd_ >= 0) close(fd_);
    ssl_ = nullptr;
    bulk_.reset();
    fd_ = -1;
  }

  // Runs the TLS handshake by the deadline, as the server or as a client checking `name` ("" =
  // no name check; an IP address is checked as one). Ok, or why not (kUnauthenticated: the peer
  // did not verify).
  Status StartTls(const TlsContext& ctx, bool server, const std::string& name, Clock::time_point deadline) {
    ERR_clear_error();
    ssl_ = SSL_new(ctx.get());
    BIO* bio = ssl_ ? BIO_new(SocketBio()) : nullptr;
    if (bio == nullptr) return absl::InternalError("TLS: " + SslError());
    BIO_set_data(bio, reinterpret_cast<void*>(static_cast<intptr_t>(fd_)));
    SSL_set_bio(ssl_, bio, bio);  // the session owns the BIO
    if (!server && !name.empty()) {
      SSL_set_tlsext_host_name(ssl_, name.c_str());
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      if (X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str()) != 1) {
        ERR_clear_error();  // not an address: a host name
        X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
      }
    }
    while (true) {
      ERR_clear_error();
      const int r = server ? SSL_accept(ssl_) : SSL_connect(ssl_);
      if (r == 1) return absl::OkStatus();
      if (!server && SSL_get_verify_result(ssl_) != X509_V_OK)
        return absl::UnauthenticatedError(std::string("TLS: the server's certificate does not verify: ") +
                                          X509_verify_cert_error_string(SSL_get_verify_result(ssl_)));
      const Io io = Wait(r, deadline);
      if (io == Io::kTimeout) return absl::DeadlineExceededError("TLS handshake: deadline passed");
      if (io != Io::kOk) return absl::UnavailableError("TLS handshake failed: " + SslError());
    }
  }

  // Under TLS, once the handshake's exchange is done and nothing else is in flight: switches to
  // bulk records keyed from the session. A no-op on a plain connection.
  Status StartBulk(bool server) {
    if (ssl_ == nullptr) return absl::OkStatus();
    if (SSL_has_pending(ssl_)) return absl::DataLossError("TLS: unexpected data after the handshake");
    static constexpr char kLabel[] = "EXPORTER-distbelief-tensor-socket";
    unsigned char m[2 * kKey + 2 * kIv];  // client->server key, server->client key, then their IVs
    if (SSL_export_keying_material(ssl_, m, sizeof(m), kLabel, sizeof(kLabel) - 1, nullptr, 0, 0) != 1)
      return absl::InternalError("TLS: cannot derive keys: " + SslError());
    auto bulk = std::make_unique<Bulk>();
    const unsigned char* c2s_key = m;
    const unsigned char* s2c_key = m + kKey;
    const unsigned char* c2s_iv = m + 2 * kKey;
    const unsigned char* s2c_iv = m + 2 * kKey + kIv;
    std::memcpy(bulk->tx.iv, server ? s2c_iv : c2s_iv, kIv);
    std::memcpy(bulk->rx.iv, server ? c2s_iv : s2c_iv, kIv);
    if (EVP_EncryptInit_ex(bulk->tx.ctx, EVP_aes_128_gcm(), nullptr, server ? s2c_key : c2s_key, nullptr) != 1 ||
        EVP_DecryptInit_ex(bulk->rx.ctx, EVP_aes_128_gcm(), nullptr, server ? c2s_key : s2c_key, nullptr) != 1)
      return absl::InternalError("TLS: cannot key AES-128-GCM: " + SslError());
    OPENSSL_cleanse(m, sizeof(m));
    bulk->staging.resize(4 + kRecord + kTag);
    bulk_ = std::move(bulk);
    SSL_free(ssl_);  // its keys are no longer needed; the socket stays open
    ssl_ = nullptr;
    return absl::OkStatus();
  }

  // Sends every byte of the buffers, or reports why not.
  Io Send(iovec* iov, int n, Clock::time_point deadline) {
    if (bulk_) return SealAndSend(iov, n, deadline);
    if (ssl_ == nullptr) return SendAll(fd_, iov, n, deadline);
    for (; n > 0; ++iov, --n) {
      const char* p = static_cast<const char*>(iov->iov_base);
      size_t left = iov->iov_len;
      while (left > 0) {
        ERR_clear_error();
        size_t sent = 0;
        const int r = SSL_write_ex(ssl_, p, left, &sent);
        if (r == 1) {
          p += sent, left -= sent;
        } else if (Io io = Wait(r, deadline); io != Io::kOk) {
          return io;
        }
      }
    }
    return Io::kOk;
  }
  Io Send(const void* data, size_t size, Clock::time_point deadline) {
    iovec v{const_cast<void*>(data), size};
    return Send(&v, 1, deadline);
  }
  Io Recv(void* data, size_t size, Clock::time_point deadline) {
    if (bulk_) return RecvAndOpen(static_cast<unsigned char*>(data), size, deadline);
    if (ssl_ == nullptr) return RecvAll(fd_, data, size, deadline);
    char* p = static_cast<char*>(data);
    while (size > 0) {
      ERR_clear_error();
      size_t got = 0;
      const int r = SSL_read_ex(ssl_, p, size, &got);
      if (r == 1) {
        p += got, size -= got;
      } else if (Io io = Wait(r, deadline); io != Io::kOk) {
        return io;  // a record that fails authentication ends the connection
      }
    }
    return Io::kOk;
  }

 private:
  struct Direction {
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    unsigned char iv[kIv];
    uint64_t counter = 0;
    ~Direction() { EVP_CIPHER_CTX_free(ctx); }
    // The next record's nonce: the IV xor the record counter (never repeats within a key).
    void NextNonce(unsigned char* nonce) {
      std::memcpy(nonce, iv, kIv);
      for (int b = 0; b < 8; ++b) nonce[kIv - 1 - b] ^= static_cast<unsigned char>(counter >> (8 * b));
      ++counter;
    }
  };
  struct Bulk {
    Direction tx, rx;
    std::vector<unsigned char> staging;  // one sealed record on its way out
    uint32_t rx_left = 0;                // bytes of the record being received still to come
  };

  Io SealAndSend(iovec* iov, int n, Clock::time_point deadline) {
    Bulk& b = *bulk_;
    unsigned char nonce[kIv];
    for (; n > 0; ++iov, --n) {
      const unsigned char* p = static_cast<const unsigned char*>(iov->iov_base);
      for (size_t left = iov->iov_len; left > 0;) {
        const uint32_t len = static_cast<uint32_t>(std::min(left, kRecord));
        unsigned char* out = b.staging.data();
        std::memcpy(out, &len, 4);
        b.tx.NextNonce(nonce);
        int got = 0, fin = 0;
        if (EVP_EncryptInit_ex(b.tx.ctx, nullptr, nullptr, nullptr, nonce) != 1 ||
            EVP_EncryptUpdate(b.tx.ctx, nullptr, &got, out, 4) != 1 ||
            EVP_EncryptUpdate(b.tx.ctx, out + 4, &got, p, static_cast<int>(len)) != 1 ||
            EVP_EncryptFinal_ex(b.tx.ctx, out + 4 + got, &fin) != 1 ||
            EVP_CIPHER_CTX_ctrl(b.tx.ctx, EVP_CTRL_GCM_GET_TAG, kTag, out + 4 + len) != 1)
          return Io::kClosed;
        iovec v{out, 4 + len + kTag};
        if (Io io = SendAll(fd_, &v, 1, deadline); io != Io::kOk) return io;
        p += len, left -= len;
      }
    }
    return Io::kOk;
  }

  Io RecvAndOpen(unsigned char* p, size_t size, Clock::time_point deadline) {
    Bulk& b = *bulk_;
    while (size > 0) {
      if (b.rx_left == 0) {  // a record begins
        uint32_t len = 0;
        if (Io io = RecvAll(fd_, &len, 4, deadline); io != Io::kOk) return io;
        if (len == 0 || len > kRecord) return Io::kClosed;
        unsigned char nonce[kIv];
        b.rx.NextNonce(nonce);
        int got = 0;
        if (EVP_DecryptInit_ex(b.rx.ctx, nullptr, nullptr, nullptr, nonce) != 1 ||
            EVP_DecryptUpdate(b.rx.ctx, nullptr, &got, reinterpret_cast<unsigned char*>(&len), 4) != 1)
          return Io::kClosed;
        b.rx_left = len;
      }
      const size_t take = std::min<size_t>(size, b.rx_left);
      if (Io io = RecvAll(fd_, p, take, deadline); io != Io::kOk) return io;
      int got = 0;
      if (EVP_DecryptUpdate(b.rx.ctx, p, &got, p, static_cast<int>(take)) != 1) return Io::kClosed;
      p += take, size -= take;
      b.rx_left -= static_cast<uint32_t>(take);
      if (b.rx_left == 0) {  // the record ends: its tag
        unsigned char tag[kTag], last[16];
        int fin = 0;
        if (Io io = RecvAll(fd_, tag, kTag, deadline); io != Io::kOk) return io;
        if (EVP_CIPHER_CTX_ctrl(b.rx.ctx, EVP_CTRL_GCM_SET_TAG, kTag, tag) != 1 ||
            EVP_DecryptFinal_ex(b.rx.ctx, last, &fin) != 1) {
          LOG_WARN << "tensor socket: a record failed authentication (altered, replayed or out of order); "
                      "connection closed";
          return Io::kClosed;
        }
      }
    }
    return Io::kOk;
  }

  // After an OpenSSL call returned r: waits for what it wants (then kOk: call again), or kClosed.
  Io Wait(int r, Clock::time_point deadline) {
    switch (SSL_get_error(ssl_, r)) {
      case SSL_ERROR_WANT_READ:
        return WaitFor(fd_, POLLIN, deadline);
      case SSL_ERROR_WANT_WRITE:
        return WaitFor(fd_, POLLOUT, deadline);
      default:
        return Io::kClosed;
    }
  }
  int fd_ = -1;
  bool owns_fd_ = true;
  SSL* ssl_ = nullptr;
  std::unique_ptr<Bulk> bulk_;
};

}  // namespace tensor_socket

namespace {

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
                                                                        TensorSocketLimits limits,
                                                                        std::shared_ptr<TlsContext> tls) {
  StatusOr<Addresses> found = Lookup(host, 0, /*passive=*/true);
  if (!found.ok()) return absl::InvalidArgumentError(found.status().message());  // a bad listen address
  Addresses res = std::move(*found);
  std::unique_ptr<TensorSocketServer> s(new TensorSocketServer());
  s->shard_ = shard;
  s->secret_ = std::move(secret);
  s->max_bytes_ = max_message_bytes;
  s->limits_ = limits;
  s->tls_ = std::move(tls);
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
bool SendStatus(tensor_socket::Link& link, absl::StatusCode code, const std::string& message) {
  ReplyHeader h;
  h.code = static_cast<uint32_t>(code);
  h.payload = message.size();
  iovec v[2] = {{&h, sizeof(h)}, {const_cast<char*>(message.data()), message.size()}};
  return link.Send(v, 2, Soon()) == Io::kOk;
}

}  // namespace

// The client proves it holds the secret without sending it: HMAC of a fresh nonce.
// Under TLS, the TLS handshake comes first and the same exchange runs inside it.
bool TensorSocketServer::Handshake(tensor_socket::Link& link, const std::string& peer) {
  const Clock::time_point deadline = Clock::now() + limits_.handshake_timeout;
  if (tls_) {
    if (Status s = link.StartTls(*tls_, /*server=*/true, "", deadline); !s.ok()) {
      LOG_WARN << "refused a tensor-socket connection from " << peer << ": " << s.message();
      return false;
    }
  }
  unsigned char hello[sizeof(kHello) + kNonce];
  std::memcpy(hello, kHello, sizeof(kHello));
  RAND_bytes(hello + sizeof(kHello), kNonce);
  unsigned char mac[kMac], expected[kMac];
  if (link.Send(hello, sizeof(hello), deadline) != Io::kOk || link.Recv(mac, kMac, deadline) != Io::kOk) return false;
  Mac(secret_, hello + sizeof(kHello), expected);
  if (!secret_.empty() && CRYPTO_memcmp(mac, expected, kMac) != 0) {
    LOG_WARN << "refused a tensor-socket connection from " << peer << ": wrong or missing secret";
    SendStatus(link, absl::StatusCode::kUnauthenticated, "missing or wrong shared secret");
    return false;
  }
  if (!SendStatus(link, absl::StatusCode::kOk, "")) return false;
  if (Status s = link.StartBulk(/*server=*/true); !s.ok()) {
    LOG_WARN << "tensor socket connection from " << peer << ": " << s.message();
    return false;
  }
  return true;
}

// One framed request: its reply, or an error reply and false when the connection must close.
bool TensorSocketServer::Answer(tensor_socket::Link& link, const RequestHeader& h, std::vector<float>* floats) {
  if (h.magic != kMagic)
    return SendStatus(link, absl::StatusCode::kInvalidArgument, "not a distbelief tensor-socket request (bad magic)"), false;
  if (h.op != tensor_socket::kPull && h.op != tensor_socket::kPush)
    return SendStatus(link, absl::StatusCode::kInvalidArgument, "unknown tensor-socket operation " + std::to_string(h.op)), false;
  if (h.payload > static_cast<uint64_t>(max_bytes_))
    return SendStatus(link, absl::StatusCode::kResourceExhausted, "request of " + std::to_string(h.payload) +
                                                                    " bytes exceeds the limit of " + std::to_string(max_bytes_)),
           false;
  ReplyHeader r;
  Status s;
  if (h.op == tensor_socket::kPull) {
    if (h.payload != 0) return SendStatus(link, absl::StatusCode::kInvalidArgument, "a pull carries no payload"), false;
    floats->resize(shard_->size());
    const std::span<float> out(*floats);
    PullReply pulled;
    s = shard_->Pull(static_cast<int32_t>(h.replica), std::span<const std::span<float>>(&out, 1), &pulled);
    r.payload = floats->size() * sizeof(float);
    r.version = pulled.version;
    r.min_replica_clock = pulled.min_replica_clock;
  } else {
    if (h.payload % sizeof(float) != 0)
      return SendStatus(link, absl::StatusCode::kInvalidArgument, "a push of " + std::to_string(h.payload) +
                                                                    " bytes is not a whole number of floats"),
             false;
    floats->resize(h.payload / sizeof(float));
    if (link.Recv(floats->data(), h.payload, Soon()) != Io::kOk) return false;  // cut short: nothing applied
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
  if (!s.ok()) return SendStatus(link, s.code(), std::string(s.message()));
  iovec v[2] = {{&r, sizeof(r)}, {floats->data(), h.op == tensor_socket::kPull ? r.payload : 0}};
  return link.Send(v, 2, Soon()) == Io::kOk;
}

void TensorSocketServer::Serve(int fd, std::string peer, std::atomic<bool>* authenticated) {
  tensor_socket::Link link(fd, /*owns_fd=*/false);  // the descriptor closes when reaped
  if (!Handshake(link, peer)) return;
  authenticated->store(true);
  std::vector<float> floats;  // reused: a push's payload, or a pull's range
  while (!stopping_.load()) {
    RequestHeader h;
    // Closed between requests, or idle too long (the client reconnects when it needs to).
    if (link.Recv(&h, sizeof(h), Clock::now() + limits_.idle_timeout) != Io::kOk) return;
    if (!Answer(link, h, &floats)) return;
  }
}

// ---- client ----

TensorSocketClient::TensorSocketClient(std::string host, int port, std::string secret, int64_t max_message_bytes,
                                       std::shared_ptr<TlsContext> tls)
    : host_(std::move(host)), port_(port), secret_(std::move(secret)), max_bytes_(max_message_bytes),
      tls_(std::move(tls)) {}

TensorSocketClient::~TensorSocketClient() = default;

StatusOr<tensor_socket::Link> TensorSocketClient::Acquire(Clock::time_point call_deadline) {
  // A data port a firewall drops must not eat the whole call: connecting gets 2 s at most.
  const Clock::time_point deadline = std::min(call_deadline, Clock::now() + std::chrono::seconds(2));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      tensor_socket::Link link = std::move(idle_.back());
      idle_.pop_back();
      return link;
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
  tensor_socket::Link link(fd, /*owns_fd=*/true);
  if (tls_) {
    const std::string name = tls_->target_name().empty() ? host_ : tls_->target_name();
    if (Status s = link.StartTls(*tls_, /*server=*/false, name, deadline); !s.ok())
      return Status(s.code(), where + ": " + std::string(s.message()));
  }
  unsigned char hello[sizeof(kHello) + kNonce], mac[kMac];
  ReplyHeader r;
  io = link.Recv(hello, sizeof(hello), deadline);
  if (io == Io::kOk && std::memcmp(hello, kHello, sizeof(kHello)) != 0)
    return absl::UnavailableError(where + ": not a distbelief tensor socket");
  if (io == Io::kOk) {
    Mac(secret_, hello + sizeof(kHello), mac);
    io = link.Send(mac, kMac, deadline);
  }
  if (io == Io::kOk) io = link.Recv(&r, sizeof(r), deadline);
  if (io != Io::kOk) return Failed(io, where + " handshake");
  if (r.magic != kMagic || r.code != 0)
    return absl::UnauthenticatedError(where + ": refused: missing or wrong shared secret");
  if (Status s = link.StartBulk(/*server=*/false); !s.ok()) return Status(s.code(), where + ": " + std::string(s.message()));
  return link;
}

void TensorSocketClient::Release(tensor_socket::Link link, bool reusable) {
  if (!reusable) return;  // closes
  std::lock_guard<std::mutex> lock(mu_);
  idle_.push_back(std::move(link));
}

namespace {

// Reads a reply header and, for an error, its message. *in_step: the connection can carry the
// next request (the server answered this one whole and kept the connection open).
Status ReadReply(tensor_socket::Link& link, ReplyHeader* r, Clock::time_point deadline, const std::string& what, bool* in_step) {
  *in_step = false;
  if (Io io = link.Recv(r, sizeof(*r), deadline); io != Io::kOk) return Failed(io, what);
  if (r->magic != kMagic) return absl::DataLossError(what + ": malformed reply");
  if (r->code == 0) {
    *in_step = true;
    return absl::OkStatus();
  }
  if (r->payload > 1 << 20) return absl::DataLossError(what + ": malformed error reply");
  std::string message(r->payload, '\0');
  if (Io io = link.Recv(message.data(), message.size(), deadline); io != Io::kOk) return Failed(io, what);
  const auto code = static_cast<absl::StatusCode>(r->code);
  // The server closes after a request it could not frame; a refusal by the shard keeps it open.
  *in_step = code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kFailedPrecondition;
  return Status(code, what + ": " + message);
}

}  // namespace

Status TensorSocketClient::Pull(int32_t replica, FloatPieces out, PullReply* reply, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string what = "Pull to tensor socket " + host_ + ":" + std::to_string(port_);
  DB_ASSIGN_OR_RETURN(tensor_socket::Link link, Acquire(deadline));
  RequestHeader h;
  h.op = tensor_socket::kPull;
  h.replica = replica;
  if (Io io = link.Send(&h, sizeof(h), deadline); io != Io::kOk) return Failed(io, what);
  ReplyHeader r;
  bool in_step = false;
  Status s = ReadReply(link, &r, deadline, what, &in_step);
  uint64_t want = 0;
  for (const auto& p : out) want += p.size() * sizeof(float);
  if (s.ok() && r.payload != want) {
    s = absl::DataLossError(what + ": the shard sent " + std::to_string(r.payload / sizeof(float)) +
                            " floats, its range holds " + std::to_string(want / sizeof(float)));
    in_step = false;
  }
  // Straight into the caller's pieces: one receive each, no buffer in between.
  for (size_t i = 0; s.ok() && i < out.size(); ++i)
    if (Io io = link.Recv(out[i].data(), out[i].size() * sizeof(float), deadline); io != Io::kOk) {
      s = Failed(io, what);
      in_step = false;
    }
  Release(std::move(link), in_step);
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
  DB_ASSIGN_OR_RETURN(tensor_socket::Link link, Acquire(deadline));
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
  if (Io io = link.Send(v, 2, deadline); io != Io::kOk) return Failed(io, what);
  ReplyHeader r;
  bool in_step = false;
  Status s = ReadReply(link, &r, deadline, what, &in_step);
  Release(std::move(link), in_step);
  if (!s.ok()) return s;
  reply->version = r.version;
  reply->staleness = r.staleness;
  reply->duplicate = (r.flags & tensor_socket::kDuplicate) != 0;
  reply->incarnation = r.incarnation;
  reply->durable_version = r.durable_version;
  return absl::OkStatus();
}

}  // namespace distbelief
