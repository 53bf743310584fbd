// libFuzzer harness: a shard's tensor socket (transport/grpc/tensor_socket.h) as a hostile client
// sees it. One server runs for the whole session, on loopback, over a 64-float shard. Each input
// is one connection: if its first byte is odd the harness answers the handshake correctly (so
// the rest fuzzes the request frames), else the rest is sent in place of the handshake. The
// server must answer or close, never crash or hang (a reply not finished within 20 s aborts).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/hmac.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "distbelief/ps/parameter_shard.h"
#include "distbelief/transport/grpc/tensor_socket.h"

namespace {

using namespace distbelief;

constexpr char kSecret[] = "fuzz-secret";

struct Served {
  std::unique_ptr<ParameterShard> shard;
  std::unique_ptr<TensorSocketServer> server;
};

Served& Server() {
  static Served* s = [] {
    auto* out = new Served;
    ShardOptions o;
    std::vector<float> initial(64, 0.5f);
    out->shard = std::move(ParameterShard::Create(o, initial).value());
    out->server = std::move(TensorSocketServer::Start("127.0.0.1", out->shard.get(), kSecret, 1 << 16).value());
    return out;
  }();
  return *s;
}

bool SendAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;  // libFuzzer's timer signal
    if (w <= 0) return false;                // the server closed: allowed
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  Served& s = Server();
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(s.server->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Closed with a reset, not TIME_WAIT: a minute of fuzzing opens more connections than there
  // are ephemeral ports.
  const linger reset{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
  int connected;
  do connected = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  while (connected != 0 && errno == EINTR);
  if (connected != 0) std::abort();  // the server must accept every connection
  timeval tv{20, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  unsigned char hello[40];
  size_t got = 0;
  while (got < sizeof(hello)) {
    const ssize_t r = ::recv(fd, hello + got, sizeof(hello) - got, 0);
    if (r < 0 && errno == EINTR) continue;  // libFuzzer's timer signal
    if (r <= 0) std::abort();                // the server must greet every connection
    got += static_cast<size_t>(r);
  }
  bool open = true;
  if (data[0] & 1) {
    unsigned char mac[32];
    unsigned int len = sizeof(mac);
    HMAC(EVP_sha256(), kSecret, sizeof(kSecret) - 1, hello + 8, 32, mac, &len);
    open = SendAll(fd, mac, sizeof(mac));
  }
  if (open) SendAll(fd, data + 1, size - 1);
  ::shutdown(fd, SHUT_WR);
  char buf[4096];
  for (;;) {  // until the server closes its side
    const ssize_t r = ::recv(fd, buf, sizeof(buf), 0);
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) std::abort();  // the server hung
      break;                                                      // reset: closed
    }
  }
  ::close(fd);
  return 0;
}
