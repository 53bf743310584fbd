#include "distbelief/mp/links.h"

namespace distbelief {

Status Mailbox::Deliver(ActivationMessage m) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return absl::UnavailableError("partition closed");
  const Key key{m.step, m.layer, m.backward, m.from};
  box_[key] = std::move(m);
  cv_.notify_all();
  return absl::OkStatus();
}

StatusOr<ActivationMessage> Mailbox::Await(int64_t step, int layer, bool backward, int from, Millis timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  const Key key{step, layer, backward, from};
  if (!cv_.wait_for(lock, timeout, [&] { return closed_ || box_.count(key) > 0; }))
    return absl::DeadlineExceededError("no " + std::string(backward ? "gradient" : "activation") +
                                       " message from partition " + std::to_string(from) + " for layer " +
                                       std::to_string(layer) + " of step " + std::to_string(step) + " within " +
                                       std::to_string(timeout.count()) + " ms");
  if (closed_) return absl::CancelledError("partition closed");
  ActivationMessage m = std::move(box_[key]);
  box_.erase(key);
  return m;
}

void Mailbox::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

StatusOr<std::unique_ptr<PartitionLinks>> PartitionLinks::Create(Transport* transport, int partitions, int replica) {
  if (partitions < 1) return absl::InvalidArgumentError("a replica needs at least one partition");
  std::unique_ptr<PartitionLinks> l(new PartitionLinks());
  l->replica_ = replica;
  std::vector<std::string> addresses;
  for (int p = 0; p < partitions; ++p) {
    l->mailboxes_.push_back(std::make_unique<Mailbox>());
    DB_ASSIGN_OR_RETURN(auto server, transport->ServeWorker(transport->LocalAddress(""), l->mailboxes_.back().get()));
    addresses.push_back(server->address());
    l->servers_.push_back(std::move(server));
  }
  l->peers_.resize(partitions);
  for (int p = 0; p < partitions; ++p)
    for (const auto& a : addresses) {
      DB_ASSIGN_OR_RETURN(auto ch, transport->ConnectWorker(a));
      l->peers_[p].push_back(std::move(ch));
    }
  return l;
}

PartitionLinks::~PartitionLinks() {
  for (auto& m : mailboxes_) m->Close();
  servers_.clear();
}

void PartitionLinks::Kill(int p) {
  mailboxes_[p]->Close();
  servers_[p].reset();
}

Status PartitionLinks::Send(int from, int to, int64_t step, int layer, bool backward, std::vector<float> values,
                            int64_t begin, int64_t end, Millis timeout) {
  ActivationMessage m;
  m.replica = replica_;
  m.from = from;
  m.to = to;
  m.step = step;
  m.layer = layer;
  m.backward = backward;
  m.begin = begin;
  m.end = end;
  m.values = std::move(values);
  return peers_[from][to]->Deliver(m, timeout);
}

StatusOr<std::vector<float>> PartitionLinks::Receive(int to, int from, int64_t step, int layer, bool backward,
                                                     int64_t expected, Millis timeout) {
  DB_ASSIGN_OR_RETURN(ActivationMessage m, mailboxes_[to]->Await(step, layer, backward, from, timeout));
  if (expected >= 0 && static_cast<int64_t>(m.values.size()) != expected)
    return absl::InvalidArgumentError("partition " + std::to_string(from) + " sent " + std::to_string(m.values.size()) +
                                      " floats for layer " + std::to_string(layer) + ", expected " +
                                      std::to_string(expected));
  return std::move(m.values);
}

}  // namespace distbelief
