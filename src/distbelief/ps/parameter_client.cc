#include "distbelief/ps/parameter_client.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "distbelief/base/logging.h"
#include "distbelief/base/random.h"
#include "distbelief/ps/parameter_shard.h"

namespace distbelief {

StatusOr<PushResult> PendingPush::Wait(Millis timeout) const {
  if (!f_.valid()) return absl::FailedPreconditionError("no push to wait for");
  if (f_.wait_for(timeout) != std::future_status::ready)
    return absl::DeadlineExceededError("push not finished within " + std::to_string(timeout.count()) + " ms");
  return f_.get();
}

namespace {

PendingPush Finished(Status s) {
  std::promise<StatusOr<PushResult>> p;
  p.set_value(std::move(s));
  return PendingPush(p.get_future().share());
}

template <typename T>
int64_t Total(const std::vector<std::span<T>>& pieces) {
  int64_t n = 0;
  for (const auto& p : pieces) n += static_cast<int64_t>(p.size());
  return n;
}

}  // namespace

ParameterClient::ParameterClient(const ShardMap& map, ClientOptions o)
    : map_(map), o_(o), client_id_(RandomNonZeroId()) {  // a restarted replica is a new client
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
  if (ledger_fd_ >= 0) ::close(ledger_fd_);
}

StatusOr<std::unique_ptr<ParameterClient>> ParameterClient::Create(std::vector<std::shared_ptr<ShardChannel>> shards,
                                                                   const ShardMap& map, ClientOptions o) {
  if (static_cast<int>(shards.size()) != map.num_shards())
    return absl::InvalidArgumentError(std::to_string(shards.size()) + " shard channels for " +
                                      std::to_string(map.num_shards()) + " shards");
  std::unique_ptr<ParameterClient> c(new ParameterClient(map, o));
  c->shards_ = std::move(shards);
  c->logs_.resize(map.num_shards());
  if (!o.ledger_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.ledger_dir, ec);  // an error shows in open()
    const std::string path = absl::StrCat(o.ledger_dir, "/replica-", o.replica, "-",
                                          absl::Hex(c->client_id_, absl::kZeroPad16), ".tsv");
    c->ledger_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (c->ledger_fd_ < 0) return absl::UnavailableError("push ledger " + path + ": " + std::strerror(errno));
  }
  return c;
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
    PushResult result;
    result.versions.assign(map_.num_shards(), 0);
    result.staleness.assign(map_.num_shards(), 0);
    Status st = ForEachShard([&](int s) {
      PushReply reply;
      DB_RETURN_IF_ERROR(PushToShard(s, j->meta[s], j->ranges[s], &reply));
      result.versions[s] = reply.version;
      result.staleness[s] = reply.staleness;
      return absl::OkStatus();
    });
    // Back to the spares before the caller hears: its next PushAsync finds the buffers.
    std::promise<StatusOr<PushResult>> done = std::move(j->done);
    {
      std::lock_guard<std::mutex> lock(mu_);
      spare_pushes_.push_back(std::move(job));
    }
    if (st.ok()) done.set_value(std::move(result));
    else done.set_value(std::move(st));
  }
}

Status ParameterClient::PushToShard(int s, const PushMeta& meta, std::span<const float> range, PushReply* reply) {
  ShardLog& log = logs_[s];
  PushMeta m = meta;
  m.incarnation = log.incarnation;
  Status st = shards_[s]->Push(m, range, reply, o_.call_timeout);
  if (absl::IsAborted(st) && absl::StrContains(st.message(), kShardRestarted)) {
    // The shard restarted from its checkpoint: what it acknowledged since may be gone.
    ShardInfo info;
    DB_RETURN_IF_ERROR(shards_[s]->Info(&info, o_.call_timeout));
    DB_RETURN_IF_ERROR(Replay(s, info));
    m.incarnation = info.incarnation;
    st = shards_[s]->Push(m, range, reply, o_.call_timeout);
  }
  if (st.ok()) {
    Ledger("ack", s, meta, *reply);
    Keep(log, meta, range, *reply);
  }
  return st;
}

Status ParameterClient::Replay(int s, const ShardInfo& info) {
  ShardLog& log = logs_[s];
  LOG_WARN << "shard " << s << " restarted at version " << info.version << "; pushing " << log.kept.size()
           << " kept update(s) again";
  // In order, to the new process (ids its checkpoint holds come back as duplicates).
  for (Kept& k : log.kept) {
    PushMeta again = k.meta;
    again.incarnation = info.incarnation;
    PushReply r;
    DB_RETURN_IF_ERROR(shards_[s]->Push(again, k.range, &r, o_.call_timeout));
    if (!r.duplicate) replayed_.fetch_add(1);
    Ledger("replay", s, k.meta, r);
    k.applied_version = r.version;
  }
  log.incarnation = info.incarnation;
  return absl::OkStatus();
}

Status ParameterClient::Settle(Millis timeout) {
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  for (int s = 0; s < map_.num_shards(); ++s) {
    ShardLog& log = logs_[s];
    while (!log.kept.empty()) {
      ShardInfo info;
      if (shards_[s]->Info(&info, o_.call_timeout).ok()) {
        if (info.incarnation != log.incarnation) {
          if (Status st = Replay(s, info); !st.ok() && !absl::IsUnavailable(st) && !absl::IsDeadlineExceeded(st))
            return st;
        } else {
          while (!log.kept.empty() && log.kept.front().applied_version <= info.durable_version) log.kept.pop_front();
        }
      }
      if (log.kept.empty()) break;
      if (std::chrono::steady_clock::now() > give_up)
        return absl::DeadlineExceededError("shard " + std::to_string(s) + ": " + std::to_string(log.kept.size()) +
                                           " acknowledged push(es) not yet in its checkpoint after " +
                                           std::to_string(timeout.count()) + " ms");
      std::this_thread::sleep_for(Millis(100));
    }
  }
  return absl::OkStatus();
}

void ParameterClient::Ledger(const char* what, int s, const PushMeta& meta, const PushReply& reply) {
  if (ledger_fd_ < 0) return;
  const std::string line = absl::StrCat(what, " ", s, " ", absl::Hex(meta.client), " ", meta.sequence, " ",
                                        reply.version, " ", reply.duplicate ? 1 : 0, "\n");
  if (::write(ledger_fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    LOG_WARN << "cannot write the push ledger: " << std::strerror(errno);
}

void ParameterClient::Keep(ShardLog& log, const PushMeta& meta, std::span<const float> range, const PushReply& reply) {
  log.incarnation = reply.incarnation;
  while (!log.kept.empty() && log.kept.front().applied_version <= reply.durable_version) {
    log.spare.push_back(std::move(log.kept.front().range));
    log.kept.pop_front();
  }
  if (reply.version <= reply.durable_version || meta.client == 0) return;  // already durable
  if (log.kept.size() >= kMaxKept) {
    log.spare.push_back(std::move(log.kept.front().range));
    log.kept.pop_front();
  }
  Kept k;
  k.meta = meta;
  if (!log.spare.empty()) {
    k.range = std::move(log.spare.back());
    log.spare.pop_back();
  }
  k.range.assign(range.begin(), range.end());
  k.applied_version = reply.version;
  log.kept.push_back(std::move(k));
}

Status ParameterClient::WithRetry(const std::function<Status()>& call) {
  const auto give_up = std::chrono::steady_clock::now() + o_.retry_for;
  Millis backoff(100);
  while (true) {
    Status s = call();
    const bool transient = absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s);
    if (!transient || std::chrono::steady_clock::now() + backoff > give_up) return s;
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, Millis(250));
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

StatusOr<PullResult> ParameterClient::Pull(std::span<float> params) {
  return Pull(std::vector<std::span<float>>{params});
}

StatusOr<PullResult> ParameterClient::Pull(const std::vector<std::span<float>>& pieces) {
  if (const int64_t total = Total(pieces); total != map_.total())
    return absl::InvalidArgumentError("pull into " + std::to_string(total) + " floats, the map holds " +
                                      std::to_string(map_.total()));
  const int n = map_.num_shards();
  PullResult result;
  result.versions.assign(n, 0);
  std::vector<int64_t> clocks(n, -1);
  DB_RETURN_IF_ERROR(ForEachShard([&](int s) {
    // The parts of the caller's pieces that make up shard s's range, in order.
    std::vector<std::span<float>> out;
    ForEachOverlap(pieces, map_.begin(s), map_.size(s), [&](std::span<float> part, int64_t) { out.push_back(part); });
    PullReply reply;
    DB_RETURN_IF_ERROR(shards_[s]->Pull(o_.replica, out, &reply, o_.call_timeout));
    result.versions[s] = reply.version;
    clocks[s] = reply.min_replica_clock;
    return absl::OkStatus();
  }));
  for (int64_t c : clocks)
    if (c >= 0 && (result.min_replica_clock < 0 || c < result.min_replica_clock)) result.min_replica_clock = c;
  return result;
}

PendingPush ParameterClient::PushAsync(std::span<const float> grad, const std::vector<uint64_t>& based_on,
                                       int64_t clock) {
  return PushAsync(std::vector<std::span<const float>>{grad}, based_on, clock);
}

PendingPush ParameterClient::PushAsync(const std::vector<std::span<const float>>& pieces,
                                       const std::vector<uint64_t>& based_on, int64_t clock) {
  const int n = map_.num_shards();
  if (Total(pieces) != map_.total() || static_cast<int>(based_on.size()) != n)
    return Finished(absl::InvalidArgumentError("push of " + std::to_string(Total(pieces)) + " floats with " +
                                               std::to_string(based_on.size()) + " versions; the map holds " +
                                               std::to_string(map_.total()) + " floats on " + std::to_string(n) +
                                               " shards"));
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
    job->ranges.resize(n);
    job->meta.resize(n);
  }
  // One number for this push on every shard; its retries resend the same meta (gaps are fine).
  const uint64_t sequence = next_sequence_.fetch_add(1) + 1;
  for (int s = 0; s < n; ++s) {
    std::vector<float>& range = job->ranges[s];
    range.resize(map_.size(s));  // same size as last time: no fill, no allocation
    ForEachOverlap(pieces, map_.begin(s), map_.size(s), [&](std::span<const float> part, int64_t at) {
      std::memcpy(range.data() + at, part.data(), part.size() * sizeof(float));
    });
    // Refuse a non-finite gradient here, whole: shards check their own range too, but a NaN in
    // one range must not leave the others updated.
    if (const int64_t bad = FirstNonFinite(range); bad >= 0) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        spare_pushes_.push_back(std::move(job));
      }
      return Finished(absl::InvalidArgumentError("gradient holds NaN or Inf at index " +
                                                 std::to_string(map_.begin(s) + bad) + "; nothing pushed"));
    }
    job->meta[s] = PushMeta{based_on[s], o_.replica, clock, client_id_, sequence};
  }
  job->done = std::promise<StatusOr<PushResult>>();
  PendingPush op(job->done.get_future().share());
  {
    std::lock_guard<std::mutex> lock(mu_);
    pushes_.push_back(std::move(job));
  }
  cv_.notify_all();
  return op;
}

Status ParameterClient::RunOnAll(const VectorOp& op, std::vector<double>* values) {
  if (values) values->assign(map_.num_shards(), 0.0);
  return ForEachShard([&](int s) {
    VectorOpReply reply;
    DB_RETURN_IF_ERROR(shards_[s]->RunVectorOp(op, &reply, o_.call_timeout));
    if (values) (*values)[s] = reply.value;
    return absl::OkStatus();
  });
}

StatusOr<double> ParameterClient::Dot(VectorId a, VectorId b) {
  std::vector<double> parts;
  DB_RETURN_IF_ERROR(RunOnAll({VectorOpKind::kDot, a, b}, &parts));
  double sum = 0.0;
  for (double p : parts) sum += p;
  return sum;
}

Status ParameterClient::Axpy(double alpha, VectorId a, VectorId b) {
  return RunOnAll({VectorOpKind::kAxpy, a, b, alpha});
}

Status ParameterClient::Scale(double alpha, VectorId a) { return RunOnAll({VectorOpKind::kScale, a, 0, alpha}); }

Status ParameterClient::Copy(VectorId from, VectorId to) { return RunOnAll({VectorOpKind::kCopy, from, to}); }

Status ParameterClient::BeginBatch(int64_t batch) {
  VectorOp op;
  op.op = VectorOpKind::kBeginBatch;
  op.batch = batch;
  return RunOnAll(op);
}

Status ParameterClient::Accumulate(std::span<const float> grad, int64_t batch, int64_t portion) {
  if (static_cast<int64_t>(grad.size()) != map_.total())
    return absl::InvalidArgumentError("accumulate of " + std::to_string(grad.size()) + " floats, the map holds " +
                                      std::to_string(map_.total()));
  return ForEachShard([&](int s) {
    AccumulateReply reply;
    return shards_[s]->Accumulate({batch, portion, o_.replica}, grad.subspan(map_.begin(s), map_.size(s)), &reply,
                                  o_.call_timeout);
  });
}

StatusOr<std::vector<ShardInfo>> ParameterClient::Info() {
  std::vector<ShardInfo> infos(map_.num_shards());
  DB_RETURN_IF_ERROR(ForEachShard([&](int s) { return shards_[s]->Info(&infos[s], o_.call_timeout); }));
  return infos;
}

}  // namespace distbelief
