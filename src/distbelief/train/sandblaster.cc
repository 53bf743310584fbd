#include "distbelief/train/sandblaster.h"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <numeric>
#include <thread>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"
#include "distbelief/base/random.h"
#include "distbelief/io/metrics.h"
#include "distbelief/ps/parameter_client.h"
#include "distbelief/train/cluster.h"
#include "distbelief/train/workload.h"

namespace distbelief {
namespace {

using Clock = std::chrono::steady_clock;

// The batch order: the same permutation in the coordinator and every worker process.
std::vector<int64_t> BatchOrder(int64_t n, uint64_t seed) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Random rng(seed);
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.UniformInt(i + 1)]);
  return order;
}

std::atomic<bool> g_worker_stop{false};
void OnWorkerSignal(int) { g_worker_stop.store(true); }

// A replica serving portions: pulls x when the batch changes, computes the portion's summed
// gradient and adds it to the shards' accumulator under (batch, portion).
class PortionWorker : public WorkerService {
 public:
  PortionWorker(std::unique_ptr<Workload> w, std::unique_ptr<ParameterClient> c, std::vector<int64_t> order, int delay_ms)
      : w_(std::move(w)), c_(std::move(c)), order_(std::move(order)), delay_ms_(delay_ms),
        params_(w_->num_params()), grad_(w_->num_params()) {}

  Status RunPortion(const rpc::PortionRequest& req, rpc::PortionReply* reply) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (req.begin() < 0 || req.end() > static_cast<int64_t>(order_.size()) || req.begin() >= req.end())
      return absl::InvalidArgumentError("portion [" + std::to_string(req.begin()) + ", " + std::to_string(req.end()) + ") outside the data");
    if (req.batch() != batch_) {
      PullResult pr;
      DB_RETURN_IF_ERROR(c_->Pull(params_, &pr));
      w_->SetParams(params_);
      batch_ = req.batch();
    }
    if (delay_ms_ > 0) std::this_thread::sleep_for(Millis(delay_ms_));
    const int64_t n = req.end() - req.begin();
    const double loss = w_->LossAndGradient(std::span<const int64_t>(order_).subspan(req.begin(), n), grad_);
    for (float& g : grad_) g *= static_cast<float>(n);  // mean -> sum, so portions add up
    DB_RETURN_IF_ERROR(c_->Accumulate(grad_, req.batch(), req.portion()));
    reply->set_loss_sum(loss * n);
    reply->set_examples(n);
    return absl::OkStatus();
  }

 private:
  std::mutex mu_;
  std::unique_ptr<Workload> w_;
  std::unique_ptr<ParameterClient> c_;
  std::vector<int64_t> order_;
  int delay_ms_;
  std::vector<float> params_, grad_;
  int64_t batch_ = -1;
};

// Hands portions of the current batch to workers; idle workers re-run outstanding portions.
class Dispatcher {
 public:
  Dispatcher(std::vector<std::shared_ptr<WorkerChannel>> workers, int threads_each)
      : workers_(std::move(workers)) {
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

  // Runs batch `id` over portions [(begin, end)], returns the summed loss and example count.
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
    cv_.wait(lock, [&] { return done_ == portions_.size() || !failure_.ok(); });
    *loss_sum = loss_sum_;
    *examples = examples_;
    *backups += backups_;
    backups_ = 0;
    batch_ = -1;
    return failure_;
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
      if (state_[p] == kRunning && !runners_[p].count(w) &&
          (best < 0 || runners_[p].size() < runners_[best].size()))
        best = static_cast<int>(p);
    if (best >= 0) ++backups_;
    return best;
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
      rpc::PortionRequest req;
      req.set_batch(batch);
      req.set_portion(p);
      req.set_begin(portions_[p].first);
      req.set_end(portions_[p].second);
      lock.unlock();
      rpc::PortionReply reply;
      const Status s = workers_[w]->RunPortion(req, &reply, Millis(600000));
      lock.lock();
      if (batch_ != batch) continue;  // a straggler finishing an old batch: ignore
      runners_[p].erase(w);
      if (s.ok() && state_[p] != kDone) {
        state_[p] = kDone;
        ++done_;
        loss_sum_ += reply.loss_sum();
        examples_ += reply.examples();
        cv_.notify_all();
      } else if (!s.ok()) {
        LOG_WARN << "worker " << w << " failed portion " << p << ": " << s;
        if (state_[p] == kRunning && runners_[p].empty()) state_[p] = kTodo;
        if (!absl::IsUnavailable(s) && !absl::IsDeadlineExceeded(s) && !absl::IsFailedPrecondition(s)) {
          failure_ = s;  // a bug or bad request, not a slow or lost peer: stop
          cv_.notify_all();
        }
        // An unreachable worker stops taking work; the others finish the batch.
        if (absl::IsUnavailable(s)) {
          cv_.notify_all();
          return;
        }
      }
    }
  }

  std::vector<std::shared_ptr<WorkerChannel>> workers_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool quit_ = false;
  int64_t batch_ = -1;
  std::vector<std::pair<int64_t, int64_t>> portions_;
  std::vector<State> state_;
  std::vector<std::set<int>> runners_;
  size_t done_ = 0;
  double loss_sum_ = 0.0;
  int64_t examples_ = 0;
  int64_t backups_ = 0;
  Status failure_;
};

}  // namespace

StatusOr<SandblasterResult> RunSandblaster(const Config& config, const SandblasterOptions& options) {
  const DistributedOptions& d = config.distributed;
  const TrainOptions& o = config.train;
  DB_ASSIGN_OR_RETURN(DistributedSetup setup, SetUpDistributed(config));
  auto& data = setup.data;
  auto& init = setup.init;
  const std::vector<float>& initial = setup.initial;
  auto& cluster = setup.cluster;
  MetricsWriter metrics;
  DB_RETURN_IF_ERROR(metrics.Open(o.run_dir + "/metrics.jsonl"));

  // The batch: every training example, in one fixed shuffled order shared by all replicas.
  const int64_t n = data->train.images.dim(0);
  const std::vector<int64_t> order = BatchOrder(n, o.seed);
  const int replicas = static_cast<int>(d.replicas);
  const int64_t num_portions = std::min<int64_t>(n, d.portions_per_replica * replicas);
  std::vector<std::pair<int64_t, int64_t>> portions;
  for (int64_t p = 0; p < num_portions; ++p) portions.push_back({n * p / num_portions, n * (p + 1) / num_portions});

  std::vector<std::unique_ptr<PortionWorker>> workers;
  std::vector<std::unique_ptr<Transport::Server>> worker_servers;
  std::vector<std::shared_ptr<WorkerChannel>> channels;
  if (!d.worker_addresses.empty()) {
    for (const auto& a : d.worker_addresses) {
      DB_ASSIGN_OR_RETURN(auto ch, cluster->transport->ConnectWorker(a));
      channels.push_back(std::move(ch));
    }
  }
  for (int r = 0; r < replicas && d.worker_addresses.empty(); ++r) {
    DB_ASSIGN_OR_RETURN(auto w, Workload::Create(config, data));
    ClientOptions co;
    co.replica = r;
    DB_ASSIGN_OR_RETURN(auto c, ParameterClient::Connect(cluster->transport.get(), cluster->addresses, *cluster->map, co));
    const int delay = r < static_cast<int>(options.worker_delay_ms.size()) ? options.worker_delay_ms[r] : 0;
    workers.push_back(std::make_unique<PortionWorker>(std::move(w), std::move(c), order, delay));
    DB_ASSIGN_OR_RETURN(auto server, cluster->transport->ServeWorker(d.transport == "grpc" ? "127.0.0.1:0" : "", workers.back().get()));
    DB_ASSIGN_OR_RETURN(auto ch, cluster->transport->ConnectWorker(server->address()));
    worker_servers.push_back(std::move(server));
    channels.push_back(std::move(ch));
  }
  Dispatcher dispatcher(channels, std::max(1, NumThreads() / static_cast<int>(channels.size())));
  DB_ASSIGN_OR_RETURN(auto ps, ParameterClient::Connect(cluster->transport.get(), cluster->addresses, *cluster->map, ClientOptions{}));

  SandblasterResult result;
  int64_t batch_id = 0;
  const auto start = Clock::now();
  // f(x) and its gradient, left in the shards' "acc" (as the mean over the batch).
  auto evaluate = [&](double* f) -> Status {
    const auto t0 = Clock::now();
    DB_RETURN_IF_ERROR(ps->BeginBatch(++batch_id));
    double loss_sum = 0.0;
    int64_t examples = 0;
    DB_RETURN_IF_ERROR(dispatcher.RunBatch(batch_id, portions, &loss_sum, &examples, &result.backup_tasks));
    DB_RETURN_IF_ERROR(ps->Scale(1.0 / examples, "acc"));
    *f = loss_sum / examples;
    result.batch_seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    result.run.examples += examples;
    ++result.evaluations;
    return absl::OkStatus();
  };

  // L-BFGS (Nocedal & Wright, Alg. 7.4 and 7.5) as vector operations on the shards.
  const int m = static_cast<int>(d.lbfgs_history);
  const int64_t iterations = options.max_iterations > 0 ? options.max_iterations : d.lbfgs_iterations;
  struct Pair { std::string s, y; double rho; };
  std::deque<Pair> history;
  int next_slot = 0;
  double f = 0.0;
  DB_RETURN_IF_ERROR(evaluate(&f));
  DB_RETURN_IF_ERROR(ps->Copy("acc", "g"));
  result.run.train.first_train_loss = f;
  LOG_INFO << "sandblaster: " << replicas << " replicas, " << cluster->addresses.size() << " shards, "
           << num_portions << " portions of ~" << n / num_portions << " examples; initial loss " << f;
  Progress progress(iterations, "iterations");
  for (int64_t it = 0; it < iterations; ++it) {
    // Two-loop recursion: d = -H g.
    DB_RETURN_IF_ERROR(ps->Copy("g", "d"));
    std::vector<double> alpha(history.size());
    for (size_t k = history.size(); k-- > 0;) {
      DB_ASSIGN_OR_RETURN(double sd, ps->Dot(history[k].s, "d"));
      alpha[k] = history[k].rho * sd;
      DB_RETURN_IF_ERROR(ps->Axpy(-alpha[k], history[k].y, "d"));
    }
    if (!history.empty()) {
      DB_ASSIGN_OR_RETURN(double yy, ps->Dot(history.back().y, history.back().y));
      DB_RETURN_IF_ERROR(ps->Scale(1.0 / (history.back().rho * yy), "d"));  // gamma = s'y / y'y
    }
    for (size_t k = 0; k < history.size(); ++k) {
      DB_ASSIGN_OR_RETURN(double yd, ps->Dot(history[k].y, "d"));
      DB_RETURN_IF_ERROR(ps->Axpy(alpha[k] - history[k].rho * yd, history[k].s, "d"));
    }
    DB_RETURN_IF_ERROR(ps->Scale(-1.0, "d"));
    DB_ASSIGN_OR_RETURN(double slope, ps->Dot("g", "d"));
    if (slope >= 0.0) {  // not a descent direction: restart from steepest descent
      history.clear();
      DB_RETURN_IF_ERROR(ps->Copy("g", "d"));
      DB_RETURN_IF_ERROR(ps->Scale(-1.0, "d"));
      DB_ASSIGN_OR_RETURN(slope, ps->Dot("g", "d"));
    }
    double step = 1.0;
    if (history.empty()) step = std::min(1.0, 1.0 / std::sqrt(-slope));
    // Backtracking line search with the Armijo condition.
    DB_RETURN_IF_ERROR(ps->Copy("x", "x0"));
    DB_RETURN_IF_ERROR(ps->Copy("g", "g0"));
    double f_new = f;
    for (int ls = 0; ls < 12; ++ls) {
      DB_RETURN_IF_ERROR(ps->Copy("x0", "x"));
      DB_RETURN_IF_ERROR(ps->Axpy(step, "d", "x"));
      DB_RETURN_IF_ERROR(evaluate(&f_new));
      if (f_new <= f + 1e-4 * step * slope) break;
      step *= 0.5;
    }
    DB_RETURN_IF_ERROR(ps->Copy("acc", "g"));
    // New pair: s = x - x0, y = g - g0, kept on the shards in a ring of m slots.
    Pair pr{"s" + std::to_string(next_slot), "y" + std::to_string(next_slot), 0.0};
    DB_RETURN_IF_ERROR(ps->Copy("x", pr.s));
    DB_RETURN_IF_ERROR(ps->Axpy(-1.0, "x0", pr.s));
    DB_RETURN_IF_ERROR(ps->Copy("g", pr.y));
    DB_RETURN_IF_ERROR(ps->Axpy(-1.0, "g0", pr.y));
    DB_ASSIGN_OR_RETURN(double sy, ps->Dot(pr.s, pr.y));
    if (sy > 1e-12) {
      pr.rho = 1.0 / sy;
      history.push_back(pr);
      next_slot = (next_slot + 1) % (m + 1);  // m + 1 slots: the one being written is never in use
      if (static_cast<int>(history.size()) > m) history.pop_front();
    }
    f = f_new;
    char status[64];
    std::snprintf(status, sizeof(status), "loss %.5f", f);
    progress.Update(it + 1, status);
    metrics.Write({{"iteration", it + 1}, {"train_loss", f}, {"step", step}, {"evaluations", result.evaluations},
                   {"seconds", std::chrono::duration<double>(Clock::now() - start).count()}});
  }
  progress.Finish();
  result.run.train.last_train_loss = f;
  result.run.train.steps = iterations;
  result.run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // Evaluate the final parameters on the test set.
  std::vector<float> params(initial.size());
  PullResult pr;
  DB_RETURN_IF_ERROR(ps->Pull(params, &pr));
  init->SetParams(params);
  const EvalResult e = init->Evaluate();
  result.run.train.test_loss = e.loss;
  result.run.train.test_accuracy = e.accuracy;
  metrics.Write({{"test_loss", e.loss}, {"test_accuracy", e.accuracy}, {"backup_tasks", result.backup_tasks}});
  DB_RETURN_IF_ERROR(init->SaveCheckpoint(o.run_dir + "/checkpoint.safetensors", config.text, iterations));
  return result;
}

}  // namespace distbelief

namespace distbelief {

Status RunSandblasterWorkerProcess(const Config& config, int index, const std::vector<std::string>& shard_addresses,
                                   const std::string& listen) {
  const DistributedOptions& d = config.distributed;
  if (shard_addresses.empty()) return absl::InvalidArgumentError("a worker needs --shards");
  if (config.train.threads > 0) SetNumThreads(static_cast<int>(config.train.threads));
  DB_ASSIGN_OR_RETURN(auto data, Dataset::Load(config.train));
  DB_ASSIGN_OR_RETURN(auto w, Workload::Create(config, data));
  DB_ASSIGN_OR_RETURN(TransportOptions to, MakeTransportOptions(config));
  auto transport = MakeGrpcTransport(to);
  const ShardMap map(w->num_params(), static_cast<int>(shard_addresses.size()));
  ClientOptions co;
  co.replica = index;
  DB_ASSIGN_OR_RETURN(auto client, ParameterClient::Connect(transport.get(), shard_addresses, map, co));
  PortionWorker worker(std::move(w), std::move(client), BatchOrder(data->train.images.dim(0), config.train.seed), 0);
  DB_ASSIGN_OR_RETURN(auto server, transport->ServeWorker(listen, &worker));
  ::signal(SIGTERM, OnWorkerSignal);
  ::signal(SIGINT, OnWorkerSignal);
  std::printf("worker %d listening on %s\n", index, server->address().c_str());
  std::fflush(stdout);
  LOG_INFO << "sandblaster worker " << index << " of " << d.replicas << " listening on " << server->address();
  while (!g_worker_stop.load()) std::this_thread::sleep_for(Millis(50));
  return absl::OkStatus();
}

}  // namespace distbelief
