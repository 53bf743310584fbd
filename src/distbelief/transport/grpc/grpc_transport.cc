// GrpcTransport: the only code that sees gRPC and protobuf. grpc::Status becomes Status here and
// nowhere else; the wire messages become the typed calls of ps/shard_api.h and transport.h.
// Every call carries the shared secret in the "x-distbelief-secret" metadata; servers compare it
// in constant time, refuse a missing or wrong one with UNAUTHENTICATED and log the peer.
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>

#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "absl/strings/match.h"
#include "distbelief/base/logging.h"
#include "distbelief/distbelief.grpc.pb.h"
#include "distbelief/transport/grpc/tensor_socket.h"
#include "distbelief/transport/grpc/wire.h"
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

rpc::VectorOpRequest::Op ToWire(VectorOpKind k) { return static_cast<rpc::VectorOpRequest::Op>(k); }
VectorOpKind FromWire(rpc::VectorOpRequest::Op k) { return static_cast<VectorOpKind>(k); }

class ShardServiceImpl final : public rpc::ParameterShard::Service {
 public:
  ShardServiceImpl(ParameterShard* shard, std::string secret, int data_port)
      : shard_(shard), secret_(std::move(secret)), data_port_(data_port) {}
  grpc::Status Pull(grpc::ServerContext* ctx, const rpc::PullRequest* req, rpc::PullReply* reply) override {
    if (grpc::Status a = CheckSecret(ctx, secret_); !a.ok()) return a;
    std::string* bytes = reply->mutable_values();
    bytes->resize(shard_->size() * sizeof(float));
    // A std::string's storage comes from operator new: aligned for floats.
    const std::span<float> out(reinterpret_cast<float*>(bytes->data()), shard_->size());
    PullReply meta;
    Status s = shard_->Pull(req->replica(), std::span<const std::span<float>>(&out, 1), &meta);
    reply->set_version(meta.version);
    reply->set_min_replica_clock(meta.min_replica_clock);
    return ToGrpc(s);
  }
  grpc::Status Push(grpc::ServerContext* ctx, const rpc::PushRequest* req, rpc::PushReply* reply) override {
    if (grpc::Status a = CheckSecret(ctx, secret_); !a.ok()) return a;
    thread_local std::vector<float> scratch;  // only for a payload whose storage is misaligned
    auto g = wire::FloatsView(req->gradient(), -1, &scratch);
    if (!g.ok()) return ToGrpc(g.status());
    PushReply r;
    Status s = shard_->Push(
        {req->based_on_version(), req->replica(), req->replica_clock(), req->client(), req->sequence(), req->incarnation()},
        *g, &r);
    reply->set_version(r.version);
    reply->set_staleness(r.staleness);
    reply->set_duplicate(r.duplicate);
    reply->set_incarnation(r.incarnation);
    reply->set_durable_version(r.durable_version);
    return ToGrpc(s);
  }
  grpc::Status Accumulate(grpc::ServerContext* ctx, const rpc::AccumulateRequest* req,
                          rpc::AccumulateReply* reply) override {
    if (grpc::Status a = CheckSecret(ctx, secret_); !a.ok()) return a;
    thread_local std::vector<float> scratch;
    auto g = wire::FloatsView(req->gradient(), -1, &scratch);
    if (!g.ok()) return ToGrpc(g.status());
    AccumulateReply r;
    Status s = shard_->Accumulate({req->batch(), req->portion(), req->replica()}, *g, &r);
    reply->set_version(r.version);
    reply->set_duplicate(r.duplicate);
    return ToGrpc(s);
  }
  grpc::Status VectorOp(grpc::ServerContext* ctx, const rpc::VectorOpRequest* req, rpc::VectorOpReply* reply) override {
    if (grpc::Status a = CheckSecret(ctx, secret_); !a.ok()) return a;
    distbelief::VectorOp op;
    op.op = FromWire(req->op());
    op.a = req->a();
    op.b = req->b();
    op.alpha = req->alpha();
    op.batch = req->batch();
    VectorOpReply r;
    Status s = shard_->RunVectorOp(op, &r);
    reply->set_value(r.value);
    reply->set_portions(r.portions);
    return ToGrpc(s);
  }
  grpc::Status Info(grpc::ServerContext* ctx, const rpc::ShardInfoRequest*, rpc::ShardInfoReply* reply) override {
    if (grpc::Status a = CheckSecret(ctx, secret_); !a.ok()) return a;
    const ShardInfo info = shard_->Info();
    reply->set_shard(info.shard);
    reply->set_size(info.size);
    reply->set_version(info.version);
    reply->set_update_rule(info.update_rule);
    reply->set_background_error(info.background_error);
    reply->set_duplicate_pushes(info.duplicate_pushes);
    reply->set_incarnation(info.incarnation);
    reply->set_durable_version(info.durable_version);
    reply->set_data_port(static_cast<uint32_t>(data_port_));
    return grpc::Status::OK;
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
    if (grpc::Status a = CheckSecret(ctx, secret_); !a.ok()) return a;
    PortionReply r;
    Status s = worker_->RunPortion({req->batch(), req->portion(), req->begin(), req->end()}, &r);
    reply->set_loss_sum(r.loss_sum);
    reply->set_examples(r.examples);
    return ToGrpc(s);
  }
  grpc::Status Deliver(grpc::ServerContext* ctx, const rpc::ActivationMessage* m, rpc::DeliverReply*) override {
    if (grpc::Status a = CheckSecret(ctx, secret_); !a.ok()) return a;
    ActivationMessage msg;
    msg.replica = m->replica();
    msg.from = m->from();
    msg.to = m->to();
    msg.step = m->step();
    msg.layer = m->layer();
    msg.backward = m->backward();
    msg.begin = m->begin();
    msg.end = m->end();
    std::vector<float> scratch;
    auto v = wire::FloatsView(m->values(), -1, &scratch);
    if (!v.ok()) return ToGrpc(v.status());
    msg.values.assign(v->begin(), v->end());
    return ToGrpc(worker_->Deliver(std::move(msg)));
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

// A channel to `address`. Channels of different `generation`s never share gRPC's subchannel
// (and so its reconnect backoff); generation 0 is the one the transport caches.
StatusOr<std::shared_ptr<grpc::Channel>> NewChannel(const TransportOptions& o, const std::string& address,
                                                     int generation) {
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(o.max_message_bytes);
  args.SetMaxSendMessageSize(o.max_message_bytes);
  // Reconnect quickly after a peer restarts or the network returns (backoff capped at 1 s).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  if (generation != 0) args.SetInt("distbelief.channel_generation", generation);
  if (!o.tls_root_file.empty()) {
    DB_ASSIGN_OR_RETURN(std::string root, ReadFile(o.tls_root_file));
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = root;
    creds = grpc::SslCredentials(ssl);
    if (!o.tls_target_name.empty()) args.SetSslTargetNameOverride(o.tls_target_name);
  }
  return grpc::CreateCustomChannel(address, creds, args);
}

template <typename Stub>
class Client {
 public:
  Client(const TransportOptions& o, std::shared_ptr<grpc::Channel> channel, std::string secret, std::string address)
      : options_(o), channel_(channel), stub_(Stub::NewStub(channel)), secret_(std::move(secret)),
        address_(std::move(address)) {}

 protected:
  // Runs one unary call with a deadline and the secret, converting the status. wait_for_ready:
  // a connection that cannot be made yet is retried until the deadline instead of failing the
  // call at once (the message never left, so trying again is safe).
  template <typename Req, typename Reply, typename Method>
  Status Call(Method method, const Req& req, Reply* reply, Millis timeout, const char* what,
              bool wait_for_ready = false) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    if (wait_for_ready) ctx.set_wait_for_ready(true);
    if (!secret_.empty()) ctx.AddMetadata(kSecretKey, secret_);
    std::shared_ptr<typename Stub::Stub> stub;
    {
      std::lock_guard<std::mutex> lock(channel_mu_);
      stub = stub_;
    }
    const grpc::Status st = (stub.get()->*method)(&ctx, req, reply);
    if (st.error_code() == grpc::StatusCode::UNAVAILABLE) Renew(stub);
    return FromGrpc(st, std::string(what) + " to " + address_);
  }
  // A peer that could not be reached: gRPC fails every call at once until its subchannel's
  // reconnect backoff lets it try again, and after a shard restart that took 3-4 s even with the
  // backoff capped at 1 s and reset (measured with tools/chaos.py). A channel still failing
  // after a call's UNAVAILABLE is replaced by a fresh one (at most every 100 ms), so the
  // caller's retries (ParameterClient: 100-250 ms) set the pace.
  void Renew(const std::shared_ptr<typename Stub::Stub>& failed) {
    std::lock_guard<std::mutex> lock(channel_mu_);
    const auto now = std::chrono::steady_clock::now();
    if (stub_ != failed || now < next_renewal_) return;
    if (channel_->GetState(false) != GRPC_CHANNEL_TRANSIENT_FAILURE) return;
    auto ch = NewChannel(options_, address_, ++generation_);
    if (!ch.ok()) return;  // the options gave a channel before; keep the old one
    channel_ = *ch;
    stub_ = Stub::NewStub(channel_);
    next_renewal_ = now + std::chrono::milliseconds(100);
  }
  const TransportOptions options_;
  std::mutex channel_mu_;
  std::shared_ptr<grpc::Channel> channel_;
  std::shared_ptr<typename Stub::Stub> stub_;
  int generation_ = 0;
  std::chrono::steady_clock::time_point next_renewal_{};
  std::string secret_, address_;
};

class GrpcShardChannel : public ShardChannel, Client<rpc::ParameterShard> {
 public:
  using S = rpc::ParameterShard::Stub;
  // tls: the client context for the tensor socket under TLS (nullptr: plain TCP).
  GrpcShardChannel(const TransportOptions& o, std::shared_ptr<grpc::Channel> channel, std::string secret,
                   std::string address, bool tensor_socket, int64_t max_bytes, std::shared_ptr<TlsContext> tls)
      : Client(o, std::move(channel), std::move(secret), std::move(address)), use_socket_(tensor_socket),
        max_bytes_(max_bytes), tls_(std::move(tls)) {}
  Status Pull(int32_t replica, FloatPieces out, PullReply* reply, Millis t) override {
    std::shared_ptr<TensorSocketClient> socket;
    DB_RETURN_IF_ERROR(Socket(t, &socket));
    if (socket) {
      Status s = socket->Pull(replica, out, reply, t);
      if (!FallBack(s)) return s;
    }
    rpc::PullRequest req;
    req.set_replica(replica);
    thread_local rpc::PullReply r;  // keeps its buffer from call to call
    DB_RETURN_IF_ERROR(Call(&S::Pull, req, &r, t, "Pull"));
    DB_RETURN_IF_ERROR(wire::ScatterFloats(r.values(), out, "shard " + address_));
    reply->version = r.version();
    reply->min_replica_clock = r.min_replica_clock();
    return absl::OkStatus();
  }
  Status Push(const PushMeta& meta, std::span<const float> g, PushReply* reply, Millis t) override {
    std::shared_ptr<TensorSocketClient> socket;
    DB_RETURN_IF_ERROR(Socket(t, &socket));
    if (socket) {
      Status s = socket->Push(meta, g, reply, t);
      if (!FallBack(s)) return s;
    }
    thread_local rpc::PushRequest req;  // keeps its buffer from call to call
    wire::AssignFloats(g, req.mutable_gradient());
    req.set_based_on_version(meta.based_on_version);
    req.set_replica(meta.replica);
    req.set_replica_clock(meta.replica_clock);
    req.set_client(meta.client);
    req.set_sequence(meta.sequence);
    req.set_incarnation(meta.incarnation);
    rpc::PushReply r;
    DB_RETURN_IF_ERROR(Call(&S::Push, req, &r, t, "Push"));
    reply->version = r.version();
    reply->staleness = r.staleness();
    reply->duplicate = r.duplicate();
    reply->incarnation = r.incarnation();
    reply->durable_version = r.durable_version();
    return absl::OkStatus();
  }
  Status Accumulate(const PortionKey& key, std::span<const float> g, AccumulateReply* reply, Millis t) override {
    rpc::AccumulateRequest req;
    wire::AssignFloats(g, req.mutable_gradient());
    req.set_batch(key.batch);
    req.set_portion(key.portion);
    req.set_replica(key.replica);
    rpc::AccumulateReply r;
    DB_RETURN_IF_ERROR(Call(&S::Accumulate, req, &r, t, "Accumulate"));
    reply->version = r.version();
    reply->duplicate = r.duplicate();
    return absl::OkStatus();
  }
  Status RunVectorOp(const VectorOp& op, VectorOpReply* reply, Millis t) override {
    rpc::VectorOpRequest req;
    req.set_op(ToWire(op.op));
    req.set_a(op.a);
    req.set_b(op.b);
    req.set_alpha(op.alpha);
    req.set_batch(op.batch);
    rpc::VectorOpReply r;
    DB_RETURN_IF_ERROR(Call(&S::VectorOp, req, &r, t, "VectorOp"));
    reply->value = r.value();
    reply->portions = r.portions();
    return absl::OkStatus();
  }
  Status Info(ShardInfo* info, Millis t) override {
    rpc::ShardInfoReply r;
    DB_RETURN_IF_ERROR(InfoReply(&r, t));
    info->shard = r.shard();
    info->size = r.size();
    info->version = r.version();
    info->update_rule = r.update_rule();
    info->background_error = r.background_error();
    info->duplicate_pushes = r.duplicate_pushes();
    info->incarnation = r.incarnation();
    info->durable_version = r.durable_version();
    return absl::OkStatus();
  }

 private:
  Status InfoReply(rpc::ShardInfoReply* r, Millis t) { return Call(&S::Info, rpc::ShardInfoRequest(), r, t, "Info"); }
  // The shard's tensor socket, learned from its Info reply once; nullptr: none (use gRPC).
  Status Socket(Millis t, std::shared_ptr<TensorSocketClient>* out) {
    if (!use_socket_) return absl::OkStatus();
    std::lock_guard<std::mutex> lock(mu_);
    if (std::chrono::steady_clock::now() < unreachable_until_) return absl::OkStatus();
    if (!resolved_) {
      rpc::ShardInfoReply info;
      DB_RETURN_IF_ERROR(InfoReply(&info, t));
      if (info.data_port() != 0)
        socket_ = std::make_shared<TensorSocketClient>(address_.substr(0, address_.rfind(':')),
                                                       static_cast<int>(info.data_port()), secret_, max_bytes_, tls_);
      resolved_ = true;
    }
    *out = socket_;
    return absl::OkStatus();
  }
  // After a tensor-socket call: true if it failed for want of a connection, so the call goes
  // through gRPC instead (with the same push id, so it is applied once). A lost connection
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
  const std::shared_ptr<TlsContext> tls_;
  std::mutex mu_;
  bool resolved_ = false;
  std::shared_ptr<TensorSocketClient> socket_;
  std::chrono::steady_clock::time_point unreachable_until_{};
};

class GrpcWorkerChannel : public WorkerChannel, Client<rpc::Worker> {
 public:
  using Client::Client;
  Status RunPortion(const PortionRequest& req, PortionReply* reply, Millis t) override {
    rpc::PortionRequest r;
    r.set_batch(req.batch);
    r.set_portion(req.portion);
    r.set_begin(req.begin);
    r.set_end(req.end);
    rpc::PortionReply p;
    DB_RETURN_IF_ERROR(Call(&rpc::Worker::Stub::RunPortion, r, &p, t, "RunPortion"));
    reply->loss_sum = p.loss_sum();
    reply->examples = p.examples();
    return absl::OkStatus();
  }
  Status Deliver(const ActivationMessage& msg, Millis t) override {
    rpc::ActivationMessage m;
    m.set_replica(msg.replica);
    m.set_from(msg.from);
    m.set_to(msg.to);
    m.set_step(msg.step);
    m.set_layer(msg.layer);
    m.set_backward(msg.backward);
    m.set_begin(msg.begin);
    m.set_end(msg.end);
    wire::AssignFloats(msg.values, m.mutable_values());
    rpc::DeliverReply reply;
    // A partition's peer is up for the whole step; a first connection that fails (seen once in
    // CI: "failed to connect ... No such file or directory" at step 0) is tried again until the
    // step's deadline rather than failing the step. A dead peer fails at the deadline.
    return Call(&rpc::Worker::Stub::Deliver, m, &reply, t, "Deliver", /*wait_for_ready=*/true);
  }
};

class GrpcTransport : public Transport {
 public:
  explicit GrpcTransport(const TransportOptions& o) : o_(o) {}

  StatusOr<std::unique_ptr<Server>> ServeShard(const std::string& address, ParameterShard* shard) override {
    // The data plane listens on the same host as gRPC, under TLS when gRPC is.
    std::unique_ptr<TensorSocketServer> socket;
    if (o_.data_plane == DataPlane::kSocket) {
      std::shared_ptr<TlsContext> tls;
      if (!o_.tls_cert_file.empty() || !o_.tls_key_file.empty()) {
        DB_ASSIGN_OR_RETURN(tls, TlsContext::ForServer(o_.tls_cert_file, o_.tls_key_file));
      }
      DB_ASSIGN_OR_RETURN(socket, TensorSocketServer::Start(address.substr(0, address.rfind(':')), shard, o_.secret,
                                                            o_.max_message_bytes, {}, std::move(tls)));
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
    // A client that trusts a TLS root speaks TLS on the tensor socket too.
    std::shared_ptr<TlsContext> tls;
    if (o_.data_plane == DataPlane::kSocket && !o_.tls_root_file.empty()) {
      DB_ASSIGN_OR_RETURN(tls, ClientTls());
    }
    return std::shared_ptr<ShardChannel>(new GrpcShardChannel(o_, ch, o_.secret, address,
                                                              o_.data_plane == DataPlane::kSocket,
                                                              o_.max_message_bytes, std::move(tls)));
  }
  StatusOr<std::shared_ptr<WorkerChannel>> ConnectWorker(const std::string& address) override {
    DB_ASSIGN_OR_RETURN(auto ch, Channel(address));
    return std::shared_ptr<WorkerChannel>(new GrpcWorkerChannel(o_, ch, o_.secret, address));
  }
  std::string LocalAddress(const std::string&) const override { return "127.0.0.1:0"; }

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
    builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, static_cast<int>(o_.handshake_timeout.count()));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, static_cast<int>(o_.idle_timeout.count()));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, o_.max_streams);
    const int64_t memory = o_.max_memory_bytes > 0
                               ? o_.max_memory_bytes
                               : std::max<int64_t>(int64_t{256} << 20, 4 * int64_t{o_.max_message_bytes});
    grpc::ResourceQuota quota("distbelief-server");
    quota.Resize(static_cast<size_t>(memory));
    builder.SetResourceQuota(quota);
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
    DB_ASSIGN_OR_RETURN(auto ch, NewChannel(o_, address, 0));
    channels_[address] = ch;
    return ch;
  }

  // One client TLS context per transport, shared by every shard's tensor socket.
  StatusOr<std::shared_ptr<TlsContext>> ClientTls() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!client_tls_) {
      DB_ASSIGN_OR_RETURN(client_tls_, TlsContext::ForClient(o_.tls_root_file, o_.tls_target_name));
    }
    return client_tls_;
  }

  TransportOptions o_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_;
  std::shared_ptr<TlsContext> client_tls_;
};

}  // namespace

std::unique_ptr<Transport> MakeGrpcTransport(const TransportOptions& o) {
  return std::make_unique<GrpcTransport>(o);
}

}  // namespace distbelief
