// Push and pull of 4 MiB tensors through the gRPC transport against raw loopback TCP, measured
// side by side in one run. Raw TCP: a client writes 4 MiB and the server answers with one byte
// (push), or the client sends one byte and the server answers with 4 MiB (pull). The transport:
// the ParameterShard's Push (with SGD applied) and Pull of a 1 Mi-float shard, over the shard's
// tensor socket as replicas send them, and all on gRPC (data_plane = "grpc"). gRPC's own ceiling:
// the same calls through gRPC's generic API with zero-copy slices and one copy on each side (the
// least any gRPC transport of ours could do), to tell our overhead from gRPC's.
// Usage: transport_bench [seconds per measurement] [rounds]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "distbelief/ps/parameter_client.h"
#include "distbelief/ps/parameter_shard.h"
#include "distbelief/transport/transport.h"

using namespace distbelief;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kBytes = 4 << 20;

bool WriteAll(int fd, const char* p, size_t n) {
  while (n) {
    const ssize_t w = ::send(fd, p, n, 0);
    if (w <= 0) return false;
    p += w;
    n -= w;
  }
  return true;
}
bool ReadAll(int fd, char* p, size_t n) {
  while (n) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r <= 0) return false;
    p += r;
    n -= r;
  }
  return true;
}

// Runs `op` repeatedly for `seconds`; returns GB/s of kBytes per op.
template <typename F>
double Rate(double seconds, F op) {
  op();
  int n = 0;
  const auto t0 = Clock::now();
  double el = 0;
  do {
    op();
    ++n;
    el = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (el < seconds);
  return n * double(kBytes) / el / 1e9;
}

struct Rates {
  double push = 0, pull = 0;
  void Best(const Rates& o) {
    push = std::max(push, o.push);
    pull = std::max(pull, o.pull);
  }
};

// Push and pull of one 1 Mi-float (4 MiB) shard with plain SGD through the gRPC transport, its
// bulk calls over the shard's tensor socket (as replicas send them) or all on gRPC.
// tls_dir: "" for plain TCP, else a directory holding a self-signed localhost.pem / localhost.key
// that the shard serves and the client trusts (TLS on gRPC and on the tensor socket).
Rates MeasureGrpc(double seconds, bool tensor_socket, const std::string& tls_dir = "") {
  const int64_t n = kBytes / sizeof(float);
  std::vector<float> init(n, 0.5f), grad(n, 1e-6f);
  auto shard = ParameterShard::Create(ShardOptions{}, init);
  TransportOptions to;
  to.secret = "bench";
  to.data_plane = tensor_socket ? DataPlane::kSocket : DataPlane::kGrpc;
  if (!tls_dir.empty()) {
    to.tls_cert_file = to.tls_root_file = tls_dir + "/localhost.pem";
    to.tls_key_file = tls_dir + "/localhost.key";
    to.tls_target_name = "localhost";
  }
  auto transport = MakeGrpcTransport(to);
  auto srv = transport->ServeShard("127.0.0.1:0", shard->get());
  if (!srv.ok()) {
    std::fprintf(stderr, "%s\n", srv.status().ToString().c_str());
    std::exit(1);
  }
  auto ch = transport->ConnectShard((*srv)->address());
  PushReply push_reply;
  PullReply pull_reply;
  std::vector<float> params(n);
  const std::span<float> out(params);
  Rates r;
  r.push = Rate(seconds, [&] {
    if (!(*ch)->Push({}, grad, &push_reply, Millis(10000)).ok()) std::abort();
  });
  r.pull = Rate(seconds, [&] {
    if (!(*ch)->Pull(-1, std::span<const std::span<float>>(&out, 1), &pull_reply, Millis(10000)).ok()) std::abort();
  });
  return r;
}

// The replica's real path: ParameterClient pulling into and pushing from a 1 Mi-float vector
// split over `shards` shards, each its own server and connection, all shards at once.
Rates MeasureClient(double seconds, int shards) {
  const int64_t n = kBytes / sizeof(float);
  std::vector<float> params(n, 0.5f), grad(n, 1e-6f);
  const ShardMap map(n, shards);
  TransportOptions to;
  to.secret = "bench";
  auto transport = MakeGrpcTransport(to);
  std::vector<std::unique_ptr<ParameterShard>> owned;
  std::vector<std::unique_ptr<Transport::Server>> servers;
  std::vector<std::string> addresses;
  for (int s = 0; s < shards; ++s) {
    ShardOptions so;
    so.shard = s;
    owned.push_back(std::move(*ParameterShard::Create(so, std::vector<float>(map.size(s), 0.5f))));
    servers.push_back(std::move(*transport->ServeShard("127.0.0.1:0", owned.back().get())));
    addresses.push_back(servers.back()->address());
  }
  auto channels = ConnectShards(transport.get(), addresses);
  if (!channels.ok()) std::abort();
  auto client = ParameterClient::Create(std::move(*channels), map, ClientOptions{});
  if (!client.ok()) std::abort();
  Rates r;
  r.push = Rate(seconds, [&] {
    if (!(*client)->PushAsync(grad, std::vector<uint64_t>(shards, 0), 0).Wait(Millis(10000)).ok()) std::abort();
  });
  r.pull = Rate(seconds, [&] {
    if (!(*client)->Pull(params).ok()) std::abort();
  });
  return r;
}

// gRPC's ceiling: unary calls of raw bytes through the generic API (no protobuf), the request
// borrowing an owned copy of the tensor, the reply a snapshot handed over without a further copy,
// the receiver copying the slices out once.
void CopyOut(const grpc::ByteBuffer& b, char* dst) {
  std::vector<grpc::Slice> slices;
  if (!b.Dump(&slices).ok()) std::abort();
  for (const grpc::Slice& s : slices) {
    std::memcpy(dst, s.begin(), s.size());
    dst += s.size();
  }
}

grpc::Slice OwnedCopy(const char* p, size_t n) {
  char* copy = static_cast<char*>(std::malloc(n));
  std::memcpy(copy, p, n);
  return grpc::Slice(copy, n, [](void* q) { std::free(q); });
}

class RawService : public grpc::CallbackGenericService {
 public:
  std::vector<char> data = std::vector<char>(kBytes, 1);
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    class Reactor : public grpc::ServerGenericBidiReactor {
     public:
      Reactor(RawService* svc, bool push) : svc_(svc), push_(push) { StartRead(&req_); }
      void OnReadDone(bool ok) override {
        if (!ok) return Finish(grpc::Status::OK);
        grpc::Slice reply = push_ ? grpc::Slice("k", 1) : OwnedCopy(svc_->data.data(), kBytes);
        if (push_) CopyOut(req_, svc_->data.data());
        resp_ = grpc::ByteBuffer(&reply, 1);
        StartWriteAndFinish(&resp_, grpc::WriteOptions(), grpc::Status::OK);
      }
      void OnDone() override { delete this; }

     private:
      RawService* svc_;
      bool push_;
      grpc::ByteBuffer req_, resp_;
    };
    return new Reactor(this, ctx->method() == "/bench/Push");
  }
};

Rates MeasureGrpcCeiling(double seconds) {
  RawService svc;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.RegisterCallbackGenericService(&svc);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  grpc::GenericStub stub(grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials(), args));
  auto call = [&](const char* method, grpc::ByteBuffer* req, grpc::ByteBuffer* resp) {
    grpc::ClientContext ctx;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&ctx, method, grpc::StubOptions(), req, resp, [&](grpc::Status s) { done.set_value(s); });
    if (!done.get_future().get().ok()) std::abort();
  };
  std::vector<char> grad(kBytes, 2), in(kBytes);
  Rates r;
  r.push = Rate(seconds, [&] {
    grpc::Slice s = OwnedCopy(grad.data(), kBytes);
    grpc::ByteBuffer req(&s, 1), resp;
    call("/bench/Push", &req, &resp);
  });
  r.pull = Rate(seconds, [&] {
    grpc::Slice s("p", 1);
    grpc::ByteBuffer req(&s, 1), resp;
    call("/bench/Pull", &req, &resp);
    CopyOut(resp, in.data());
  });
  server->Shutdown();
  return r;
}

// AES-128-GCM on one core as the encrypted socket uses it: 256 KiB records sealed from a 4 MiB
// tensor into a record buffer (GB/s).
double MeasureAesGcm(double seconds) {
  const unsigned char key[16] = {1}, iv[12] = {2};
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), nullptr, key, nullptr);
  constexpr size_t kRecord = 256 << 10;
  std::vector<unsigned char> src(kBytes, 3), dst(kRecord + 16);
  const double rate = Rate(seconds, [&] {
    for (size_t off = 0; off < kBytes; off += kRecord) {
      int n = 0;
      EVP_EncryptInit_ex(c, nullptr, nullptr, nullptr, iv);
      EVP_EncryptUpdate(c, dst.data(), &n, src.data() + off, kRecord);
      EVP_EncryptFinal_ex(c, dst.data() + n, &n);
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, dst.data() + kRecord);
    }
  });
  EVP_CIPHER_CTX_free(c);
  return rate;
}

// Raw TCP push and pull over one loopback connection.
Rates MeasureTcp(double seconds) {
  // Server on a loopback port: 'P' = receive 4 MiB then ack; 'L' = send 4 MiB.
  const int ls = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(ls, reinterpret_cast<sockaddr*>(&addr), &len);
  ::listen(ls, 1);
  std::thread server([ls] {
    const int fd = ::accept(ls, nullptr, nullptr);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::vector<char> buf(kBytes);
    char cmd;
    while (ReadAll(fd, &cmd, 1)) {
      if (cmd == 'P') {
        if (!ReadAll(fd, buf.data(), kBytes) || !WriteAll(fd, "k", 1)) break;
      } else {
        if (!WriteAll(fd, buf.data(), kBytes)) break;
      }
    }
    ::close(fd);
  });
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  std::vector<char> payload(kBytes, 1), in(kBytes);
  Rates r;
  r.push = Rate(seconds, [&] {
    char ack;
    WriteAll(fd, "P", 1);
    WriteAll(fd, payload.data(), kBytes);
    ReadAll(fd, &ack, 1);
  });
  r.pull = Rate(seconds, [&] {
    WriteAll(fd, "L", 1);
    ReadAll(fd, in.data(), kBytes);
  });
  ::close(fd);
  server.join();
  ::close(ls);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 1.0;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  // The second core is shared and noisy: the two transports take turns, round after round, and
  // each keeps its best round.
  // A throwaway self-signed certificate for the TLS measurements.
  const std::string tls_dir = "/tmp/transport_bench_tls";
  const std::string cmd = "mkdir -p " + tls_dir + " && openssl req -x509 -newkey rsa:2048 -nodes -days 1 "
                          "-subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout " + tls_dir +
                          "/localhost.key -out " + tls_dir + "/localhost.pem >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "openssl could not make a certificate in %s\n", tls_dir.c_str());
    return 1;
  }
  Rates tcp, transport, grpc, ceiling, tls, grpc_tls, client[3];
  double aes = 0;
  const int shard_counts[3] = {1, 2, 4};
  for (int i = 0; i < rounds; ++i) {
    tcp.Best(MeasureTcp(seconds));
    transport.Best(MeasureGrpc(seconds, true));
    tls.Best(MeasureGrpc(seconds, true, tls_dir));
    grpc.Best(MeasureGrpc(seconds, false));
    grpc_tls.Best(MeasureGrpc(seconds, false, tls_dir));
    aes = std::max(aes, MeasureAesGcm(seconds));
    ceiling.Best(MeasureGrpcCeiling(seconds));
    for (int c = 0; c < 3; ++c) client[c].Best(MeasureClient(seconds, shard_counts[c]));
  }
  std::printf("4 MiB tensors over loopback, best of %d rounds of %.1f s per measurement\n", rounds, seconds);
  std::printf("%-6s %9s %10s %6s %11s %6s %13s %6s\n", "", "raw TCP", "transport", "ratio", "gRPC only", "ratio",
              "gRPC ceiling", "ratio");
  for (int k = 0; k < 2; ++k) {
    const auto get = [&](const Rates& r) { return k == 0 ? r.push : r.pull; };
    std::printf("%-6s %9.2f %10.2f %5.0f%% %11.2f %5.0f%% %13.2f %5.0f%%\n", k == 0 ? "push" : "pull", get(tcp),
                get(transport), 100 * get(transport) / get(tcp), get(grpc), 100 * get(grpc) / get(tcp), get(ceiling),
                100 * get(ceiling) / get(tcp));
  }
  std::printf("(GB/s. transport: the gRPC transport as replicas use it, pushes and pulls over the shard's\n"
              " tensor socket (HMAC handshake with the secret), push includes the shard's NaN check and SGD\n"
              " update of 1 Mi floats; gRPC only: the same calls with data_plane = \"grpc\"; gRPC ceiling: raw\n"
              " bytes through gRPC's generic API, zero-copy slices, one copy per side)\n\n");
  std::printf("Encrypted: TLS 1.3 on gRPC and on the shard's tensor socket (AES-128-GCM)\n");
  std::printf("%-6s %9s %10s %6s %11s %6s\n", "", "raw TCP", "TLS socket", "ratio", "TLS gRPC", "ratio");
  for (int k = 0; k < 2; ++k) {
    const auto get = [&](const Rates& r) { return k == 0 ? r.push : r.pull; };
    std::printf("%-6s %9.2f %10.2f %5.0f%% %11.2f %5.0f%%\n", k == 0 ? "push" : "pull", get(tcp), get(tls),
                100 * get(tls) / get(tcp), get(grpc_tls), 100 * get(grpc_tls) / get(tcp));
  }
  // The sender seals each record and then sends it, one after the other on one thread: its rate
  // cannot beat 1 / (1/AES + 1/TCP), whatever the receiver does.
  const double bound = 1 / (1 / aes + 1 / tcp.push);
  std::printf("AES-128-GCM on one core %.2f GB/s; a sender that seals then sends: at most %.2f GB/s = %.0f%% of raw TCP\n",
              aes, bound, 100 * bound / tcp.push);
  std::printf("(GB/s. TLS socket: the transport with a certificate, pulls and pushes over the tensor socket\n"
              " under TLS 1.3 then AES-128-GCM records keyed from it; TLS gRPC: the same calls with\n"
              " data_plane = \"grpc\", all through gRPC's TLS)\n\n");
  std::printf("ParameterClient over the transport, the same 4 MiB split over S shards (all at once)\n");
  std::printf("%-8s %9s %14s %8s %14s %8s\n", "shards", "", "push GB/s", "of TCP", "pull GB/s", "of TCP");
  for (int c = 0; c < 3; ++c)
    std::printf("%-8d %9s %14.2f %7.0f%% %14.2f %7.0f%%\n", shard_counts[c], "", client[c].push,
                100 * client[c].push / tcp.push, client[c].pull, 100 * client[c].pull / tcp.pull);
  return 0;
}
