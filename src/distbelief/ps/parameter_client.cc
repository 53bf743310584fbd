#include "distbelief/ps/parameter_client.h"

#include <cmath>
#include <cstring>
#include <thread>

#include "distbelief/ps/parameter_shard.h"

namespace distbelief {

Status PendingOp::Wait(Millis timeout) {
  if (f_.wait_for(timeout) != std::future_status::ready)
    return absl::DeadlineExceededError("operation not finished within " + std::to_string(timeout.count()) + " ms");
  return f_.get();
}

StatusOr<std::unique_ptr<ParameterClient>> ParameterClient::Connect(
    Transport* transport, const std::vector<std::string>& addresses, const ShardMap& map, ClientOptions o) {
  if (static_cast<int>(addresses.size()) != map.num_shards())
    return absl::InvalidArgumentError(std::to_string(addresses.size()) + " shard addresses for " +
                                      std::to_string(map.num_shards()) + " shards");
  std::unique_ptr<ParameterClient> c(new ParameterClient(map, o));
  for (const auto& a : addresses) {
    DB_ASSIGN_OR_RETURN(auto ch, transport->ConnectShard(a));
    c->shards_.push_back(std::move(ch));
  }
  return c;
}

Status ParameterClient::WithRetry(const std::function<Status()>& call) {
  const auto give_up = std::chrono::steady_clock::now() + o_.retry_for;
  Millis backoff(100);
  while (true) {
    Status s = call();
    const bool transient = absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s);
    if (!transient || std::chrono::steady_clock::now() + backoff > give_up) return s;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, Millis(1000));
  }
}

Status ParameterClient::ForEachShard(const std::function<Status(int)>& fn) {
  const int n = map_.num_shards();
  std::vector<Status> results(n);
  std::vector<std::thread> threads;
  for (int s = 1; s < n; ++s) threads.emplace_back([&, s] { results[s] = WithRetry([&] { return fn(s); }); });
  results[0] = WithRetry([&] { return fn(0); });
  for (auto& t : threads) t.join();
  for (const Status& s : results)
    if (!s.ok()) return s;
  return absl::OkStatus();
}

Status ParameterClient::Pull(std::span<float> params, PullResult* result) {
  if (static_cast<int64_t>(params.size()) != map_.total())
    return absl::InvalidArgumentError("pull into " + std::to_string(params.size()) + " floats, model has " +
                                      std::to_string(map_.total()));
  const int n = map_.num_shards();
  result->versions.assign(n, 0);
  std::vector<int64_t> clocks(n, -1);
  DB_RETURN_IF_ERROR(ForEachShard([&](int s) {
    rpc::PullRequest req;
    req.set_replica(o_.replica);
    rpc::PullReply reply;
    DB_RETURN_IF_ERROR(shards_[s]->Pull(req, &reply, o_.call_timeout));
    if (static_cast<int64_t>(reply.values().size()) != map_.size(s) * 4)
      return absl::DataLossError("shard " + std::to_string(s) + " sent " + std::to_string(reply.values().size() / 4) +
                                 " floats, its range holds " + std::to_string(map_.size(s)));
    std::memcpy(params.data() + map_.begin(s), reply.values().data(), reply.values().size());
    result->versions[s] = reply.version();
    clocks[s] = reply.min_replica_clock();
    return absl::OkStatus();
  }));
  result->min_replica_clock = -1;
  for (int64_t c : clocks)
    if (c >= 0 && (result->min_replica_clock < 0 || c < result->min_replica_clock)) result->min_replica_clock = c;
  return absl::OkStatus();
}

PendingOp ParameterClient::PushAsync(std::span<const float> grad, const std::vector<uint64_t>& based_on,
                                     int64_t clock, std::vector<uint64_t>* staleness) {
  auto promise = std::make_shared<std::promise<Status>>();
  PendingOp op(promise->get_future().share());
  if (static_cast<int64_t>(grad.size()) != map_.total() || static_cast<int>(based_on.size()) != map_.num_shards()) {
    promise->set_value(absl::InvalidArgumentError("push of a gradient of the wrong size"));
    return op;
  }
  // Refuse a non-finite gradient here, whole: shards check their own range too, but a NaN in one
  // range must not leave the others updated.
  if (const int64_t bad = FirstNonFinite(grad); bad >= 0) {
    promise->set_value(absl::InvalidArgumentError("gradient holds NaN or Inf at index " + std::to_string(bad) +
                                                  "; nothing pushed"));
    return op;
  }
  if (staleness) staleness->assign(map_.num_shards(), 0);
  // Detached, so that a caller whose Wait timed out never blocks on it; it owns what it needs.
  std::thread([this, grad, based_on, clock, staleness, promise] {
    promise->set_value(ForEachShard([&](int s) {
      rpc::PushRequest req;
      req.set_gradient(FloatsToBytes(grad.subspan(map_.begin(s), map_.size(s))));
      req.set_based_on_version(based_on[s]);
      req.set_replica(o_.replica);
      req.set_replica_clock(clock);
      rpc::PushReply reply;
      DB_RETURN_IF_ERROR(shards_[s]->Push(req, &reply, o_.call_timeout));
      if (staleness) (*staleness)[s] = reply.staleness();
      return absl::OkStatus();
    }));
  }).detach();
  return op;
}

Status ParameterClient::Op(rpc::VectorOpRequest req, std::vector<double>* values) {
  if (values) values->assign(map_.num_shards(), 0.0);
  return ForEachShard([&](int s) {
    rpc::VectorOpReply reply;
    DB_RETURN_IF_ERROR(shards_[s]->VectorOp(req, &reply, o_.call_timeout));
    if (values) (*values)[s] = reply.value();
    return absl::OkStatus();
  });
}

StatusOr<double> ParameterClient::Dot(const std::string& a, const std::string& b) {
  rpc::VectorOpRequest req;
  req.set_op(rpc::VectorOpRequest::DOT);
  req.set_a(a);
  req.set_b(b);
  std::vector<double> parts;
  DB_RETURN_IF_ERROR(Op(req, &parts));
  double sum = 0.0;
  for (double p : parts) sum += p;
  return sum;
}

Status ParameterClient::Axpy(double alpha, const std::string& a, const std::string& b) {
  rpc::VectorOpRequest req;
  req.set_op(rpc::VectorOpRequest::AXPY);
  req.set_alpha(alpha);
  req.set_a(a);
  req.set_b(b);
  return Op(req);
}

Status ParameterClient::Scale(double alpha, const std::string& a) {
  rpc::VectorOpRequest req;
  req.set_op(rpc::VectorOpRequest::SCALE);
  req.set_alpha(alpha);
  req.set_a(a);
  return Op(req);
}

Status ParameterClient::Copy(const std::string& a, const std::string& b) {
  rpc::VectorOpRequest req;
  req.set_op(rpc::VectorOpRequest::COPY);
  req.set_a(a);
  req.set_b(b);
  return Op(req);
}

Status ParameterClient::BeginBatch(int64_t batch) {
  rpc::VectorOpRequest req;
  req.set_op(rpc::VectorOpRequest::BEGIN_BATCH);
  req.set_batch(batch);
  return Op(req);
}

Status ParameterClient::Accumulate(std::span<const float> grad, int64_t batch, int64_t portion) {
  if (static_cast<int64_t>(grad.size()) != map_.total())
    return absl::InvalidArgumentError("accumulate of a gradient of the wrong size");
  return ForEachShard([&](int s) {
    rpc::PushRequest req;
    req.set_gradient(FloatsToBytes(grad.subspan(map_.begin(s), map_.size(s))));
    req.set_accumulate(true);
    req.set_batch(batch);
    req.set_portion(portion);
    req.set_replica(o_.replica);
    rpc::PushReply reply;
    return shards_[s]->Push(req, &reply, o_.call_timeout);
  });
}

}  // namespace distbelief
