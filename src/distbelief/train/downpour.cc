#include "distbelief/train/downpour.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include <time.h>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"
#include "distbelief/io/metrics.h"
#include "distbelief/train/checkpointing.h"
#include "distbelief/train/cluster.h"

namespace distbelief {
namespace {

using Clock = std::chrono::steady_clock;
constexpr Millis kPushWait{120000};  // a push's own calls are bounded by the client's retry window

double CpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// What the replicas of one run share.
struct Shared {
  // `replicas` threads here, of `total` replicas in the run (more under `distbelief launch`).
  Shared(const DownpourOptions& o, int replicas, int total, int64_t steps_each)
      : o(o), replicas(replicas), total(total), steps_each(steps_each), restarts_left(o.replica_restarts),
        steps_done(new std::atomic<int64_t>[total]), replica_restarts(new std::atomic<int>[total]),
        replica_state(new std::atomic<int>[total]) {
    if (o.synchronous) sync = std::make_unique<std::barrier<>>(replicas);
    for (int r = 0; r < total; ++r) {
      steps_done[r] = replica_restarts[r] = 0;
      replica_state[r] = kUp;
    }
  }
  const DownpourOptions o;
  const int replicas, total;
  const int64_t steps_each;
  std::unique_ptr<std::barrier<>> sync;
  std::atomic<int64_t> examples{0}, replica0_steps{0};
  std::atomic<bool> replica0_done{false}, stop{false};
  // An observer's check runs off the clock: it raises `pause`, replicas park at the top of their
  // next step (counted in `parked`).
  std::atomic<bool> pause{false};
  std::atomic<int> parked{0}, failed{0}, restarts_left, restarts{0};
  std::mutex mu;  // guards the rest
  LossLog log, window;
  double staleness_sum = 0.0;
  int64_t staleness_count = 0;
  uint64_t staleness_max = 0;
  int64_t max_clock_lead = -1;
  // Per replica, indexed by the replica's number in the run (a replica process runs one of
  // `total`), for cluster.jsonl (the dashboard): steps done, restarts, state (kUp, kDone, kFailed).
  std::unique_ptr<std::atomic<int64_t>[]> steps_done;
  std::unique_ptr<std::atomic<int>[]> replica_restarts, replica_state;
  static constexpr int kUp = 0, kDone = 1, kFailed = 2;
  // Pushes by staleness (guarded by mu): 0, 1, 2, 3-4, 5-8, 9-16, 17-32, 33 or more.
  static constexpr int kStalenessBuckets = 8;
  int64_t staleness_hist[kStalenessBuckets] = {};
};

int StalenessBucket(uint64_t st) {
  int b = 0;
  for (uint64_t top = 0; b < Shared::kStalenessBuckets - 1 && st > top; ++b) top = top == 0 ? 1 : top * 2;
  return b;
}

// One parameter group as a replica holds it.
struct GroupLink {
  std::unique_ptr<ParameterClient> client;
  std::vector<std::span<float>> params;        // the model's tensors, where pulls land
  std::vector<std::span<const float>> grads;   // where pushes read from
  std::vector<float> acc;                      // n_push > 1: gradients summed since the last push
  std::vector<uint64_t> based_on;              // shard versions the next push's gradient is of
  PendingPush pending;
  std::vector<float> next;                     // fetch_in_background: where the next pull lands
  std::future<StatusOr<PullResult>> fetching;
};

// One replica's loop: fetch, compute, push, step after step.
class Replica {
 public:
  Replica(const EngineOptions& e, const Job& job, const ParameterServer* ps, Shared* shared, int index)
      : e_(e), job_(job), ps_(ps), shared_(shared), r_(index) {}
  // Begins at `first` (a restarted replica process); `done(step)` after every finished step.
  void ResumeAt(int64_t first, std::function<void(int64_t)> done) {
    first_step_ = first;
    on_step_ = std::move(done);
  }
  Status Run();
  // After Run: waits (up to `timeout`) until the shards' checkpoints hold this replica's pushes.
  Status Settle(Millis timeout);

 private:
  Status Build();
  void AwaitWarmstart();
  void ParkIfPaused();
  Status Fetch(int64_t step);
  Status PullAll(int64_t step);
  Status TakeBackgroundFetch(GroupLink& g);
  void StartBackgroundFetch(GroupLink& g);
  Status Push(int64_t step);
  Status FinishPush(GroupLink& g);
  Status FinishAll();
  Status Step(int64_t step);

  const EngineOptions& e_;
  const Job& job_;
  const ParameterServer* ps_;
  Shared* shared_;
  const int r_;
  std::unique_ptr<ReplicaModel> model_;
  std::vector<GroupLink> groups_;
  bool need_fetch_ = true;  // a (re)built model holds no parameters yet
  int64_t first_step_ = 0;
  std::function<void(int64_t)> on_step_;
};

Status Replica::Build() {
  DB_ASSIGN_OR_RETURN(model_, job_.make_replica(r_, shared_->total));
  if (model_->num_groups() != ps_->num_groups())
    return absl::InternalError("replica " + std::to_string(r_) + " has " + std::to_string(model_->num_groups()) +
                               " parameter groups, the parameter server " + std::to_string(ps_->num_groups()));
  groups_.resize(ps_->num_groups());
  for (int g = 0; g < ps_->num_groups(); ++g) {
    GroupLink& link = groups_[g];
    if (!link.client) {
      DB_ASSIGN_OR_RETURN(link.client, ps_->Connect(g, r_));
    }
    const std::vector<Param*> params = model_->params(g);
    link.params = ValuePieces(params);
    link.grads = GradPieces(params);
    const size_t n = static_cast<size_t>(CountParams(params));
    link.acc.assign(shared_->o.n_push > 1 ? n : 0, 0.0f);
    link.next.assign(shared_->o.fetch_in_background ? n : 0, 0.0f);
  }
  need_fetch_ = true;
  return absl::OkStatus();
}

void Replica::AwaitWarmstart() {
  const int64_t warm = std::min(shared_->o.warmstart_steps, shared_->steps_each);
  if (r_ == 0 || warm == 0) return;
  while (shared_->replica0_steps.load() < warm && !shared_->replica0_done.load() && !shared_->stop.load())
    std::this_thread::sleep_for(Millis(2));
}

void Replica::ParkIfPaused() {
  if (!shared_->pause.load()) return;
  shared_->parked++;
  while (shared_->pause.load() && !shared_->stop.load()) std::this_thread::sleep_for(std::chrono::microseconds(200));
  shared_->parked--;
}

// Pulls every group now; with a staleness bound, again until this replica leads the slowest live
// one by at most the bound.
Status Replica::PullAll(int64_t step) {
  while (true) {
    int64_t min_clock = -1;
    for (GroupLink& g : groups_) {
      DB_ASSIGN_OR_RETURN(const PullResult pulled, g.client->Pull(g.params));
      g.based_on = pulled.versions;
      if (pulled.min_replica_clock >= 0 && (min_clock < 0 || pulled.min_replica_clock < min_clock))
        min_clock = pulled.min_replica_clock;
    }
    const bool wait = shared_->o.staleness_bound > 0 && min_clock >= 0 && step - min_clock > shared_->o.staleness_bound;
    if (!wait || shared_->stop.load()) {
      if (min_clock >= 0) {
        std::lock_guard<std::mutex> lock(shared_->mu);
        shared_->max_clock_lead = std::max(shared_->max_clock_lead, step - min_clock);
      }
      return absl::OkStatus();
    }
    std::this_thread::sleep_for(Millis(1));
  }
}

Status Replica::TakeBackgroundFetch(GroupLink& g) {
  StatusOr<PullResult> pulled = g.fetching.get();
  if (!pulled.ok()) return pulled.status();
  size_t at = 0;
  for (std::span<float> p : g.params) {
    std::memcpy(p.data(), g.next.data() + at, p.size() * sizeof(float));
    at += p.size();
  }
  g.based_on = pulled->versions;
  return absl::OkStatus();
}

void Replica::StartBackgroundFetch(GroupLink& g) {
  g.fetching = std::async(std::launch::async, [&g] { return g.client->Pull(std::span<float>(g.next)); });
}

Status Replica::Fetch(int64_t step) {
  const DownpourOptions& o = shared_->o;
  if (!need_fetch_ && step % o.n_fetch != 0) return absl::OkStatus();
  if (o.fetch_in_background && !need_fetch_) {
    for (GroupLink& g : groups_) DB_RETURN_IF_ERROR(TakeBackgroundFetch(g));
  } else {
    // Synchronous: everyone sees every update; fetch_after_push: this replica sees its own.
    if (o.synchronous || o.fetch_after_push) DB_RETURN_IF_ERROR(FinishAll());
    DB_RETURN_IF_ERROR(PullAll(step));
  }
  if (o.fetch_in_background)
    for (GroupLink& g : groups_) StartBackgroundFetch(g);
  need_fetch_ = false;
  return absl::OkStatus();
}

Status Replica::FinishPush(GroupLink& g) {
  if (!g.pending.valid()) return absl::OkStatus();
  StatusOr<PushResult> pushed = g.pending.Wait(kPushWait);
  g.pending = PendingPush();
  if (!pushed.ok()) return pushed.status();
  std::lock_guard<std::mutex> lock(shared_->mu);
  for (uint64_t st : pushed->staleness) {
    shared_->staleness_sum += static_cast<double>(st);
    shared_->staleness_count++;
    shared_->staleness_max = std::max(shared_->staleness_max, st);
    shared_->staleness_hist[StalenessBucket(st)]++;
  }
  return absl::OkStatus();
}

// The pushes in flight, then the background fetches: nothing may outlive the clients' use.
Status Replica::FinishAll() {
  Status first;
  for (GroupLink& g : groups_)
    if (Status s = FinishPush(g); !s.ok() && first.ok()) first = s;
  return first;
}

Status Replica::Push(int64_t step) {
  const DownpourOptions& o = shared_->o;
  if (e_.optimizer.clip_norm > 0.0f) {  // clipped over the replica's whole gradient, as locally
    std::vector<std::span<float>> all;
    for (int g = 0; g < model_->num_groups(); ++g)
      for (Param* p : model_->params(g)) all.push_back(p->grad.span());
    ClipByGlobalNorm(all, e_.optimizer.clip_norm);
  }
  const bool due = (step + 1) % o.n_push == 0 || step + 1 == shared_->steps_each;
  for (GroupLink& g : groups_) {
    if (o.n_push > 1) {
      int64_t off = 0;
      for (std::span<const float> grad : g.grads) {
        float* a = g.acc.data() + off;
        for (size_t i = 0; i < grad.size(); ++i) a[i] += grad[i];
        off += static_cast<int64_t>(grad.size());
      }
    }
    if (!due) continue;
    DB_RETURN_IF_ERROR(FinishPush(g));  // at most one push in flight per group
    // PushAsync copies what it sends, so the gradients and the accumulator are free at once.
    if (o.n_push > 1) {
      g.pending = g.client->PushAsync(std::span<const float>(g.acc), g.based_on, step + 1);
      std::fill(g.acc.begin(), g.acc.end(), 0.0f);
    } else {
      g.pending = g.client->PushAsync(g.grads, g.based_on, step + 1);
    }
    if (o.synchronous) DB_RETURN_IF_ERROR(FinishPush(g));
  }
  return absl::OkStatus();
}

// One step; a failure of the model itself rebuilds the replica while restarts are left.
Status Replica::Step(int64_t step) {
  DB_RETURN_IF_ERROR(Fetch(step));
  StatusOr<StepLoss> loss = model_->ComputeGradient(step);
  if (loss.ok() && !std::isfinite(loss->total))
    loss = absl::InternalError(job_.name + " replica " + std::to_string(r_) + ": the loss is not finite");
  if (!loss.ok()) {
    if (shared_->restarts_left.fetch_sub(1) <= 0) return loss.status();
    LOG_WARN << job_.name << " replica " << r_ << " failed at step " << step << " (" << loss.status().message()
             << "); rebuilding it";
    shared_->restarts++;
    shared_->replica_restarts[r_]++;
    for (GroupLink& g : groups_)
      if (g.fetching.valid()) (void)g.fetching.get();
    return Build();  // this step is skipped; the next one fetches first
  }
  DB_RETURN_IF_ERROR(Push(step));
  shared_->examples += job_.examples_per_step;
  if (r_ == 0) shared_->replica0_steps++;
  shared_->steps_done[r_]++;
  std::lock_guard<std::mutex> lock(shared_->mu);
  shared_->log.Add(*loss);
  shared_->window.Add(*loss);
  return absl::OkStatus();
}

Status Replica::Run() {
  DB_RETURN_IF_ERROR(Build());
  AwaitWarmstart();
  Status status;
  for (int64_t step = first_step_; step < shared_->steps_each && !shared_->stop.load() && status.ok(); ++step) {
    ParkIfPaused();
    if (shared_->sync) shared_->sync->arrive_and_wait();
    status = Step(step);
    if (status.ok() && on_step_) on_step_(step + 1);
  }
  // Whatever way the steps ended, the push and the fetches in flight finish before the clients go.
  Status pushed = FinishAll();
  for (GroupLink& g : groups_)
    if (g.fetching.valid()) (void)g.fetching.get();
  if (status.ok()) status = pushed;
  return status;
}

Status Replica::Settle(Millis timeout) {
  for (GroupLink& g : groups_) DB_RETURN_IF_ERROR(g.client->Settle(timeout));
  return absl::OkStatus();
}

// A replica process's progress: the steps it finished, as one fixed-width line rewritten in
// place (one pwrite: a kill leaves the old line or the new one).
class ProgressFile {
 public:
  explicit ProgressFile(const std::string& path) : path_(path) {}
  ~ProgressFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  // The steps recorded by an earlier process (0 if none); kDataLoss for a file that is not one.
  StatusOr<int64_t> Read() const {
    std::ifstream in(path_);
    if (!in) return 0;
    int64_t steps = -1;
    if (!(in >> steps) || steps < 0) return absl::DataLossError("progress file " + path_ + " holds no step count");
    return steps;
  }
  Status Open() {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) return absl::UnavailableError("progress file " + path_ + ": " + std::strerror(errno));
    return absl::OkStatus();
  }
  void Write(int64_t steps) {
    char line[21];
    std::snprintf(line, sizeof(line), "%19lld\n", static_cast<long long>(steps));
    if (::pwrite(fd_, line, 20, 0) != 20) LOG_WARN << "cannot record progress in " << path_;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace

ShardPlan DownpourShardPlan(const EngineOptions& e, const Job& job) {
  const int replicas = e.distributed.downpour.replicas;
  const int64_t steps_each = DownpourStepsEach(e, job, replicas);
  ShardPlan plan;
  plan.optimizer = e.optimizer;
  plan.schedule = e.train.schedule;
  const int64_t n_push = e.distributed.downpour.n_push;
  plan.total_updates = plan.schedule.kind == Schedule::kConstant ? 0 : replicas * ((steps_each + n_push - 1) / n_push);
  plan.checkpoint_name = job.name;
  return plan;
}

int64_t DownpourStepsEach(const EngineOptions& e, const Job& job, int replicas) {
  const int64_t total = e.train.max_steps > 0 ? std::min(job.steps, e.train.max_steps) : job.steps;
  return std::max<int64_t>(1, (total + replicas - 1) / replicas);
}

namespace {

Status PullInto(const ParameterServer& ps, ReplicaModel* model) {
  for (int g = 0; g < ps.num_groups(); ++g) {
    DB_ASSIGN_OR_RETURN(auto client, ps.Connect(g, -1));
    DB_RETURN_IF_ERROR(client->Pull(ValuePieces(model->params(g))).status());
  }
  return absl::OkStatus();
}

// The watcher: progress line, metrics about once a second, and the observer's checks with every
// replica parked. Runs on the calling thread until every replica has finished.
class Watch {
 public:
  Watch(const EngineOptions& e, const Job& job, Shared* shared, const ParameterServer* ps, ReplicaModel* model,
        TrainObserver* observer)
      : e_(e), job_(job), shared_(shared), ps_(ps), model_(model), observer_(observer),
        progress_(shared->steps_each * shared->replicas * job.examples_per_step, "examples") {}
  Status Open() {
    if (!job_.write_checkpoint) return absl::OkStatus();
    DB_RETURN_IF_ERROR(metrics_.Open(e_.train.run_dir + "/metrics.jsonl", e_.train.tensorboard));
    std::error_code ec;  // a fresh cluster log per run
    std::filesystem::remove(e_.train.run_dir + "/cluster.jsonl", ec);
    return cluster_.Open(e_.train.run_dir + "/cluster.jsonl");
  }
  void Run(const std::atomic<int>& finished);
  MetricsWriter& metrics() { return metrics_; }
  Clock::duration paused{0};  // spent in checks, left out of the run's seconds
  double paused_cpu = 0.0;

 private:
  void Record(Clock::time_point start);
  void RecordCluster(double seconds, const std::vector<int64_t>& hist);
  void Check(const std::atomic<int>& finished);
  const EngineOptions& e_;
  const Job& job_;
  Shared* shared_;
  const ParameterServer* ps_;
  ReplicaModel* model_;
  TrainObserver* observer_;
  Progress progress_;
  MetricsWriter metrics_;
  MetricsWriter cluster_;  // cluster.jsonl: replicas, shards, staleness, once a second
};

void Watch::Record(Clock::time_point start) {
  std::vector<int64_t> hist;
  double seconds = 0;
  {
  std::lock_guard<std::mutex> lock(shared_->mu);
  if (shared_->window.size() == 0) return;
  const StepLoss mean = shared_->window.LastMean(1.0);
  shared_->window = LossLog();
  Metrics m = {{"examples", double(shared_->examples.load())},
               {"seconds", std::chrono::duration<double>(Clock::now() - start - paused).count()},
               {"train_loss", mean.total},
               {"mean_staleness", shared_->staleness_count ? shared_->staleness_sum / shared_->staleness_count : 0.0},
               {"max_staleness", double(shared_->staleness_max)}};
  for (size_t i = 0; i < mean.terms.size() && i < job_.loss_terms.size(); ++i) m.push_back({job_.loss_terms[i], mean.terms[i]});
  metrics_.Write(m);
  seconds = m[1].second;
  hist.assign(shared_->staleness_hist, shared_->staleness_hist + Shared::kStalenessBuckets);
  }
  RecordCluster(seconds, hist);  // outside the lock: it calls the shards
}

// One line of cluster.jsonl: each replica thread's steps, state and restarts; each shard's
// updates applied, the updates its last checkpoint holds, and its incarnation (a new one is a
// restarted shard process); pushes by staleness (`hist`). The shards are asked over the transport
// (an unreachable group is recorded as down).
void Watch::RecordCluster(double seconds, const std::vector<int64_t>& hist) {
  nlohmann::json replicas = nlohmann::json::array();
  for (int r = 0; r < shared_->replicas; ++r) {
    static const char* kStates[] = {"up", "done", "failed"};
    replicas.push_back({{"replica", r},
                        {"steps", shared_->steps_done[r].load()},
                        {"restarts", shared_->replica_restarts[r].load()},
                        {"state", kStates[shared_->replica_state[r].load()]}});
  }
  nlohmann::json shards = nlohmann::json::array();
  auto infos = ps_->Info();
  for (int g = 0; g < ps_->num_groups(); ++g) {
    for (int s = 0; s < ps_->map(g).num_shards(); ++s) {
      const bool known = infos.ok() && g < static_cast<int>(infos->size()) && s < static_cast<int>((*infos)[g].size());
      shards.push_back(ShardStatusRecord(g, s, known ? &(*infos)[g][s] : nullptr));
    }
  }
  cluster_.Write(nlohmann::json{{"seconds", seconds},
                                {"replicas", replicas},
                                {"shards", shards},
                                {"staleness_buckets", {"0", "1", "2", "3-4", "5-8", "9-16", "17-32", "33+"}},
                                {"staleness", hist}});
}

void Watch::Check(const std::atomic<int>& finished) {
  // Off the clock: park the replicas (one blocked elsewhere, e.g. in the synchronous barrier
  // behind a parked one, is not computing either; hence the bounded wait).
  const auto at = Clock::now();
  const double cpu_at = CpuSeconds();
  shared_->pause = true;
  while (shared_->parked.load() < shared_->replicas - finished.load() && Clock::now() - at < Millis(50))
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  if (PullInto(*ps_, model_).ok() && observer_->Check(model_)) shared_->stop = true;
  shared_->pause = false;
  paused += Clock::now() - at;
  paused_cpu += CpuSeconds() - cpu_at;
}

void Watch::Run(const std::atomic<int>& finished) {
  const auto start = Clock::now();
  auto last_record = start, last_check = start;
  const double interval = observer_ ? observer_->check_interval_seconds() : 0.0;
  while (finished.load() < shared_->replicas) {
    std::this_thread::sleep_for(Millis(50));
    const auto now = Clock::now();
    if (job_.show_progress) {
      char status[96];
      std::lock_guard<std::mutex> lock(shared_->mu);
      std::snprintf(status, sizeof(status), "%s loss %.4f", job_.name.c_str(),
                    shared_->window.size() ? shared_->window.LastMean(1.0).total : 0.0);
      progress_.Update(shared_->examples.load(), status);
    }
    if (now - last_record >= std::chrono::seconds(1)) {
      Record(start);
      last_record = now;
    }
    if (interval > 0 && std::chrono::duration<double>(now - last_check).count() >= interval) {
      Check(finished);
      last_check = Clock::now();
    }
  }
  Record(start);
  if (job_.show_progress) progress_.Finish();
}

// Replica threads, each run to its end; a failed one is counted and logged.
struct Threads {
  std::vector<std::thread> threads;
  std::vector<Status> status;
  std::atomic<int> finished{0};
};

void StartReplicas(const EngineOptions& e, const Job& job, const ParameterServer* ps, Shared* shared, Threads* t) {
  const int R = shared->replicas;
  const int cores = e.train.threads > 0 ? static_cast<int>(e.train.threads) : NumThreads();
  const int each = std::max(1, cores / R);
  t->status.assign(R, absl::OkStatus());
  for (int r = 0; r < R; ++r)
    t->threads.emplace_back([&e, &job, ps, shared, t, r, each] {
      SetNumThreads(each);  // this thread's share of the cores (OpenMP's per-thread setting)
      Replica replica(e, job, ps, shared, r);
      t->status[r] = replica.Run();
      shared->replica_state[r] = t->status[r].ok() ? Shared::kDone : Shared::kFailed;
      if (!t->status[r].ok()) {
        LOG_WARN << job.name << " replica " << r << " stopped: " << t->status[r];
        shared->failed++;
      }
      if (shared->sync) shared->sync->arrive_and_drop();
      if (r == 0) shared->replica0_done = true;
      t->finished++;
    });
}

void Finish(const Shared& shared, const ParameterServer& ps, RunResult* r) {
  r->examples = shared.examples.load();
  r->steps = shared.log.size();
  r->first_loss = shared.log.FirstMean();
  r->last_loss = shared.log.LastMean();
  r->replicas_failed = shared.failed.load();
  r->replica_restarts = shared.restarts.load();
  r->mean_staleness = shared.staleness_count ? shared.staleness_sum / shared.staleness_count : 0.0;
  r->max_staleness = shared.staleness_max;
  r->max_clock_lead = shared.max_clock_lead;
  r->stopped_early = shared.stop.load();
  if (auto infos = ps.Info(); infos.ok()) {
    for (const auto& group : *infos) {
      r->shard_versions.emplace_back();
      for (const ShardInfo& s : group) {
        r->shard_versions.back().push_back(s.version);
        if (!s.background_error.empty())
          r->shard_errors.push_back("shard " + std::to_string(s.shard) + ": " + s.background_error);
      }
    }
  }
}

}  // namespace

StatusOr<RunResult> RunDownpour(const EngineOptions& e, const Job& job, TrainObserver* observer) {
  const int R = e.distributed.downpour.replicas;
  const int64_t steps_each = DownpourStepsEach(e, job, R);
  DB_ASSIGN_OR_RETURN(std::unique_ptr<ReplicaModel> model, job.make_replica(0, R));
  DB_ASSIGN_OR_RETURN(auto ps, ParameterServer::Start(e.distributed.cluster, DownpourShardPlan(e, job), GroupsOf(model.get())));
  if (job.show_progress)
    LOG_INFO << "downpour: " << job.name << ", " << R << " replicas x " << steps_each << " steps, " << ps->num_groups()
             << " parameter group(s) x " << ps->map(0).num_shards() << " shards";
  Shared shared(e.distributed.downpour, R, R, steps_each);
  Watch watch(e, job, &shared, ps.get(), model.get(), observer);
  DB_RETURN_IF_ERROR(watch.Open());
  Threads threads;
  const auto start = Clock::now();
  const double cpu_start = CpuSeconds();
  StartReplicas(e, job, ps.get(), &shared, &threads);
  watch.Run(threads.finished);
  for (auto& t : threads.threads) t.join();
  RunResult r;
  r.seconds = std::chrono::duration<double>(Clock::now() - start - watch.paused).count();
  r.cpu_seconds = CpuSeconds() - cpu_start - watch.paused_cpu;
  if (shared.failed.load() == R) return threads.status[0];
  Finish(shared, *ps, &r);
  for (const std::string& err : r.shard_errors) LOG_WARN << job.name << ": " << err;
  DB_RETURN_IF_ERROR(PullInto(*ps, model.get()));
  if (job.write_checkpoint) {
    std::vector<Param*> all;
    for (int g = 0; g < model->num_groups(); ++g)
      for (Param* p : model->params(g)) all.push_back(p);
    DB_RETURN_IF_ERROR(SaveModelCheckpoint(RunCheckpointPath(e.train.run_dir), all, nullptr,
                                           {r.steps, e.train.config_text, ""}));
  }
  watch.metrics().Write(Metrics{{"examples", double(r.examples)}, {"seconds", r.seconds},
                                {"mean_staleness", r.mean_staleness}, {"max_staleness", double(r.max_staleness)},
                                {"replicas_failed", double(r.replicas_failed)},
                                {"shard_errors", double(r.shard_errors.size())}});
  r.model = std::move(model);
  return r;
}

Status RunDownpourReplica(const EngineOptions& e, const Job& job, int index, const std::string& progress_file) {
  const int R = e.distributed.downpour.replicas;
  if (index < 0 || index >= R)
    return absl::InvalidArgumentError("replica index " + std::to_string(index) + " outside [0, " + std::to_string(R) + ")");
  if (e.distributed.cluster.shard_addresses.empty())
    return absl::InvalidArgumentError("a replica process needs the shards' addresses");
  const int64_t steps_each = DownpourStepsEach(e, job, R);
  DB_ASSIGN_OR_RETURN(std::unique_ptr<ReplicaModel> model, job.make_replica(index, R));
  DB_ASSIGN_OR_RETURN(auto ps, ParameterServer::Start(e.distributed.cluster, DownpourShardPlan(e, job), GroupsOf(model.get())));
  model.reset();
  // This process runs one replica of R: another process runs replica 0, so a warmstart wait here
  // would never end (the launcher starts the other replicas late instead).
  EngineOptions one = e;
  one.distributed.downpour.warmstart_steps = 0;
  Shared shared(one.distributed.downpour, 1, R, steps_each);
  int64_t first = 0;
  std::unique_ptr<ProgressFile> record;
  if (!progress_file.empty()) {
    record = std::make_unique<ProgressFile>(progress_file);
    DB_ASSIGN_OR_RETURN(first, record->Read());
    first = std::min(first, steps_each);
    DB_RETURN_IF_ERROR(record->Open());
    if (first > 0) LOG_INFO << "replica " << index << " resumes at step " << first << " of " << steps_each;
  }
  shared.examples = first * job.examples_per_step;
  // Pushes become durable by time only if the shards checkpoint by time or log pushes: then wait
  // for that.
  const ClusterOptions& c = e.distributed.cluster;
  const bool settle = c.checkpoint_interval.count() > 0 || c.push_log;
  const Millis settle_for = 4 * std::chrono::duration_cast<Millis>(c.checkpoint_interval) + c.client.retry_for;
  Threads t;
  std::thread runner([&] {
    Replica replica(one, job, ps.get(), &shared, index);
    if (record) replica.ResumeAt(first, [&](int64_t steps) { record->Write(steps); });
    Status s = replica.Run();
    if (s.ok() && settle) s = replica.Settle(settle_for);
    t.status.push_back(s);
    t.finished++;
  });
  Progress progress(steps_each * job.examples_per_step, "examples");
  double last_loss = -1;  // none yet
  auto last_step = std::chrono::steady_clock::now();
  while (t.finished.load() == 0) {
    std::this_thread::sleep_for(Millis(200));
    char status[96];
    std::lock_guard<std::mutex> lock(shared.mu);
    const auto now = std::chrono::steady_clock::now();
    if (shared.window.size()) {
      last_loss = shared.window.LastMean(1.0).total;
      last_step = now;
    }
    // A replica waiting for a shard (a restart, a cut) says so instead of showing a loss of 0.
    const double idle = std::chrono::duration<double>(now - last_step).count();
    if (last_loss < 0)
      std::snprintf(status, sizeof(status), "replica %d starting", index);
    else if (idle >= 1.0)
      std::snprintf(status, sizeof(status), "replica %d waiting %.0f s (last loss %.4f)", index, idle, last_loss);
    else
      std::snprintf(status, sizeof(status), "replica %d loss %.4f", index, last_loss);
    shared.window = LossLog();
    progress.Update(shared.examples.load(), status);
  }
  runner.join();
  progress.Finish();
  return t.status[0];
}

}  // namespace distbelief
