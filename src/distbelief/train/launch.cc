#include "distbelief/train/launch.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "distbelief/base/logging.h"
#include "distbelief/io/metrics.h"
#include "distbelief/train/checkpointing.h"
#include "distbelief/train/cluster.h"
#include "distbelief/train/downpour.h"
#include "distbelief/train/sandblaster.h"

namespace distbelief {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

std::string Describe(int status) {
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "exit status " + std::to_string(WEXITSTATUS(status));
}

// The child processes of a launch. Whatever way Launch returns, the destructor stops those still
// running (SIGTERM, then SIGKILL after 5 s) and reaps them; each child also dies with the
// launcher itself (PR_SET_PDEATHSIG), so even a kill -9 of launch leaves no orphan serving.
class Children {
 public:
  ~Children() { StopAll(); }
  // Starts args (argv[0] = the binary). With `out_fd`, the child's stdout is a pipe whose read end
  // is returned there.
  StatusOr<pid_t> Spawn(const std::vector<std::string>& args, int* out_fd) {
    int fds[2] = {-1, -1};
    if (out_fd && ::pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) return absl::InternalError(std::string("fork failed: ") + std::strerror(errno));
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);  // the launcher died before prctl took effect
      if (out_fd) ::dup2(fds[1], STDOUT_FILENO);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      std::fprintf(stderr, "exec %s failed: %s\n", argv[0], std::strerror(errno));
      ::_exit(127);
    }
    if (out_fd) {
      ::close(fds[1]);
      *out_fd = fds[0];
    }
    running_.insert(pid);
    return pid;
  }
  // A child that waitpid reported: no longer ours to stop.
  void Reaped(pid_t pid) { running_.erase(pid); }
  void Stop(const std::vector<pid_t>& pids) {
    for (pid_t p : pids) ::kill(p, SIGTERM);
    const auto give_up = Clock::now() + std::chrono::seconds(5);
    for (pid_t p : pids) {
      while (running_.count(p) && ::waitpid(p, nullptr, WNOHANG) == 0) {
        if (Clock::now() > give_up) {
          ::kill(p, SIGKILL);
          ::waitpid(p, nullptr, 0);
          break;
        }
        std::this_thread::sleep_for(Millis(10));
      }
      running_.erase(p);
    }
  }
  void StopAll() { Stop(std::vector<pid_t>(running_.begin(), running_.end())); }

 private:
  std::set<pid_t> running_;
};

// Reads the child's "... listening on ADDRESS" line (within 60 s).
StatusOr<std::string> ReadAddress(int fd, pid_t pid, const std::string& what) {
  std::string line;
  const auto give_up = Clock::now() + std::chrono::seconds(60);
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  while (Clock::now() < give_up) {
    char c;
    const ssize_t n = ::read(fd, &c, 1);
    if (n == 1) {
      if (c != '\n') {
        line += c;
        continue;
      }
      const auto at = line.find(" listening on ");
      if (at != std::string::npos) return line.substr(at + 14);
      line.clear();
      continue;
    }
    if (n == 0) break;  // the child closed stdout: it died
    int status;
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
    std::this_thread::sleep_for(Millis(10));
  }
  return absl::UnavailableError(what + " process " + std::to_string(pid) + " did not start serving");
}

// A fresh 128-bit secret from the kernel's generator, as hex.
StatusOr<std::string> NewSecret() {
  std::ifstream in("/dev/urandom", std::ios::binary);
  unsigned char bytes[16];
  if (!in.read(reinterpret_cast<char*>(bytes), sizeof(bytes))) return absl::UnavailableError("cannot read /dev/urandom");
  std::string hex;
  for (unsigned char b : bytes) hex += "0123456789abcdef"[b >> 4], hex += "0123456789abcdef"[b & 15];
  return hex;
}

// Writes `text` to `path`, readable by the user only.
Status WritePrivate(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError("cannot write " + path + ": " + std::strerror(errno));
  ::fchmod(fd, 0600);
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok ? absl::OkStatus() : absl::UnavailableError("cannot write " + path);
}

// What every child is told: the resolved config and secret in run_dir/launch, shard checkpoints,
// its share of the cores.
StatusOr<RoleOptions> CommonRole(const EngineOptions& e) {
  const std::string dir = e.train.run_dir + "/launch";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  RoleOptions r;
  r.config_path = dir + "/config.toml";
  DB_RETURN_IF_ERROR(WritePrivate(r.config_path, e.train.config_text));
  std::string secret = e.distributed.cluster.transport.secret;
  if (secret.empty()) {
    DB_ASSIGN_OR_RETURN(secret, NewSecret());
  }
  r.secret_file = dir + "/secret";
  DB_RETURN_IF_ERROR(WritePrivate(r.secret_file, secret));
  const ClusterOptions& c = e.distributed.cluster;
  r.shard_checkpoint_dir = c.checkpoint_dir.empty() ? ShardCheckpointDir(e.train.run_dir) : c.checkpoint_dir;
  r.shard_checkpoint_every = c.checkpoint_every > 0 ? c.checkpoint_every : 50;
  const int replicas = e.distributed.mode == Mode::kSandblaster ? e.distributed.sandblaster.replicas
                                                                 : e.distributed.downpour.replicas;
  if (e.train.threads == 0) {  // share the cores between the replica processes
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    r.threads = std::max(1, cores / replicas);
  }
  return r;
}

// The running cluster of one launch.
struct Cluster {
  Children children;
  RoleOptions common;
  std::string self;
  std::vector<std::string> addresses;  // of the shards
  std::map<pid_t, int> shard_of, replica_of;
  std::string run_dir;

  std::string ProgressFile(int replica) const {
    return run_dir + "/launch/replica-" + std::to_string(replica) + ".progress";
  }

  std::vector<std::string> Args(RoleOptions r) const {
    std::vector<std::string> args = {self};
    for (std::string& a : RoleArgs(r)) args.push_back(std::move(a));
    return args;
  }
  // Starts a serving role (shard, worker) and reads the address it prints.
  StatusOr<std::pair<pid_t, std::string>> StartServing(RoleOptions r) {
    int fd = -1;
    DB_ASSIGN_OR_RETURN(pid_t pid, children.Spawn(Args(r), &fd));
    StatusOr<std::string> address = ReadAddress(fd, pid, RoleName(r.role));
    ::close(fd);
    if (!address.ok()) return address.status();
    LOG_INFO << "started " << RoleName(r.role) << " " << r.index << " pid " << pid << " at " << *address;
    return std::pair<pid_t, std::string>{pid, *address};
  }
  Status StartShard(int s, const std::string& listen) {
    RoleOptions r = common;
    r.role = Role::kShard;
    r.index = s;
    r.listen = listen;
    DB_ASSIGN_OR_RETURN(auto started, StartServing(r));
    shard_of[started.first] = s;
    addresses[s] = started.second;
    return absl::OkStatus();
  }
  Status StartReplica(int index) {
    RoleOptions r = common;
    r.role = Role::kReplica;
    r.index = index;
    r.shards = addresses;
    r.progress_file = ProgressFile(index);
    DB_ASSIGN_OR_RETURN(pid_t pid, children.Spawn(Args(r), nullptr));
    replica_of[pid] = index;
    LOG_INFO << "started replica " << index << " pid " << pid;
    return absl::OkStatus();
  }
  StatusOr<std::string> StartWorker(int index) {
    RoleOptions r = common;
    r.role = Role::kWorker;
    r.index = index;
    r.shards = addresses;
    DB_ASSIGN_OR_RETURN(auto started, StartServing(r));
    return started.second;
  }
};

// Engine options of this process as the coordinator of the processes it started.
EngineOptions Coordinator(const EngineOptions& e, const Cluster& c) {
  EngineOptions o = e;
  o.distributed.cluster.transport.kind = TransportKind::kGrpc;
  o.distributed.cluster.shard_addresses = c.addresses;
  o.distributed.cluster.shards = static_cast<int>(c.addresses.size());
  if (o.distributed.cluster.transport.secret.empty()) {
    StatusOr<std::string> s = ReadSecretFile(c.common.secret_file);
    if (s.ok()) o.distributed.cluster.transport.secret = *s;
  }
  return o;
}

// Downpour: replica 0 first, the others once the shards have taken warmstart_steps / n_push
// updates; dead shards restarted; until every replica has ended.
Status WatchDownpour(const EngineOptions& e, Cluster* c, LaunchResult* result) {
  const DownpourOptions& d = e.distributed.downpour;
  for (int r = 0; r < d.replicas; ++r) std::filesystem::remove(c->ProgressFile(r));  // a new run starts at 0
  DB_RETURN_IF_ERROR(c->StartReplica(0));
  int started = 1, running = 1;
  int restarts_left = d.replica_restarts;
  auto transport = MakeGrpcTransport(Coordinator(e, *c).distributed.cluster.transport);
  DB_ASSIGN_OR_RETURN(auto shard0, transport->ConnectShard(c->addresses[0]));
  // cluster.jsonl for the dashboard, once a second: each replica process's state, steps (from its
  // progress file) and restarts; each shard's Info (docs/dashboard.md).
  std::vector<std::string> state(d.replicas, "waiting");
  std::vector<int> restarts(d.replicas, 0);
  state[0] = "up";
  std::vector<std::shared_ptr<ShardChannel>> shards;
  for (const std::string& a : c->addresses) {
    auto ch = transport->ConnectShard(a);
    shards.push_back(ch.ok() ? *ch : nullptr);
  }
  MetricsWriter cluster_log;
  std::error_code ec;
  std::filesystem::remove(e.train.run_dir + "/cluster.jsonl", ec);
  DB_RETURN_IF_ERROR(cluster_log.Open(e.train.run_dir + "/cluster.jsonl"));
  const auto start = std::chrono::steady_clock::now();
  auto last_record = start - std::chrono::seconds(1);
  auto record = [&] {
    nlohmann::json replicas = nlohmann::json::array(), shard_list = nlohmann::json::array();
    for (int r = 0; r < d.replicas; ++r) {
      int64_t steps = 0;
      std::ifstream(c->ProgressFile(r)) >> steps;
      replicas.push_back({{"replica", r}, {"steps", steps}, {"restarts", restarts[r]}, {"state", state[r]}});
    }
    for (size_t s = 0; s < shards.size(); ++s) {
      ShardInfo info;
      const bool up = shards[s] && shards[s]->Info(&info, Millis(500)).ok();
      shard_list.push_back(ShardStatusRecord(0, static_cast<int>(s), up ? &info : nullptr));
    }
    cluster_log.Write(nlohmann::json{
        {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()},
        {"replicas", replicas},
        {"shards", shard_list}});
  };
  while (running > 0 || started < d.replicas) {
    if (g_stop.load()) return absl::CancelledError("launch interrupted");
    if (std::chrono::steady_clock::now() - last_record >= std::chrono::seconds(1)) {
      record();
      last_record = std::chrono::steady_clock::now();
    }
    if (started < d.replicas) {
      ShardInfo info;
      const bool warm = d.warmstart_steps == 0 || (shard0->Info(&info, Millis(2000)).ok() &&
                                                   static_cast<int64_t>(info.version) >= d.warmstart_steps / d.n_push);
      if (warm || running == 0)
        for (; started < d.replicas; ++started, ++running) {
          DB_RETURN_IF_ERROR(c->StartReplica(started));
          state[started] = "up";
        }
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(Millis(100));
      continue;
    }
    c->children.Reaped(pid);
    if (auto it = c->replica_of.find(pid); it != c->replica_of.end()) {
      const int r = it->second;
      c->replica_of.erase(it);
      --running;
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        LOG_INFO << "replica " << r << " finished";
        state[r] = "done";
      } else if (restarts_left > 0) {
        --restarts_left;
        ++result->replica_restarts;
        ++restarts[r];
        LOG_WARN << "replica " << r << " died (" << Describe(status) << "); starting it again where it was";
        DB_RETURN_IF_ERROR(c->StartReplica(r));
        ++running;
      } else {
        ++result->replicas_failed;
        state[r] = "failed";
        LOG_WARN << "replica " << r << " died (" << Describe(status) << "); the run goes on without it";
      }
    } else if (auto sh = c->shard_of.find(pid); sh != c->shard_of.end()) {
      const int s = sh->second;
      c->shard_of.erase(sh);
      ++result->shard_restarts;
      LOG_WARN << "shard " << s << " died (" << Describe(status) << "); restarting it from its checkpoint";
      Status st = absl::UnavailableError("not started");
      for (int attempt = 0; attempt < 20 && !st.ok(); ++attempt) {
        st = c->StartShard(s, c->addresses[s]);
        if (!st.ok()) std::this_thread::sleep_for(Millis(250));
      }
      DB_RETURN_IF_ERROR(st);
    }
  }
  record();
  if (result->replicas_failed == d.replicas) return absl::InternalError("every replica died");
  return absl::OkStatus();
}

}  // namespace

const char* RoleName(Role r) {
  switch (r) {
    case Role::kShard: return "shard";
    case Role::kReplica: return "replica";
    case Role::kWorker: return "worker";
  }
  return "?";
}

std::vector<std::string> RoleArgs(const RoleOptions& r) {
  std::vector<std::string> a = {RoleName(r.role), "--config", r.config_path, "--index", std::to_string(r.index)};
  if (r.role != Role::kReplica) a.insert(a.end(), {"--listen", r.listen});
  if (r.role != Role::kShard) {
    std::string joined;
    for (const auto& s : r.shards) joined += (joined.empty() ? "" : ",") + s;
    a.insert(a.end(), {"--shards", joined});
  }
  if (r.threads > 0) a.insert(a.end(), {"--threads", std::to_string(r.threads)});
  if (!r.secret_file.empty()) a.insert(a.end(), {"--secret-file", r.secret_file});
  if (r.insecure && r.role != Role::kReplica) a.push_back("--insecure");
  if (r.role == Role::kShard && !r.shard_checkpoint_dir.empty())
    a.insert(a.end(), {"--checkpoint-dir", r.shard_checkpoint_dir});
  if (r.role == Role::kShard && r.shard_checkpoint_every >= 0)
    a.insert(a.end(), {"--checkpoint-every", std::to_string(r.shard_checkpoint_every)});
  if (r.role == Role::kReplica && !r.progress_file.empty()) a.insert(a.end(), {"--progress-file", r.progress_file});
  return a;
}

Status ApplyRole(const RoleOptions& r, EngineOptions* e) {
  ClusterOptions& c = e->distributed.cluster;
  c.transport.kind = TransportKind::kGrpc;
  if (r.role != Role::kShard) {
    if (r.shards.empty()) return absl::InvalidArgumentError(std::string(RoleName(r.role)) + " needs --shards");
    c.shard_addresses = r.shards;
    c.shards = static_cast<int>(r.shards.size());
  }
  if (r.threads > 0) e->train.threads = r.threads;
  if (!r.secret_file.empty()) {
    DB_ASSIGN_OR_RETURN(c.transport.secret, ReadSecretFile(r.secret_file));
  }
  if (!r.shard_checkpoint_dir.empty()) c.checkpoint_dir = r.shard_checkpoint_dir;
  if (r.shard_checkpoint_every >= 0) c.checkpoint_every = r.shard_checkpoint_every;
  if (r.role != Role::kReplica && c.transport.secret.empty() && !IsLoopbackAddress(r.listen)) {
    if (!r.insecure)
      return absl::FailedPreconditionError(std::string(RoleName(r.role)) + " would listen on " + r.listen +
                                           " without a secret, so anyone who reaches it could push: give "
                                           "--secret-file (or transport.secret_file), or --insecure to allow it");
    LOG_WARN << "INSECURE: " << RoleName(r.role) << " listens on " << r.listen
             << " without a secret; any client that reaches it is accepted";
  }
  return absl::OkStatus();
}

bool IsLoopbackAddress(const std::string& host_port) {
  std::string host = host_port.substr(0, host_port.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

Status RunShardRole(const EngineOptions& e, const Job& job, int index, const std::string& listen) {
  const ClusterOptions& c = e.distributed.cluster;
  DB_ASSIGN_OR_RETURN(std::unique_ptr<ReplicaModel> model, job.make_replica(0, e.distributed.downpour.replicas));
  const std::vector<GroupSpec> groups = GroupsOf(model.get());
  model.reset();
  // Shard processes are numbered group by group: index = group * shards + shard.
  const int G = static_cast<int>(groups.size());
  if (index < 0 || index >= G * c.shards)
    return absl::InvalidArgumentError("shard index " + std::to_string(index) + " outside [0, " +
                                      std::to_string(G * c.shards) + ") (" + std::to_string(G) + " parameter group(s) x " +
                                      std::to_string(c.shards) + " shards)");
  const int group = index / c.shards, local = index % c.shards;
  const GroupSpec& spec = groups[group];
  const ShardMap map = MapFor(static_cast<int64_t>(spec.initial.size()), c.shards, spec.bound);
  ShardPlan plan = DownpourShardPlan(e, job);
  if (e.distributed.mode == Mode::kSandblaster) plan.schedule = ScheduleOptions{};  // L-BFGS moves x itself
  const ShardOptions so = ParameterServer::OptionsFor(c, plan, map, spec.bound, group, local, G);
  DB_ASSIGN_OR_RETURN(auto shard, ParameterShard::Create(so, std::span<const float>(spec.initial)
                                                                 .subspan(map.begin(local), map.size(local))));
  auto transport = MakeGrpcTransport(c.transport);
  DB_ASSIGN_OR_RETURN(auto server, transport->ServeShard(listen, shard.get()));
  ::signal(SIGTERM, OnSignal);
  ::signal(SIGINT, OnSignal);
  std::printf("shard %d listening on %s\n", index, server->address().c_str());
  std::fflush(stdout);
  LOG_INFO << "shard " << index << " of " << G * c.shards << " (" << map.size(local) << " parameters, version "
           << shard->version() << ") listening on " << server->address();
  while (!g_stop.load()) std::this_thread::sleep_for(Millis(50));
  server.reset();
  if (!c.checkpoint_dir.empty()) DB_RETURN_IF_ERROR(shard->SaveCheckpoint());
  LOG_INFO << "shard " << index << " stopped at version " << shard->version();
  return absl::OkStatus();
}

StatusOr<std::unique_ptr<ReplicaModel>> PullFromShards(const EngineOptions& e, const Job& job) {
  DB_ASSIGN_OR_RETURN(std::unique_ptr<ReplicaModel> model, job.make_replica(0, e.distributed.downpour.replicas));
  DB_ASSIGN_OR_RETURN(auto ps, ParameterServer::Start(e.distributed.cluster, ShardPlan{}, GroupsOf(model.get())));
  for (int g = 0; g < model->num_groups(); ++g) {
    DB_ASSIGN_OR_RETURN(auto client, ps->Connect(g, -1));
    DB_RETURN_IF_ERROR(client->Pull(ValuePieces(model->params(g))).status());
  }
  return model;
}

StatusOr<LaunchResult> Launch(const EngineOptions& e, const Job& job, const LaunchOptions& options) {
  if (e.distributed.mode == Mode::kLocal) return absl::InvalidArgumentError("launch needs a [distributed] section");
  LaunchResult result;
  const auto start = Clock::now();
  Cluster c;  // its destructor stops every child still running, whatever the way out
  c.self = options.self;
  c.run_dir = e.train.run_dir;
  DB_ASSIGN_OR_RETURN(c.common, CommonRole(e));
  g_stop = false;
  ::signal(SIGTERM, OnSignal);
  ::signal(SIGINT, OnSignal);
  // Shards of every parameter group (one per model partition), numbered group by group.
  int groups = 1;
  {
    DB_ASSIGN_OR_RETURN(std::unique_ptr<ReplicaModel> model, job.make_replica(0, e.distributed.downpour.replicas));
    groups = model->num_groups();
  }
  if (groups > 1 && e.distributed.mode == Mode::kSandblaster)
    return absl::InvalidArgumentError("Sandblaster needs a model with one parameter group; this one has " +
                                      std::to_string(groups));
  c.addresses.resize(static_cast<size_t>(groups) * e.distributed.cluster.shards);
  result.shard_processes = static_cast<int>(c.addresses.size());
  // A launch is a new run: shards must not resume the checkpoints an earlier run left in its
  // RUN_DIR/shards (CheckRunDirFree has refused to get here unless told --overwrite). A
  // shard_checkpoint_dir set by hand is the user's to manage.
  if (e.distributed.cluster.checkpoint_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(ShardCheckpointDir(e.train.run_dir), ec);
    if (ec) return absl::FailedPreconditionError("cannot clear " + ShardCheckpointDir(e.train.run_dir) + ": " + ec.message());
  }
  for (int s = 0; s < static_cast<int>(c.addresses.size()); ++s) DB_RETURN_IF_ERROR(c.StartShard(s, "127.0.0.1:0"));
  EngineOptions coordinator = Coordinator(e, c);
  if (e.distributed.mode == Mode::kSandblaster) {
    // R worker processes serve portions; this process is the coordinator.
    for (int r = 0; r < e.distributed.sandblaster.replicas; ++r) {
      DB_ASSIGN_OR_RETURN(std::string address, c.StartWorker(r));
      coordinator.distributed.sandblaster.worker_addresses.push_back(address);
    }
    DB_ASSIGN_OR_RETURN(result.run, RunSandblaster(coordinator, job));
  } else {
    DB_RETURN_IF_ERROR(WatchDownpour(e, &c, &result));
    DB_ASSIGN_OR_RETURN(result.run.model, PullFromShards(coordinator, job));  // what the shards hold at the end
    // The steps the replicas recorded in their progress files (the report's rates).
    for (int r = 0; r < e.distributed.downpour.replicas; ++r) {
      std::ifstream in(c.ProgressFile(r));
      int64_t steps = 0;
      if (in >> steps && steps > 0) result.run.steps += steps;
    }
    result.run.examples = result.run.steps * job.examples_per_step;
  }
  result.run.replicas_failed = result.replicas_failed;
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (result.run.seconds == 0) result.run.seconds = result.seconds;
  return result;
}

}  // namespace distbelief
