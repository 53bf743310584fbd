#include "distbelief/transport/fault_injection.h"

#include <thread>

namespace distbelief {

struct FaultInjectingTransport::Rules {
  std::mutex mu;
  struct Rule {
    Fault fault;
    int64_t seen = 0, used = 0;
  };
  std::vector<Rule> rules;
  std::atomic<int64_t> injected{0};

  // The fault for this call, if any (counting it against its rule).
  std::optional<Fault> Match(const std::string& address, CallKind call, int32_t replica) {
    std::lock_guard<std::mutex> lock(mu);
    for (Rule& r : rules) {
      if (!r.fault.address.empty() && r.fault.address != address) continue;
      if (r.fault.call != CallKind::kAny && r.fault.call != call) continue;
      if (r.fault.replica >= 0 && r.fault.replica != replica) continue;
      if (r.seen++ < r.fault.after) continue;
      if (r.fault.times >= 0 && r.used >= r.fault.times) continue;
      ++r.used;
      ++injected;
      return r.fault;
    }
    return std::nullopt;
  }
};

namespace {

using Rules = FaultInjectingTransport::Rules;

// Runs `call` (the real one) under the fault chosen for it.
template <typename F>
Status Apply(Rules* rules, const std::string& address, CallKind kind, F&& call, int32_t replica = -1) {
  const std::optional<Fault> f = rules->Match(address, kind, replica);
  if (!f) return call();
  switch (f->kind) {
    case Fault::Kind::kFail:
      return f->status;
    case Fault::Kind::kDropRequest:
      std::this_thread::sleep_for(f->delay);
      return absl::DeadlineExceededError("injected fault: request to " + address + " lost");
    case Fault::Kind::kDropReply: {
      (void)call();  // the peer acts; the caller never hears of it
      std::this_thread::sleep_for(f->delay);
      return absl::DeadlineExceededError("injected fault: reply from " + address + " lost");
    }
    case Fault::Kind::kDelay:
      std::this_thread::sleep_for(f->delay);
      return call();
    case Fault::Kind::kDuplicate:
      (void)call();  // the first copy's reply is superseded by the second's
      return call();
  }
  return call();
}

class FaultyShardChannel : public ShardChannel {
 public:
  FaultyShardChannel(std::shared_ptr<ShardChannel> base, std::shared_ptr<Rules> rules, std::string address)
      : base_(std::move(base)), rules_(std::move(rules)), address_(std::move(address)) {}
  Status Pull(int32_t replica, FloatPieces out, PullReply* reply, Millis t) override {
    return Apply(rules_.get(), address_, CallKind::kPull, [&] { return base_->Pull(replica, out, reply, t); }, replica);
  }
  Status Push(const PushMeta& meta, std::span<const float> g, PushReply* reply, Millis t) override {
    return Apply(rules_.get(), address_, CallKind::kPush, [&] { return base_->Push(meta, g, reply, t); }, meta.replica);
  }
  Status Accumulate(const PortionKey& key, std::span<const float> g, AccumulateReply* reply, Millis t) override {
    return Apply(rules_.get(), address_, CallKind::kAccumulate, [&] { return base_->Accumulate(key, g, reply, t); });
  }
  Status RunVectorOp(const VectorOp& op, VectorOpReply* reply, Millis t) override {
    return Apply(rules_.get(), address_, CallKind::kVectorOp, [&] { return base_->RunVectorOp(op, reply, t); });
  }
  Status Info(ShardInfo* info, Millis t) override {
    return Apply(rules_.get(), address_, CallKind::kInfo, [&] { return base_->Info(info, t); });
  }

 private:
  std::shared_ptr<ShardChannel> base_;
  std::shared_ptr<Rules> rules_;
  std::string address_;
};

class FaultyWorkerChannel : public WorkerChannel {
 public:
  FaultyWorkerChannel(std::shared_ptr<WorkerChannel> base, std::shared_ptr<Rules> rules, std::string address)
      : base_(std::move(base)), rules_(std::move(rules)), address_(std::move(address)) {}
  Status RunPortion(const PortionRequest& req, PortionReply* reply, Millis t) override {
    return Apply(rules_.get(), address_, CallKind::kRunPortion, [&] { return base_->RunPortion(req, reply, t); });
  }
  Status Deliver(const ActivationMessage& msg, Millis t) override {
    return Apply(rules_.get(), address_, CallKind::kDeliver, [&] { return base_->Deliver(msg, t); });
  }

 private:
  std::shared_ptr<WorkerChannel> base_;
  std::shared_ptr<Rules> rules_;
  std::string address_;
};

}  // namespace

FaultInjectingTransport::FaultInjectingTransport(std::unique_ptr<Transport> base)
    : base_(std::move(base)), rules_(std::make_shared<Rules>()) {}
FaultInjectingTransport::~FaultInjectingTransport() = default;

void FaultInjectingTransport::Inject(const Fault& f) {
  std::lock_guard<std::mutex> lock(rules_->mu);
  rules_->rules.push_back({f});
}

void FaultInjectingTransport::Clear() {
  std::lock_guard<std::mutex> lock(rules_->mu);
  rules_->rules.clear();
}

int64_t FaultInjectingTransport::faults_injected() const { return rules_->injected.load(); }

StatusOr<std::unique_ptr<Transport::Server>> FaultInjectingTransport::ServeShard(const std::string& address,
                                                                                 ParameterShard* shard) {
  return base_->ServeShard(address, shard);
}

StatusOr<std::unique_ptr<Transport::Server>> FaultInjectingTransport::ServeWorker(const std::string& address,
                                                                                  WorkerService* worker) {
  return base_->ServeWorker(address, worker);
}

StatusOr<std::shared_ptr<ShardChannel>> FaultInjectingTransport::ConnectShard(const std::string& address) {
  DB_ASSIGN_OR_RETURN(auto ch, base_->ConnectShard(address));
  return std::shared_ptr<ShardChannel>(new FaultyShardChannel(std::move(ch), rules_, address));
}

StatusOr<std::shared_ptr<WorkerChannel>> FaultInjectingTransport::ConnectWorker(const std::string& address) {
  DB_ASSIGN_OR_RETURN(auto ch, base_->ConnectWorker(address));
  return std::shared_ptr<WorkerChannel>(new FaultyWorkerChannel(std::move(ch), rules_, address));
}

}  // namespace distbelief
