// Transport: how replicas and the coordinator reach parameter shards and workers. One interface,
// two implementations: InprocTransport (threads of one process; the default on one machine, no
// network) and GrpcTransport (processes and machines). Code above this layer never knows which.
// The Transport is injected through options, never a singleton (as leveldb injects Env).
//
// Every call takes a timeout and returns a Status: kUnavailable (peer unreachable: retry),
// kDeadlineExceeded, kUnauthenticated (wrong or missing secret), kInvalidArgument (a request the
// peer refused). Channels are thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "distbelief/base/status.h"
#include "distbelief/distbelief.pb.h"

namespace distbelief {

using Millis = std::chrono::milliseconds;

class ShardChannel {
 public:
  virtual ~ShardChannel() = default;
  virtual Status Pull(const rpc::PullRequest& req, rpc::PullReply* reply, Millis timeout) = 0;
  virtual Status Push(const rpc::PushRequest& req, rpc::PushReply* reply, Millis timeout) = 0;
  virtual Status VectorOp(const rpc::VectorOpRequest& req, rpc::VectorOpReply* reply,
                          Millis timeout) = 0;
  virtual Status Info(rpc::ShardInfoReply* reply, Millis timeout) = 0;
};

class WorkerChannel {
 public:
  virtual ~WorkerChannel() = default;
  virtual Status RunPortion(const rpc::PortionRequest& req, rpc::PortionReply* reply,
                            Millis timeout) = 0;
  virtual Status Deliver(const rpc::ActivationMessage& msg, Millis timeout) = 0;
};

// The serving side: what a shard or worker does with a request. Transports call Authorize first
// with the secret the caller presented.
class ParameterShard;
class WorkerService {
 public:
  virtual ~WorkerService() = default;
  virtual Status RunPortion(const rpc::PortionRequest& req, rpc::PortionReply* reply) {
    return absl::UnimplementedError("this worker runs no Sandblaster portions");
  }
  // A model partition receiving a boundary message (mp/partition.h).
  virtual Status Deliver(const rpc::ActivationMessage& msg) {
    return absl::UnimplementedError("this worker is not a model partition");
  }
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Serves `shard` (or `worker`) at `address` until the returned handle is destroyed.
  // The address is a name for InprocTransport and host:port for gRPC (port 0 picks a free port;
  // the handle's address() tells which).
  class Server {
   public:
    virtual ~Server() = default;
    virtual std::string address() const = 0;
  };
  virtual StatusOr<std::unique_ptr<Server>> ServeShard(const std::string& address,
                                                       ParameterShard* shard) = 0;
  virtual StatusOr<std::unique_ptr<Server>> ServeWorker(const std::string& address,
                                                        WorkerService* worker) = 0;
  virtual StatusOr<std::shared_ptr<ShardChannel>> ConnectShard(const std::string& address) = 0;
  virtual StatusOr<std::shared_ptr<WorkerChannel>> ConnectWorker(const std::string& address) = 0;
};

struct TransportOptions {
  std::string secret;          // gRPC: shared secret every RPC carries and servers demand; "" = none
  std::string tls_cert_file;   // gRPC: server certificate (PEM); with tls_key_file enables TLS
  std::string tls_key_file;    // gRPC: server private key (PEM)
  std::string tls_root_file;   // gRPC: CA the client trusts (PEM); set to use TLS as a client
  std::string tls_target_name; // gRPC: expected server name in the certificate ("" = host)
  int max_message_bytes = 256 << 20;  // larger requests are refused with kResourceExhausted
  // gRPC: shards also serve pulls and pushes on a plain TCP port of the same host, and clients
  // use it (grpc/tensor_socket.h: 2-4x gRPC's throughput, the same secret, checked by HMAC).
  // Off when either side uses TLS; false keeps every call on gRPC.
  bool tensor_socket = true;
};

std::unique_ptr<Transport> MakeInprocTransport(const TransportOptions& o);
// Servers bind exactly the address given ("127.0.0.1:0" picks a free loopback port).
std::unique_ptr<Transport> MakeGrpcTransport(const TransportOptions& o);

}  // namespace distbelief
