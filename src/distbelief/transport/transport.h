// Transport: how replicas and coordinators reach parameter shards and workers. One interface,
// three implementations: the in-process transport (calls on the caller's thread; the default on
// one machine, no network), gRPC (processes and machines; grpc/ is the only code that sees gRPC or
// protobuf) and the fault-injecting wrapper tests use (fault_injection.h). Code above this layer
// never knows which. The Transport is injected through options, never a singleton (as LevelDB
// injects Env).
//
// A shard is served as itself (ParameterShard, typed calls of ps/shard_api.h); a worker as a
// WorkerService. Every call a channel makes takes a timeout and returns a Status: kUnavailable
// (peer unreachable: retry), kDeadlineExceeded, kUnauthenticated (wrong or missing secret), or
// the peer's own status. Channels are thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "distbelief/base/status.h"
#include "distbelief/ps/parameter_shard.h"
#include "distbelief/ps/shard_api.h"

namespace distbelief {

// ---- Workers: a Sandblaster replica taking work portions, a model partition taking boundary
// slices from its peers (Dean et al. 2012, §3 and §4.2). ----

// Sandblaster: compute the summed gradient of examples [begin, end) of the workload's fixed
// order with the parameters of batch `batch`, and add it to the shards under (batch, portion).
struct PortionRequest {
  int64_t batch = 0, portion = 0, begin = 0, end = 0;
};
struct PortionReply {
  double loss_sum = 0.0;  // over the portion's examples
  int64_t examples = 0;
};

// Model parallelism: one partition's boundary activations (or their gradients) for another.
struct ActivationMessage {
  int32_t replica = 0;
  int32_t from = 0, to = 0;  // partitions
  int64_t step = 0;
  int32_t layer = 0;         // the layer whose output (forward) or input (backward) this is
  bool backward = false;
  int64_t begin = 0, end = 0;  // the slice [begin, end) of the partitioned axis carried
  std::vector<float> values;   // (B, slice) in the layer's layout
};

// What a worker does with a request; each call answers kUnimplemented unless overridden.
class WorkerService {
 public:
  virtual ~WorkerService() = default;
  virtual Status RunPortion(const PortionRequest& req, PortionReply* reply) {
    return absl::UnimplementedError("this worker runs no Sandblaster portions");
  }
  virtual Status Deliver(ActivationMessage msg) {
    return absl::UnimplementedError("this worker is not a model partition");
  }
};

class WorkerChannel {
 public:
  virtual ~WorkerChannel() = default;
  virtual Status RunPortion(const PortionRequest& req, PortionReply* reply, Millis timeout) = 0;
  virtual Status Deliver(const ActivationMessage& msg, Millis timeout) = 0;
};

// ---- The transport ----

enum class TransportKind { kInproc, kGrpc };
enum class DataPlane {
  kSocket,  // gRPC shards also serve pulls and pushes on a plain TCP port (grpc/tensor_socket.h)
  kGrpc,    // every call on gRPC
};

struct TransportOptions {
  TransportKind kind = TransportKind::kInproc;
  std::string secret;           // gRPC: shared secret every call carries and servers demand; "" = none
  std::string tls_cert_file;    // gRPC: server certificate (PEM); with tls_key_file enables TLS
  std::string tls_key_file;     // gRPC: server private key (PEM)
  std::string tls_root_file;    // gRPC: CA the client trusts (PEM); set to use TLS as a client
  std::string tls_target_name;  // gRPC: expected server name in the certificate ("" = host)
  int max_message_bytes = 256 << 20;  // larger requests are refused with kResourceExhausted
  // gRPC: the shards' data plane (under TLS when gRPC is: the same certificate and root).
  DataPlane data_plane = DataPlane::kSocket;
  // gRPC servers' bounds, so connections opened and abandoned cannot exhaust a shard: a peer
  // gets `handshake_timeout` to finish its HTTP/2 (and TLS) handshake, a connection without calls
  // for `idle_timeout` is closed, at most `max_streams` calls run on one connection, and the
  // server's buffers share `max_memory_bytes` (0: 4 x max_message_bytes, at least 256 MiB);
  // beyond it gRPC closes idle connections first. The tensor socket has its own (tensor_socket.h).
  Millis handshake_timeout{10000};
  Millis idle_timeout{300000};
  int max_streams = 64;
  int64_t max_memory_bytes = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Serves `shard` (or `worker`) at `address` until the returned handle is destroyed. The address
  // is a name in process and host:port for gRPC (port 0 picks a free port; the handle's address()
  // tells which). The shard or worker must outlive the handle.
  class Server {
   public:
    virtual ~Server() = default;
    virtual std::string address() const = 0;
  };
  virtual StatusOr<std::unique_ptr<Server>> ServeShard(const std::string& address, ParameterShard* shard) = 0;
  virtual StatusOr<std::unique_ptr<Server>> ServeWorker(const std::string& address, WorkerService* worker) = 0;
  virtual StatusOr<std::shared_ptr<ShardChannel>> ConnectShard(const std::string& address) = 0;
  virtual StatusOr<std::shared_ptr<WorkerChannel>> ConnectWorker(const std::string& address) = 0;
  // Where to serve something called `name` on this machine: in process the name itself ("" picks
  // a fresh one; a name served twice is kAlreadyExists), over gRPC a free loopback port.
  virtual std::string LocalAddress(const std::string& name) const = 0;
};

std::unique_ptr<Transport> MakeInprocTransport(const TransportOptions& o);
// Servers bind exactly the address given ("127.0.0.1:0" picks a free loopback port).
std::unique_ptr<Transport> MakeGrpcTransport(const TransportOptions& o);
// The transport o.kind names.
std::unique_ptr<Transport> MakeTransport(const TransportOptions& o);

// Channels to every address, in order.
StatusOr<std::vector<std::shared_ptr<ShardChannel>>> ConnectShards(Transport* transport,
                                                                   const std::vector<std::string>& addresses);

}  // namespace distbelief
