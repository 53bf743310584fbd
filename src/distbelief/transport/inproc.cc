// The in-process transport: servers are entries in a registry owned by the transport; calls go
// straight to the ParameterShard or WorkerService on the caller's thread (a pull copies the
// shard's range straight into the caller's tensors). Everything is one process, so there is no
// secret to check.
#include <map>
#include <mutex>

#include "distbelief/transport/transport.h"

namespace distbelief {
namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, ParameterShard*> shards;
  std::map<std::string, WorkerService*> workers;
  int next_name = 1;
};

template <typename T>
StatusOr<T*> Find(Registry* r, const std::map<std::string, T*>& m, const std::string& address, const char* what) {
  std::lock_guard<std::mutex> lock(r->mu);
  auto it = m.find(address);
  if (it == m.end()) return absl::UnavailableError(std::string("no ") + what + " at " + address);
  return it->second;
}

class InprocServer : public Transport::Server {
 public:
  InprocServer(std::shared_ptr<Registry> r, std::string address, bool shard)
      : r_(std::move(r)), address_(std::move(address)), shard_(shard) {}
  ~InprocServer() override {
    std::lock_guard<std::mutex> lock(r_->mu);
    if (shard_) r_->shards.erase(address_);
    else r_->workers.erase(address_);
  }
  std::string address() const override { return address_; }

 private:
  std::shared_ptr<Registry> r_;
  std::string address_;
  bool shard_;
};

// Looks the shard up on every call, so a stopped server is kUnavailable, as over a network.
class InprocShardChannel : public ShardChannel {
 public:
  InprocShardChannel(std::shared_ptr<Registry> r, std::string address) : r_(std::move(r)), address_(std::move(address)) {}
  Status Pull(int32_t replica, FloatPieces out, PullReply* reply, Millis) override {
    DB_ASSIGN_OR_RETURN(ParameterShard * s, Shard());
    return s->Pull(replica, out, reply);
  }
  Status Push(const PushMeta& meta, std::span<const float> g, PushReply* reply, Millis) override {
    DB_ASSIGN_OR_RETURN(ParameterShard * s, Shard());
    return s->Push(meta, g, reply);
  }
  Status Accumulate(const PortionKey& key, std::span<const float> g, AccumulateReply* reply, Millis) override {
    DB_ASSIGN_OR_RETURN(ParameterShard * s, Shard());
    return s->Accumulate(key, g, reply);
  }
  Status RunVectorOp(const VectorOp& op, VectorOpReply* reply, Millis) override {
    DB_ASSIGN_OR_RETURN(ParameterShard * s, Shard());
    return s->RunVectorOp(op, reply);
  }
  Status Info(ShardInfo* info, Millis) override {
    DB_ASSIGN_OR_RETURN(ParameterShard * s, Shard());
    *info = s->Info();
    return absl::OkStatus();
  }

 private:
  StatusOr<ParameterShard*> Shard() { return Find(r_.get(), r_->shards, address_, "shard"); }
  std::shared_ptr<Registry> r_;
  std::string address_;
};

class InprocWorkerChannel : public WorkerChannel {
 public:
  InprocWorkerChannel(std::shared_ptr<Registry> r, std::string address) : r_(std::move(r)), address_(std::move(address)) {}
  Status RunPortion(const PortionRequest& req, PortionReply* reply, Millis) override {
    DB_ASSIGN_OR_RETURN(WorkerService * w, Worker());
    return w->RunPortion(req, reply);
  }
  Status Deliver(const ActivationMessage& msg, Millis) override {
    DB_ASSIGN_OR_RETURN(WorkerService * w, Worker());
    return w->Deliver(msg);
  }

 private:
  StatusOr<WorkerService*> Worker() { return Find(r_.get(), r_->workers, address_, "worker"); }
  std::shared_ptr<Registry> r_;
  std::string address_;
};

class InprocTransport : public Transport {
 public:
  InprocTransport() : r_(std::make_shared<Registry>()) {}
  StatusOr<std::unique_ptr<Server>> ServeShard(const std::string& address, ParameterShard* shard) override {
    return Serve(address, &r_->shards, shard, true);
  }
  StatusOr<std::unique_ptr<Server>> ServeWorker(const std::string& address, WorkerService* worker) override {
    return Serve(address, &r_->workers, worker, false);
  }
  StatusOr<std::shared_ptr<ShardChannel>> ConnectShard(const std::string& address) override {
    return std::shared_ptr<ShardChannel>(new InprocShardChannel(r_, address));
  }
  StatusOr<std::shared_ptr<WorkerChannel>> ConnectWorker(const std::string& address) override {
    return std::shared_ptr<WorkerChannel>(new InprocWorkerChannel(r_, address));
  }
  std::string LocalAddress(const std::string& name) const override { return name; }

 private:
  template <typename T>
  StatusOr<std::unique_ptr<Server>> Serve(const std::string& address, std::map<std::string, T*>* m, T* target,
                                          bool shard) {
    std::lock_guard<std::mutex> lock(r_->mu);
    // "" or "name:0" asks for a fresh name, like port 0 over TCP.
    std::string a = address;
    if (a.empty() || (a.size() >= 2 && a.substr(a.size() - 2) == ":0")) a = "inproc:" + std::to_string(r_->next_name++);
    if (m->count(a)) return absl::AlreadyExistsError("address " + a + " in use");
    (*m)[a] = target;
    return std::unique_ptr<Server>(new InprocServer(r_, a, shard));
  }
  std::shared_ptr<Registry> r_;
};

}  // namespace

std::unique_ptr<Transport> MakeInprocTransport(const TransportOptions&) { return std::make_unique<InprocTransport>(); }

std::unique_ptr<Transport> MakeTransport(const TransportOptions& o) {
  return o.kind == TransportKind::kGrpc ? MakeGrpcTransport(o) : MakeInprocTransport(o);
}

StatusOr<std::vector<std::shared_ptr<ShardChannel>>> ConnectShards(Transport* transport,
                                                                   const std::vector<std::string>& addresses) {
  std::vector<std::shared_ptr<ShardChannel>> out;
  for (const auto& a : addresses) {
    DB_ASSIGN_OR_RETURN(auto ch, transport->ConnectShard(a));
    out.push_back(std::move(ch));
  }
  return out;
}

}  // namespace distbelief
