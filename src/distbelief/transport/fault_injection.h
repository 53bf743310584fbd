// FaultInjectingTransport: wraps another transport and makes chosen calls fail, vanish, wait or
// arrive twice, as a lossy network or a dying peer would (compare LevelDB's
// FaultInjectionTestEnv). Tests inject it where production code takes a Transport; no production
// option carries a test hook. Thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "distbelief/transport/transport.h"

namespace distbelief {

enum class CallKind { kAny, kPull, kPush, kAccumulate, kVectorOp, kInfo, kRunPortion, kDeliver };

struct Fault {
  enum class Kind {
    kFail,          // the call returns `status` without reaching the peer (a dead peer: kUnavailable)
    kDropRequest,   // the request is lost: the peer never sees it; kDeadlineExceeded after `delay`
    kDropReply,     // the peer handles the call, its reply is lost: kDeadlineExceeded after `delay`
    kDelay,         // the call reaches the peer after `delay`
    kDuplicate,     // the request arrives twice (a retransmission); the second reply is returned
  };
  Kind kind = Kind::kFail;
  std::string address;               // the peer's address; "" = every peer
  CallKind call = CallKind::kAny;
  int32_t replica = -1;              // only pulls and pushes of this replica (-1: any caller); a
                                     // replica cut off from every shard is address "" + replica r
  int64_t after = 0;                 // let this many matching calls through first
  int64_t times = -1;                // then fault this many (-1: every later one)
  Millis delay{0};
  Status status = absl::UnavailableError("injected fault: peer unavailable");
};

class FaultInjectingTransport : public Transport {
 public:
  explicit FaultInjectingTransport(std::unique_ptr<Transport> base);
  ~FaultInjectingTransport() override;
  // Adds a rule; the first matching rule with faults left decides a call's fate.
  void Inject(const Fault& f);
  void Clear();
  int64_t faults_injected() const;

  StatusOr<std::unique_ptr<Server>> ServeShard(const std::string& address, ParameterShard* shard) override;
  StatusOr<std::unique_ptr<Server>> ServeWorker(const std::string& address, WorkerService* worker) override;
  StatusOr<std::shared_ptr<ShardChannel>> ConnectShard(const std::string& address) override;
  StatusOr<std::shared_ptr<WorkerChannel>> ConnectWorker(const std::string& address) override;
  std::string LocalAddress(const std::string& name) const override { return base_->LocalAddress(name); }

  struct Rules;  // shared with the channels it hands out

 private:
  std::unique_ptr<Transport> base_;
  std::shared_ptr<Rules> rules_;
};

}  // namespace distbelief
