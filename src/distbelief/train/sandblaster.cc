#include "distbelief/train/sandblaster.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"
#include "distbelief/io/metrics.h"
#include "distbelief/optim/lbfgs.h"
#include "distbelief/train/checkpointing.h"
#include "distbelief/train/cluster.h"

namespace distbelief {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_worker_stop{false};
void OnWorkerSignal(int) { g_worker_stop.store(true); }

// A replica serving portions: pulls the parameters when the batch changes, computes the
// portion's summed gradient and adds it to the shards' accumulator under (batch, portion).
class PortionWorker : public WorkerService {
 public:
  PortionWorker(std::unique_ptr<ReplicaModel> m, std::unique_ptr<ParameterClient> c)
      : model_(std::move(m)), client_(std::move(c)), params_(model_->params(0)),
        grad_(static_cast<size_t>(CountParams(params_))) {}

  Status RunPortion(const PortionRequest& req, PortionReply* reply) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (req.begin < 0 || req.end > model_->num_examples() || req.begin >= req.end)
      return absl::InvalidArgumentError("portion [" + std::to_string(req.begin) + ", " + std::to_string(req.end) +
                                        ") outside the " + std::to_string(model_->num_examples()) + " examples");
    if (req.batch != batch_) {
      DB_RETURN_IF_ERROR(client_->Pull(ValuePieces(params_)).status());
      batch_ = req.batch;
    }
    DB_ASSIGN_OR_RETURN(const double loss, model_->ComputeGradientOn(req.begin, req.end));
    const int64_t n = req.end - req.begin;
    size_t at = 0;
    for (Param* p : params_)  // mean -> sum, so portions add up
      for (int64_t i = 0; i < p->grad.size(); ++i) grad_[at++] = p->grad[i] * static_cast<float>(n);
    DB_RETURN_IF_ERROR(client_->Accumulate(grad_, req.batch, req.portion));
    reply->loss_sum = loss * static_cast<double>(n);
    reply->examples = n;
    return absl::OkStatus();
  }

 private:
  std::mutex mu_;
  std::unique_ptr<ReplicaModel> model_;
  std::unique_ptr<ParameterClient> client_;
  std::vector<Param*> params_;
  std::vector<float> grad_;
  int64_t batch_ = -1;
};

// Hands portions of the current batch to workers; idle workers re-run outstanding portions.
class Dispatcher {
 public:
  Dispatcher(std::vector<std::shared_ptr<WorkerChannel>> workers, int threads_each) : workers_(std::move(workers)) {
    for (size_t w = 0; w < workers_.size(); ++w)
      threads_.emplace_back([this, w, threads_each] {
        SetNumThreads(threads_each);
        Loop(static_cast<int>(w));
      });
  }
  ~Dispatcher() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  // Runs batch `id` over `portions` ([begin, end) each); the summed loss and example count.
  Status RunBatch(int64_t id, const std::vector<std::pair<int64_t, int64_t>>& portions, double* loss_sum,
                  int64_t* examples, int64_t* backups) {
    std::unique_lock<std::mutex> lock(mu_);
    batch_ = id;
    portions_ = portions;
    state_.assign(portions.size(), kTodo);
    runners_.assign(portions.size(), {});
    done_ = 0;
    loss_sum_ = 0.0;
    examples_ = 0;
    failure_ = absl::OkStatus();
    cv_.notify_all();
    cv_.wait(lock, [&] { return done_ == portions_.size() || !failure_.ok() || alive_ == 0; });
    if (failure_.ok() && done_ < portions_.size()) failure_ = absl::UnavailableError("every Sandblaster worker is gone");
    *loss_sum = loss_sum_;
    *examples = examples_;
    *backups += backups_;
    backups_ = 0;
    batch_ = -1;
    return failure_;
  }

  // Each worker's entry of cluster.jsonl: portions finished (its "steps"), up or gone.
  nlohmann::json Workers() {
    std::lock_guard<std::mutex> lock(mu_);
    nlohmann::json out = nlohmann::json::array();
    for (size_t w = 0; w < workers_.size(); ++w)
      out.push_back({{"replica", w}, {"steps", portions_by_[w]}, {"restarts", 0}, {"state", gone_[w] ? "failed" : "up"}});
    return out;
  }

 private:
  enum State { kTodo, kRunning, kDone };

  // Next portion for worker w: an untouched one, else a backup of the running portion with the
  // fewest runners that w is not already running. -1: nothing to do.
  int Pick(int w) {
    if (batch_ < 0) return -1;
    for (size_t p = 0; p < state_.size(); ++p)
      if (state_[p] == kTodo) return static_cast<int>(p);
    int best = -1;
    for (size_t p = 0; p < state_.size(); ++p)
      if (state_[p] == kRunning && !runners_[p].count(w) && (best < 0 || runners_[p].size() < runners_[best].size()))
        best = static_cast<int>(p);
    if (best >= 0) ++backups_;
    return best;
  }

  // Records what worker w's call for portion p of `batch` returned; false: w is gone for good.
  bool Finish(int w, int p, int64_t batch, const Status& s, const PortionReply& reply) {
    if (batch_ != batch) return true;  // a straggler finishing an old batch: ignore
    runners_[p].erase(w);
    if (s.ok()) {
      ++portions_by_[w];
      if (state_[p] != kDone) {
        state_[p] = kDone;
        ++done_;
        loss_sum_ += reply.loss_sum;
        examples_ += reply.examples;
      }
      return true;
    }
    LOG_WARN << "worker " << w << " failed portion " << p << ": " << s;
    if (state_[p] == kRunning && runners_[p].empty()) state_[p] = kTodo;
    // A bug or bad request, not a slow or lost peer: stop the run.
    if (!absl::IsUnavailable(s) && !absl::IsDeadlineExceeded(s) && !absl::IsFailedPrecondition(s)) failure_ = s;
    return !absl::IsUnavailable(s);  // an unreachable worker takes no more work
  }

  void Loop(int w) {
    std::unique_lock<std::mutex> lock(mu_);
    while (!quit_) {
      const int p = Pick(w);
      if (p < 0) {
        cv_.wait(lock);
        continue;
      }
      const int64_t batch = batch_;
      state_[p] = kRunning;
      runners_[p].insert(w);
      const PortionRequest req{batch, p, portions_[p].first, portions_[p].second};
      lock.unlock();
      PortionReply reply;
      const Status s = workers_[w]->RunPortion(req, &reply, Millis(600000));
      lock.lock();
      const bool alive = Finish(w, p, batch, s, reply);
      cv_.notify_all();
      if (!alive) {
        gone_[w] = true;
        --alive_;
        cv_.notify_all();
        return;
      }
    }
  }

  std::vector<std::shared_ptr<WorkerChannel>> workers_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool quit_ = false;
  int alive_ = static_cast<int>(workers_.size());
  int64_t batch_ = -1;
  std::vector<std::pair<int64_t, int64_t>> portions_;
  std::vector<State> state_;
  std::vector<std::set<int>> runners_;
  size_t done_ = 0;
  double loss_sum_ = 0.0;
  int64_t examples_ = 0, backups_ = 0;
  Status failure_;
  std::vector<int64_t> portions_by_ = std::vector<int64_t>(workers_.size(), 0);  // finished, backups too
  std::vector<bool> gone_ = std::vector<bool>(workers_.size(), false);
};

// L-BFGS's vector space on the shards: its x is the parameters; its other vectors are the shards'
// scratch vectors; f(x) is one batch through the dispatcher.
class ShardSpace : public LbfgsSpace {
 public:
  ShardSpace(ParameterClient* ps, Dispatcher* d, std::vector<std::pair<int64_t, int64_t>> portions, RunResult* r)
      : ps_(ps), d_(d), portions_(std::move(portions)), r_(r) {}
  StatusOr<double> Evaluate(Vec g) override {
    const auto t0 = Clock::now();
    DB_RETURN_IF_ERROR(ps_->BeginBatch(++batch_));
    double loss_sum = 0.0;
    int64_t examples = 0;
    DB_RETURN_IF_ERROR(d_->RunBatch(batch_, portions_, &loss_sum, &examples, &r_->backup_tasks));
    DB_RETURN_IF_ERROR(ps_->Scale(1.0 / static_cast<double>(examples), kAccumulatorVector));
    DB_RETURN_IF_ERROR(ps_->Copy(kAccumulatorVector, Id(g)));
    r_->batch_seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    r_->examples += examples;
    ++r_->evaluations;
    return loss_sum / static_cast<double>(examples);
  }
  StatusOr<double> Dot(Vec a, Vec b) override { return ps_->Dot(Id(a), Id(b)); }
  Status Axpy(double alpha, Vec x, Vec y) override { return ps_->Axpy(alpha, Id(x), Id(y)); }
  Status Scale(double alpha, Vec x) override { return ps_->Scale(alpha, Id(x)); }
  Status Copy(Vec from, Vec to) override { return ps_->Copy(Id(from), Id(to)); }

 private:
  // L-BFGS's x is the parameters; its vectors 1, 2, ... are the shards' scratch vectors.
  static VectorId Id(Vec v) { return v == kX ? kParamsVector : kFirstScratchVector + v - 1; }
  ParameterClient* ps_;
  Dispatcher* d_;
  std::vector<std::pair<int64_t, int64_t>> portions_;
  RunResult* r_;
  int64_t batch_ = 0;
};

// Channels to the workers: the configured worker processes, or replica threads served here.
struct Workers {
  std::vector<std::unique_ptr<PortionWorker>> local;
  std::vector<std::unique_ptr<Transport::Server>> servers;
  std::vector<std::shared_ptr<WorkerChannel>> channels;
};

StatusOr<Workers> StartWorkers(const SandblasterOptions& o, const Job& job, const ParameterServer& ps) {
  Workers w;
  Transport* t = ps.transport();
  for (const std::string& a : o.worker_addresses) {
    DB_ASSIGN_OR_RETURN(auto ch, t->ConnectWorker(a));
    w.channels.push_back(std::move(ch));
  }
  for (int r = 0; r < o.replicas && o.worker_addresses.empty(); ++r) {
    DB_ASSIGN_OR_RETURN(auto model, job.make_replica(r, o.replicas));
    DB_ASSIGN_OR_RETURN(auto client, ps.Connect(0, r));
    w.local.push_back(std::make_unique<PortionWorker>(std::move(model), std::move(client)));
    DB_ASSIGN_OR_RETURN(auto server, t->ServeWorker(t->LocalAddress("sandblaster-worker-" + std::to_string(r)),
                                                    w.local.back().get()));
    DB_ASSIGN_OR_RETURN(auto ch, t->ConnectWorker(server->address()));
    w.servers.push_back(std::move(server));
    w.channels.push_back(std::move(ch));
  }
  return w;
}

Status CheckModel(ReplicaModel* model) {
  if (model->num_groups() != 1 || model->num_examples() <= 0)
    return absl::InvalidArgumentError("distributed.mode = \"sandblaster\" needs a model with one parameter group and a "
                                      "fixed example set; use mode = \"downpour\"");
  return absl::OkStatus();
}

}  // namespace

StatusOr<RunResult> RunSandblaster(const EngineOptions& e, const Job& job) {
  const SandblasterOptions& o = e.distributed.sandblaster;
  DB_ASSIGN_OR_RETURN(std::unique_ptr<ReplicaModel> model, job.make_replica(0, o.replicas));
  DB_RETURN_IF_ERROR(CheckModel(model.get()));
  GroupSpec group;
  group.initial.resize(CountParams(model->params(0)));
  CopyParamsToFlat(model->params(0), group.initial);
  ShardPlan plan;
  plan.optimizer = e.optimizer;
  plan.checkpoint_name = job.name;
  DB_ASSIGN_OR_RETURN(auto ps, ParameterServer::Start(e.distributed.cluster, plan, {group}));
  DB_ASSIGN_OR_RETURN(Workers workers, StartWorkers(o, job, *ps));
  Dispatcher dispatcher(workers.channels, std::max(1, NumThreads() / static_cast<int>(workers.channels.size())));
  DB_ASSIGN_OR_RETURN(auto coordinator, ps->Connect(0, -1));
  MetricsWriter metrics, cluster_log;  // cluster.jsonl: workers and shards after each iteration
  if (job.write_checkpoint) {
    DB_RETURN_IF_ERROR(metrics.Open(e.train.run_dir + "/metrics.jsonl", e.train.tensorboard));
    std::error_code ec;
    std::filesystem::remove(e.train.run_dir + "/cluster.jsonl", ec);
    DB_RETURN_IF_ERROR(cluster_log.Open(e.train.run_dir + "/cluster.jsonl"));
  }

  // The batch: every example, cut into portions; the replicas take them as they finish.
  const int64_t n = model->num_examples();
  const int64_t num_portions = std::min<int64_t>(n, o.portions_per_replica * static_cast<int64_t>(workers.channels.size()));
  std::vector<std::pair<int64_t, int64_t>> portions;
  for (int64_t p = 0; p < num_portions; ++p) portions.push_back({n * p / num_portions, n * (p + 1) / num_portions});
  LOG_INFO << "sandblaster: " << workers.channels.size() << " replicas, " << ps->map(0).num_shards() << " shards, "
           << num_portions << " portions of ~" << n / num_portions << " examples";
  RunResult r;
  ShardSpace space(coordinator.get(), &dispatcher, portions, &r);
  Progress progress(o.lbfgs.max_iterations, "iterations");
  const auto start = Clock::now();
  DB_ASSIGN_OR_RETURN(const LbfgsResult lr, LbfgsMinimize(&space, o.lbfgs, [&](int64_t it, double f) {
    char status[64];
    std::snprintf(status, sizeof(status), "loss %.5f", f);
    progress.Update(it, status);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    metrics.Write(Metrics{{"iteration", double(it)}, {"train_loss", f}, {"evaluations", double(r.evaluations)},
                          {"seconds", seconds}});
    nlohmann::json shards = nlohmann::json::array();
    auto infos = ps->Info();
    for (int s = 0; s < ps->map(0).num_shards(); ++s)
      shards.push_back(ShardStatusRecord(0, s, infos.ok() && s < static_cast<int>((*infos)[0].size()) ? &(*infos)[0][s] : nullptr));
    cluster_log.Write(nlohmann::json{{"seconds", seconds}, {"unit", "portions"}, {"replicas", dispatcher.Workers()},
                                     {"shards", shards}});
  }));
  progress.Finish();
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.steps = lr.iterations;
  r.first_loss.total = lr.first_value;
  r.last_loss.total = lr.value;
  DB_RETURN_IF_ERROR(coordinator->Pull(ValuePieces(model->params(0))).status());
  if (job.write_checkpoint)
    DB_RETURN_IF_ERROR(SaveModelCheckpoint(RunCheckpointPath(e.train.run_dir), model->params(0), nullptr,
                                           {r.steps, e.train.config_text, ""}));
  r.model = std::move(model);
  return r;
}

Status RunSandblasterWorker(const EngineOptions& e, const Job& job, int index, const std::string& listen) {
  const SandblasterOptions& o = e.distributed.sandblaster;
  if (e.distributed.cluster.shard_addresses.empty()) return absl::InvalidArgumentError("a worker needs the shards' addresses");
  DB_ASSIGN_OR_RETURN(std::unique_ptr<ReplicaModel> model, job.make_replica(index, o.replicas));
  DB_RETURN_IF_ERROR(CheckModel(model.get()));
  GroupSpec group;
  group.initial.resize(CountParams(model->params(0)));  // only its size matters: the shards are elsewhere
  DB_ASSIGN_OR_RETURN(auto ps, ParameterServer::Start(e.distributed.cluster, ShardPlan{}, {group}));
  DB_ASSIGN_OR_RETURN(auto client, ps->Connect(0, index));
  PortionWorker worker(std::move(model), std::move(client));
  DB_ASSIGN_OR_RETURN(auto server, ps->transport()->ServeWorker(listen, &worker));
  ::signal(SIGTERM, OnWorkerSignal);
  ::signal(SIGINT, OnWorkerSignal);
  std::printf("worker %d listening on %s\n", index, server->address().c_str());
  std::fflush(stdout);
  LOG_INFO << "sandblaster worker " << index << " of " << o.replicas << " listening on " << server->address();
  while (!g_worker_stop.load()) std::this_thread::sleep_for(Millis(50));
  return absl::OkStatus();
}

}  // namespace distbelief
