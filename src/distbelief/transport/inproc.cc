// InprocTransport: servers are entries in a registry owned by the transport; calls go straight
// to the ParameterShard or WorkerService on the caller's thread. Everything is one process, so
// there is no secret to check (the gRPC transport checks it on every call).
#include <map>
#include <mutex>

#include "distbelief/ps/parameter_shard.h"
#include "distbelief/transport/transport.h"

namespace distbelief {
namespace {

class Registry {
 public:
  std::mutex mu;
  std::map<std::string, ParameterShard*> shards;
  std::map<std::string, WorkerService*> workers;
  int next_port = 1;
};

class InprocServer : public Transport::Server {
 public:
  InprocServer(std::shared_ptr<Registry> r, std::string address, bool shard)
      : r_(std::move(r)), address_(std::move(address)), shard_(shard) {}
  ~InprocServer() override {
    std::lock_guard<std::mutex> lock(r_->mu);
    if (shard_) r_->shards.erase(address_); else r_->workers.erase(address_);
  }
  std::string address() const override { return address_; }

 private:
  std::shared_ptr<Registry> r_;
  std::string address_;
  bool shard_;
};

// Looks up the target on every call, so a stopped server is kUnavailable, as over a network.
class InprocShardChannel : public ShardChannel {
 public:
  InprocShardChannel(std::shared_ptr<Registry> r, std::string address)
      : r_(std::move(r)), address_(std::move(address)) {}
  Status Pull(const rpc::PullRequest& req, rpc::PullReply* reply, Millis) override {
    DB_ASSIGN_OR_RETURN(ParameterShard * s, Find());
    return s->Pull(req, reply);
  }
  Status Push(const rpc::PushRequest& req, rpc::PushReply* reply, Millis) override {
    DB_ASSIGN_OR_RETURN(ParameterShard * s, Find());
    return s->Push(req, reply);
  }
  Status VectorOp(const rpc::VectorOpRequest& req, rpc::VectorOpReply* reply, Millis) override {
    DB_ASSIGN_OR_RETURN(ParameterShard * s, Find());
    return s->VectorOp(req, reply);
  }
  Status Info(rpc::ShardInfoReply* reply, Millis) override {
    DB_ASSIGN_OR_RETURN(ParameterShard * s, Find());
    return s->Info(reply);
  }

 private:
  StatusOr<ParameterShard*> Find() {
    std::lock_guard<std::mutex> lock(r_->mu);
    auto it = r_->shards.find(address_);
    if (it == r_->shards.end()) return absl::UnavailableError("no shard at " + address_);
    return it->second;
  }
  std::shared_ptr<Registry> r_;
  std::string address_;
};

class InprocWorkerChannel : public WorkerChannel {
 public:
  InprocWorkerChannel(std::shared_ptr<Registry> r, std::string address)
      : r_(std::move(r)), address_(std::move(address)) {}
  Status RunPortion(const rpc::PortionRequest& req, rpc::PortionReply* reply, Millis) override {
    DB_ASSIGN_OR_RETURN(WorkerService * w, Find());
    return w->RunPortion(req, reply);
  }
  Status Deliver(const rpc::ActivationMessage& msg, Millis) override {
    DB_ASSIGN_OR_RETURN(WorkerService * w, Find());
    return w->Deliver(msg);
  }

 private:
  StatusOr<WorkerService*> Find() {
    std::lock_guard<std::mutex> lock(r_->mu);
    auto it = r_->workers.find(address_);
    if (it == r_->workers.end()) return absl::UnavailableError("no worker at " + address_);
    return it->second;
  }
  std::shared_ptr<Registry> r_;
  std::string address_;
};

class InprocTransport : public Transport {
 public:
  explicit InprocTransport(const TransportOptions& o) : o_(o), r_(std::make_shared<Registry>()) {}
  StatusOr<std::unique_ptr<Server>> ServeShard(const std::string& address, ParameterShard* shard) override {
    std::lock_guard<std::mutex> lock(r_->mu);
    const std::string a = Name(address);
    if (r_->shards.count(a)) return absl::AlreadyExistsError("address " + a + " in use");
    r_->shards[a] = shard;
    return std::unique_ptr<Server>(new InprocServer(r_, a, true));
  }
  StatusOr<std::unique_ptr<Server>> ServeWorker(const std::string& address, WorkerService* worker) override {
    std::lock_guard<std::mutex> lock(r_->mu);
    const std::string a = Name(address);
    if (r_->workers.count(a)) return absl::AlreadyExistsError("address " + a + " in use");
    r_->workers[a] = worker;
    return std::unique_ptr<Server>(new InprocServer(r_, a, false));
  }
  StatusOr<std::shared_ptr<ShardChannel>> ConnectShard(const std::string& address) override {
    return std::shared_ptr<ShardChannel>(new InprocShardChannel(r_, address));
  }
  StatusOr<std::shared_ptr<WorkerChannel>> ConnectWorker(const std::string& address) override {
    return std::shared_ptr<WorkerChannel>(new InprocWorkerChannel(r_, address));
  }

 private:
  std::string Name(const std::string& address) {
    // "" or "name:0" asks for a fresh name, like port 0 over TCP.
    if (address.empty() || (address.size() >= 2 && address.substr(address.size() - 2) == ":0"))
      return "inproc:" + std::to_string(r_->next_port++);
    return address;
  }
  TransportOptions o_;
  std::shared_ptr<Registry> r_;
};

}  // namespace

std::unique_ptr<Transport> MakeInprocTransport(const TransportOptions& o) {
  return std::make_unique<InprocTransport>(o);
}

}  // namespace distbelief
