// GrpcTransport: the only code that sees gRPC. grpc::Status becomes Status here and nowhere else.
// Every call carries the shared secret in the "x-distbelief-secret" metadata; servers compare it
// in constant time, refuse a missing or wrong one with UNAUTHENTICATED and log the peer.
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "absl/strings/match.h"
#include "distbelief/base/logging.h"
#include "distbelief/distbelief.grpc.pb.h"
#include "distbelief/ps/parameter_shard.h"
#include "distbelief/transport/grpc/tensor_socket.h"
#include "distbelief/transport/transport.h"

namespace distbelief {
namespace {

constexpr char kSecretKey[] = "x-distbelief-secret";

Status FromGrpc(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  const std::string msg = what + ": " + s.error_message();
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE: return absl::UnavailableError(msg);
    case grpc::StatusCode::DEADLINE_EXCEEDED: return absl::DeadlineExceededError(msg);
    case grpc::StatusCode::UNAUTHENTICATED: return absl::UnauthenticatedError(msg);
    case grpc::StatusCode::INVALID_ARGUMENT: return absl::InvalidArgumentError(msg);
    case grpc::StatusCode::FAILED_PRECONDITION: return absl::FailedPreconditionError(msg);
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return absl::ResourceExhaustedError(msg);
    case grpc::StatusCode::ABORTED: return absl::AbortedError(msg);
    case grpc::StatusCode::NOT_FOUND: return absl::NotFoundError(msg);
    default: return absl::InternalError(msg);
  }
}

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument: code = grpc::StatusCode::INVALID_ARGUMENT; break;
    case absl::StatusCode::kFailedPrecondition: code = grpc::StatusCode::FAILED_PRECONDITION; break;
    case absl::StatusCode::kUnavailable: code = grpc::StatusCode::UNAVAILABLE; break;
    case absl::StatusCode::kUnauthenticated: code = grpc::StatusCode::UNAUTHENTICATED; break;
    case absl::StatusCode::kDataLoss: code = grpc::StatusCode::DATA_LOSS; break;
    case absl::StatusCode::kAborted: code = grpc::StatusCode::ABORTED; break;
    default: break;
  }
  return grpc::Status(code, std::string(s.message()));
}

bool SecretsMatch(const std::string& a, const std::string& b) {
  // Constant-time in the length of the expected secret.
  unsigned char diff = a.size() != b.size();
  for (size_t i = 0; i < b.size(); ++i) diff |= static_cast<unsigned char>((i < a.size() ? a[i] : 0) ^ b[i]);
  return diff == 0;
}

grpc::Status CheckSecret(grpc::ServerContext* ctx, const std::string& secret) {
  if (secret.empty()) return grpc::Status::OK;
  const auto& md = ctx->client_metadata();
  auto it = md.find(kSecretKey);
  const std::string given = it == md.end() ? "" : std::string(it->second.data(), it->second.size());
  if (SecretsMatch(given, secret)) return grpc::Status::OK;
  LOG_WARN << "refused an RPC from " << ctx->peer() << ": "
           << (it == md.end() ? "no secret" : "wrong secret");
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing or wrong shared secret");
}

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ShardServiceImpl final : public rpc::ParameterShard::Service {
 public:
  ShardServiceImpl(ParameterShard* shard, std::string secret, int data_port)
      : shard_(shard), secret_(std::move(secret)), data_port_(data_port) {}
  grpc::Status Pull(grpc::ServerContext* ctx, const rpc::PullRequest* req, rpc::PullReply* reply) override {
    grpc::Status a = CheckSecret(ctx, secret_);
    return a.ok() ? ToGrpc(shard_->Pull(*req, reply)) : a;
  }
  grpc::Status Push(grpc::ServerContext* ctx, const rpc::PushRequest* req, rpc::PushReply* reply) override {
    grpc::Status a = CheckSecret(ctx, secret_);
    return a.ok() ? ToGrpc(shard_->Push(*req, reply)) : a;
  }
  grpc::Status VectorOp(grpc::ServerContext* ctx, const rpc::VectorOpRequest* req, rpc::VectorOpReply* reply) override {
    grpc::Status a = CheckSecret(ctx, secret_);
    return a.ok() ? ToGrpc(shard_->VectorOp(*req, reply)) : a;
  }
  grpc::Status Info(grpc::ServerContext* ctx, const rpc::ShardInfoRequest*, rpc::ShardInfoReply* reply) override {
    grpc::Status a = CheckSecret(ctx, secret_);
    if (!a.ok()) return a;
    reply->set_data_port(static_cast<uint32_t>(data_port_));
    return ToGrpc(shard_->Info(reply));
  }

 private:
  ParameterShard* shard_;
  std::string secret_;
  int data_port_;
};

class WorkerServiceImpl final : public rpc::Worker::Service {
 public:
  WorkerServiceImpl(WorkerService* worker, std::string secret) : worker_(worker), secret_(std::move(secret)) {}
  grpc::Status RunPortion(grpc::ServerContext* ctx, const rpc::PortionRequest* req, rpc::PortionReply* reply) override {
    grpc::Status a = CheckSecret(ctx, secret_);
    return a.ok() ? ToGrpc(worker_->RunPortion(*req, reply)) : a;
  }
  grpc::Status Deliver(grpc::ServerContext* ctx, const rpc::ActivationMessage* msg, rpc::DeliverReply*) override {
    grpc::Status a = CheckSecret(ctx, secret_);
    return a.ok() ? ToGrpc(worker_->Deliver(*msg)) : a;
  }

 private:
  WorkerService* worker_;
  std::string secret_;
};

class GrpcServer : public Transport::Server {
 public:
  GrpcServer(std::unique_ptr<grpc::Service> service, std::unique_ptr<grpc::Server> server, std::string address)
      : service_(std::move(service)), server_(std::move(server)), address_(std::move(address)) {}
  std::unique_ptr<TensorSocketServer> tensor_socket;  // the shard's data plane, if it has one
  ~GrpcServer() override {
    // Give calls in flight a moment, then cancel them.
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  }
  std::string address() const override { return address_; }

 private:
  std::unique_ptr<grpc::Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

template <typename Stub>
class Client {
 public:
  Client(std::shared_ptr<grpc::Channel> channel, std::string secret, std::string address)
      : stub_(Stub::NewStub(channel)), secret_(std::move(secret)), address_(std::move(address)) {}

 protected:
  // Runs one unary call with a deadline and the secret, converting the status.
  template <typename Req, typename Reply, typename Method>
  Status Call(Method method, const Req& req, Reply* reply, Millis timeout, const char* what) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    if (!secret_.empty()) ctx.AddMetadata(kSecretKey, secret_);
    return FromGrpc((stub_.get()->*method)(&ctx, req, reply), std::string(what) + " to " + address_);
  }
  std::unique_ptr<typename Stub::Stub> stub_;
  std::string secret_, address_;
};

class GrpcShardChannel : public ShardChannel, Client<rpc::ParameterShard> {
 public:
  using S = rpc::ParameterShard::Stub;
  GrpcShardChannel(std::shared_ptr<grpc::Channel> channel, std::string secret, std::string address,
                   bool tensor_socket, int64_t max_bytes)
      : Client(std::move(channel), std::move(secret), std::move(address)), use_socket_(tensor_socket),
        max_bytes_(max_bytes) {}
  Status Pull(const rpc::PullRequest& req, rpc::PullReply* reply, Millis t) override {
    std::shared_ptr<TensorSocketClient> socket;
    DB_RETURN_IF_ERROR(Socket(t, &socket));
    if (socket) {
      Status s = socket->Pull(req, reply, t);
      if (!FallBack(s)) return s;
    }
    return Call(&S::Pull, req, reply, t, "Pull");
  }
  Status Push(const rpc::PushRequest& req, rpc::PushReply* reply, Millis t) override {
    std::shared_ptr<TensorSocketClient> socket;
    if (!req.accumulate()) DB_RETURN_IF_ERROR(Socket(t, &socket));
    if (socket) {
      Status s = socket->Push(req, reply, t);
      if (!FallBack(s)) return s;
    }
    return Call(&S::Push, req, reply, t, "Push");
  }
  Status VectorOp(const rpc::VectorOpRequest& req, rpc::VectorOpReply* reply, Millis t) override {
    return Call(&S::VectorOp, req, reply, t, "VectorOp");
  }
  Status Info(rpc::ShardInfoReply* reply, Millis t) override {
    return Call(&S::Info, rpc::ShardInfoRequest(), reply, t, "Info");
  }

 private:
  // The shard's tensor socket, learned from its Info reply once; nullptr: none (use gRPC).
  Status Socket(Millis t, std::shared_ptr<TensorSocketClient>* out) {
    if (!use_socket_) return absl::OkStatus();
    std::lock_guard<std::mutex> lock(mu_);
    if (std::chrono::steady_clock::now() < unreachable_until_) return absl::OkStatus();
    if (!resolved_) {
      rpc::ShardInfoReply info;
      DB_RETURN_IF_ERROR(Info(&info, t));
      if (info.data_port() != 0)
        socket_ = std::make_shared<TensorSocketClient>(address_.substr(0, address_.rfind(':')),
                                                       static_cast<int>(info.data_port()), secret_, max_bytes_);
      resolved_ = true;
    }
    *out = socket_;
    return absl::OkStatus();
  }
  // After a tensor-socket call: true if it failed for want of a connection, so the call goes
  // through gRPC instead (a push may then be applied twice, as with any retry). A lost connection
  // may mean a restarted shard on a new data port: ask for the port again next time. A port that
  // cannot be reached at all (a firewall letting only gRPC through) is left alone for 10 s.
  bool FallBack(const Status& s) {
    if (!absl::IsUnavailable(s) && !absl::IsDeadlineExceeded(s)) return false;
    std::lock_guard<std::mutex> lock(mu_);
    resolved_ = false;
    socket_.reset();
    if (absl::StrContains(s.message(), kCannotConnect)) {
      unreachable_until_ = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      LOG_WARN << "shard " << address_ << ": its tensor socket cannot be reached (" << s.message()
               << "); pulls and pushes go through gRPC for 10 s";
    }
    return true;
  }
  const bool use_socket_;
  const int64_t max_bytes_;
  std::mutex mu_;
  bool resolved_ = false;
  std::shared_ptr<TensorSocketClient> socket_;
  std::chrono::steady_clock::time_point unreachable_until_{};
};

class GrpcWorkerChannel : public WorkerChannel, Client<rpc::Worker> {
 public:
  using Client::Client;
  Status RunPortion(const rpc::PortionRequest& req, rpc::PortionReply* reply, Millis t) override {
    return Call(&rpc::Worker::Stub::RunPortion, req, reply, t, "RunPortion");
  }
  Status Deliver(const rpc::ActivationMessage& msg, Millis t) override {
    rpc::DeliverReply reply;
    return Call(&rpc::Worker::Stub::Deliver, msg, &reply, t, "Deliver");
  }
};

class GrpcTransport : public Transport {
 public:
  explicit GrpcTransport(const TransportOptions& o) : o_(o) {}

  StatusOr<std::unique_ptr<Server>> ServeShard(const std::string& address, ParameterShard* shard) override {
    // The data plane listens on the same host as gRPC; never beside TLS (it is not encrypted).
    std::unique_ptr<TensorSocketServer> socket;
    if (o_.tensor_socket && o_.tls_cert_file.empty() && o_.tls_key_file.empty()) {
      DB_ASSIGN_OR_RETURN(socket, TensorSocketServer::Start(address.substr(0, address.rfind(':')), shard, o_.secret,
                                                            o_.max_message_bytes));
    }
    const int port = socket ? socket->port() : 0;
    DB_ASSIGN_OR_RETURN(auto server, Serve(address, std::make_unique<ShardServiceImpl>(shard, o_.secret, port)));
    static_cast<GrpcServer*>(server.get())->tensor_socket = std::move(socket);
    return server;
  }
  StatusOr<std::unique_ptr<Server>> ServeWorker(const std::string& address, WorkerService* worker) override {
    return Serve(address, std::make_unique<WorkerServiceImpl>(worker, o_.secret));
  }
  StatusOr<std::shared_ptr<ShardChannel>> ConnectShard(const std::string& address) override {
    DB_ASSIGN_OR_RETURN(auto ch, Channel(address));
    // A client that trusts a TLS root wants every byte encrypted: no tensor socket.
    return std::shared_ptr<ShardChannel>(
        new GrpcShardChannel(ch, o_.secret, address, o_.tensor_socket && o_.tls_root_file.empty(), o_.max_message_bytes));
  }
  StatusOr<std::shared_ptr<WorkerChannel>> ConnectWorker(const std::string& address) override {
    DB_ASSIGN_OR_RETURN(auto ch, Channel(address));
    return std::shared_ptr<WorkerChannel>(new GrpcWorkerChannel(ch, o_.secret, address));
  }

 private:
  StatusOr<std::unique_ptr<Server>> Serve(const std::string& address, std::unique_ptr<grpc::Service> service) {
    std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
    if (!o_.tls_cert_file.empty() || !o_.tls_key_file.empty()) {
      DB_ASSIGN_OR_RETURN(std::string cert, ReadFile(o_.tls_cert_file));
      DB_ASSIGN_OR_RETURN(std::string key, ReadFile(o_.tls_key_file));
      grpc::SslServerCredentialsOptions ssl;
      ssl.pem_key_cert_pairs.push_back({key, cert});
      creds = grpc::SslServerCredentials(ssl);
    }
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(address, creds, &port);
    builder.SetMaxReceiveMessageSize(o_.max_message_bytes);
    builder.SetMaxSendMessageSize(o_.max_message_bytes);
    builder.RegisterService(service.get());
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (!server || port == 0) return absl::UnavailableError("cannot listen on " + address);
    const std::string host = address.substr(0, address.rfind(':'));
    return std::unique_ptr<Server>(new GrpcServer(std::move(service), std::move(server), host + ":" + std::to_string(port)));
  }

  StatusOr<std::shared_ptr<grpc::Channel>> Channel(const std::string& address) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = channels_.find(address);
    if (it != channels_.end()) return it->second;
    std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(o_.max_message_bytes);
    args.SetMaxSendMessageSize(o_.max_message_bytes);
    // Reconnect quickly after a peer restarts or the network returns (backoff capped at 1 s).
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    if (!o_.tls_root_file.empty()) {
      DB_ASSIGN_OR_RETURN(std::string root, ReadFile(o_.tls_root_file));
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = root;
      creds = grpc::SslCredentials(ssl);
      if (!o_.tls_target_name.empty()) args.SetSslTargetNameOverride(o_.tls_target_name);
    }
    auto ch = grpc::CreateCustomChannel(address, creds, args);
    channels_[address] = ch;
    return ch;
  }

  TransportOptions o_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_;
};

}  // namespace

std::unique_ptr<Transport> MakeGrpcTransport(const TransportOptions& o) {
  return std::make_unique<GrpcTransport>(o);
}

}  // namespace distbelief
