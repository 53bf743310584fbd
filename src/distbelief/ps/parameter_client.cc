#include "distbelief/ps/parameter_client.h"

#include <algorithm>
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

namespace {

// Calls fn(piece_part, count, at) for each part of `pieces` (laid end to end as one flat vector)
// inside the flat range [begin, begin + len): `count` elements at `piece_part` are elements
// [begin + at, begin + at + count) of the flat vector.
template <typename T, typename Fn>
void ForEachOverlap(const std::vector<std::span<T>>& pieces, int64_t begin, int64_t len, Fn&& fn) {
  const int64_t end = begin + len;
  int64_t off = 0;
  for (const std::span<T>& p : pieces) {
    const int64_t pb = off, pe = off + static_cast<int64_t>(p.size());
    off = pe;
    if (pe <= begin) continue;
    if (pb >= end) break;
    const int64_t lo = std::max(pb, begin), hi = std::min(pe, end);
    fn(p.data() + (lo - pb), hi - lo, lo - begin);
  }
}

template <typename T>
int64_t TotalSize(const std::vector<std::span<T>>& pieces) {
  int64_t n = 0;
  for (const auto& p : pieces) n += static_cast<int64_t>(p.size());
  return n;
}

PendingOp Finished(Status s) {
  std::promise<Status> p;
  p.set_value(std::move(s));
  return PendingOp(p.get_future().share());
}

}  // namespace

ParameterClient::ParameterClient(const ShardMap& map, ClientOptions o)
    : map_(map), o_(o), pull_replies_(map.num_shards()) {
  for (int s = 1; s < map_.num_shards(); ++s) threads_.emplace_back([this] { FanOutLoop(); });
  threads_.emplace_back([this] { PushLoop(); });
}

ParameterClient::~ParameterClient() {
  // The push thread drains its queue first (a push fans out), then the fan-out threads stop.
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
  }
  cv_.notify_all();
  threads_.back().join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_fan_out_ = true;
  }
  cv_.notify_all();
  for (size_t i = 0; i + 1 < threads_.size(); ++i) threads_[i].join();
}

void ParameterClient::FanOutLoop() {
  while (true) {
    std::function<void()> call;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_fan_out_ || !fan_out_.empty(); });
      if (fan_out_.empty()) return;
      call = std::move(fan_out_.front());
      fan_out_.pop_front();
    }
    call();
  }
}

void ParameterClient::PushLoop() {
  while (true) {
    std::unique_ptr<PushJob> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return closing_ || !pushes_.empty(); });
      if (pushes_.empty()) return;
      job = std::move(pushes_.front());
      pushes_.pop_front();
    }
    PushJob* j = job.get();
    Status st = ForEachShard([&](int s) {
      rpc::PushReply reply;
      DB_RETURN_IF_ERROR(shards_[s]->Push(j->requests[s], &reply, o_.call_timeout));
      if (j->staleness) (*j->staleness)[s] = reply.staleness();
      return absl::OkStatus();
    });
    // Back to the spares before the caller hears: its next PushAsync finds the buffers.
    std::promise<Status> done = std::move(j->done);
    {
      std::lock_guard<std::mutex> lock(mu_);
      spare_pushes_.push_back(std::move(job));
    }
    done.set_value(std::move(st));
  }
}

StatusOr<std::unique_ptr<ParameterClient>> ParameterClient::Connect(
    Transport* transport, const std::vector<std::string>& addresses, const ShardMap& map, ClientOptions o) {
  if (static_cast<int>(addresses.size()) != map.num_shards())
    return absl::InvalidArgumentError(std::to_string(addresses.size()) + " shard addresses for " +
                                      std::to_string(map.num_shards()) + " shards");
  std::vector<std::shared_ptr<ShardChannel>> channels;
  for (const auto& a : addresses) {
    DB_ASSIGN_OR_RETURN(auto ch, transport->ConnectShard(a));
    channels.push_back(std::move(ch));
  }
  std::unique_ptr<ParameterClient> c(new ParameterClient(map, o));
  c->shards_ = std::move(channels);
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
  // Completion of the other shards' calls: counted and signalled under `done_mu`, so this frame
  // (which owns all of it) outlives every fan-out thread's last touch of it.
  std::mutex done_mu;
  std::condition_variable done_cv;
  int left = n - 1;
  if (n > 1) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int s = 1; s < n; ++s)
        fan_out_.push_back([&, s] {
          Status st = WithRetry([&] { return fn(s); });
          std::lock_guard<std::mutex> done(done_mu);
          results[s] = std::move(st);
          if (--left == 0) done_cv.notify_all();
        });
    }
    cv_.notify_all();
  }
  results[0] = WithRetry([&] { return fn(0); });
  {
    std::unique_lock<std::mutex> done(done_mu);
    done_cv.wait(done, [&] { return left == 0; });
  }
  for (const Status& s : results)
    if (!s.ok()) return s;
  return absl::OkStatus();
}

Status ParameterClient::Pull(std::span<float> params, PullResult* result) {
  return Pull(std::vector<std::span<float>>{params}, result);
}

Status ParameterClient::Pull(const std::vector<std::span<float>>& pieces, PullResult* result) {
  if (const int64_t total = TotalSize(pieces); total != map_.total())
    return absl::InvalidArgumentError("pull into " + std::to_string(total) + " floats, model has " +
                                      std::to_string(map_.total()));
  const int n = map_.num_shards();
  result->versions.assign(n, 0);
  std::vector<int64_t> clocks(n, -1);
  std::lock_guard<std::mutex> pulling(pull_mu_);
  DB_RETURN_IF_ERROR(ForEachShard([&](int s) {
    rpc::PullRequest req;
    req.set_replica(o_.replica);
    rpc::PullReply& reply = pull_replies_[s];
    DB_RETURN_IF_ERROR(shards_[s]->Pull(req, &reply, o_.call_timeout));
    if (static_cast<int64_t>(reply.values().size()) != map_.size(s) * 4)
      return absl::DataLossError("shard " + std::to_string(s) + " sent " + std::to_string(reply.values().size() / 4) +
                                 " floats, its range holds " + std::to_string(map_.size(s)));
    const char* src = reply.values().data();
    ForEachOverlap(pieces, map_.begin(s), map_.size(s), [&](float* dst, int64_t count, int64_t at) {
      std::memcpy(dst, src + at * sizeof(float), count * sizeof(float));
    });
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
  return PushAsync(std::vector<std::span<const float>>{grad}, based_on, clock, staleness);
}

PendingOp ParameterClient::PushAsync(const std::vector<std::span<const float>>& pieces,
                                     const std::vector<uint64_t>& based_on, int64_t clock,
                                     std::vector<uint64_t>* staleness) {
  const int n = map_.num_shards();
  if (TotalSize(pieces) != map_.total() || static_cast<int>(based_on.size()) != n)
    return Finished(absl::InvalidArgumentError("push of a gradient of the wrong size"));
  std::unique_ptr<PushJob> job;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!spare_pushes_.empty()) {
      job = std::move(spare_pushes_.back());
      spare_pushes_.pop_back();
    }
  }
  if (!job) {
    job = std::make_unique<PushJob>();
    job->requests.resize(n);
  }
  for (int s = 0; s < n; ++s) {
    rpc::PushRequest& req = job->requests[s];
    std::string* bytes = req.mutable_gradient();
    bytes->resize(map_.size(s) * sizeof(float));  // same size as last time: no fill, no allocation
    char* dst = bytes->data();
    ForEachOverlap(pieces, map_.begin(s), map_.size(s), [&](const float* src, int64_t count, int64_t at) {
      std::memcpy(dst + at * sizeof(float), src, count * sizeof(float));
    });
    // Refuse a non-finite gradient here, whole: shards check their own range too, but a NaN in
    // one range must not leave the others updated.
    const std::span<const float> sent(reinterpret_cast<const float*>(bytes->data()), map_.size(s));
    if (const int64_t bad = FirstNonFinite(sent); bad >= 0) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        spare_pushes_.push_back(std::move(job));
      }
      return Finished(absl::InvalidArgumentError("gradient holds NaN or Inf at index " +
                                                 std::to_string(map_.begin(s) + bad) + "; nothing pushed"));
    }
    req.set_based_on_version(based_on[s]);
    req.set_replica(o_.replica);
    req.set_replica_clock(clock);
  }
  if (staleness) staleness->assign(n, 0);
  job->staleness = staleness;
  job->done = std::promise<Status>();
  PendingOp op(job->done.get_future().share());
  {
    std::lock_guard<std::mutex> lock(mu_);
    pushes_.push_back(std::move(job));
  }
  cv_.notify_all();
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
