// The links of one model-parallel replica (Dean et al. 2012, §3): every partition has a Mailbox
// served as a worker on the transport, and channels to every partition's mailbox (its own
// included). Partitions send boundary slices with Send and take what their peers sent with
// Receive. This is the one all-to-all setup the model-parallel pieces share (MpReplica,
// LstmPipeline, CatPartitions).
//
// A partition that stops answering makes its peers' Receive fail after the timeout with
// kDeadlineExceeded (or kCancelled once its links are closed), so a replica stops cleanly.
// Thread-safe: each partition's thread sends and receives on its own.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "distbelief/transport/transport.h"

namespace distbelief {

// Where boundary messages for one partition wait until its thread asks for them.
class Mailbox : public WorkerService {
 public:
  Status Deliver(ActivationMessage m) override;
  // The message of (step, layer, direction) from `from`; kDeadlineExceeded after `timeout`,
  // kCancelled once Close was called.
  StatusOr<ActivationMessage> Await(int64_t step, int layer, bool backward, int from, Millis timeout);
  void Close();

 private:
  using Key = std::tuple<int64_t, int, bool, int>;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<Key, ActivationMessage> box_;
  bool closed_ = false;
};

class PartitionLinks {
 public:
  // Serves `partitions` mailboxes at fresh addresses of `transport` and connects each partition
  // to all of them. `replica` is stamped on every message sent.
  static StatusOr<std::unique_ptr<PartitionLinks>> Create(Transport* transport, int partitions, int replica = 0);
  ~PartitionLinks();  // closes every mailbox (waking its waits), then stops the servers

  int partitions() const { return static_cast<int>(mailboxes_.size()); }
  // Sends `values` from partition `from` to `to` as (step, layer, direction), with the slice
  // [begin, end) of the partitioned axis it carries.
  Status Send(int from, int to, int64_t step, int layer, bool backward, std::vector<float> values, int64_t begin = 0,
              int64_t end = 0, Millis timeout = Millis(10000));
  // What `from` sent partition `to` as (step, layer, direction); kInvalidArgument unless it holds
  // `expected` floats (-1: any number).
  StatusOr<std::vector<float>> Receive(int to, int from, int64_t step, int layer, bool backward, int64_t expected,
                                       Millis timeout);
  // Simulates the death of partition p: its mailbox closes and its server stops.
  void Kill(int p);

 private:
  PartitionLinks() = default;
  int replica_ = 0;
  std::vector<std::unique_ptr<Mailbox>> mailboxes_;
  std::vector<std::unique_ptr<Transport::Server>> servers_;
  std::vector<std::vector<std::shared_ptr<WorkerChannel>>> peers_;  // [from][to]
};

}  // namespace distbelief
