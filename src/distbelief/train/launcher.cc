#include "distbelief/train/launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <map>
#include <thread>

#include "distbelief/base/logging.h"
#include "distbelief/base/random.h"
#include "distbelief/ps/parameter_client.h"
#include "distbelief/train/cluster.h"
#include "distbelief/train/downpour.h"
#include "distbelief/train/sandblaster.h"

namespace distbelief {
namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

// Starts `args` (argv[0] = the binary). With `out_fd`, the child's stdout is a pipe whose read
// end is returned there.
StatusOr<pid_t> Spawn(const std::vector<std::string>& args, int* out_fd) {
  int fds[2] = {-1, -1};
  if (out_fd && ::pipe(fds) != 0) return absl::InternalError("pipe failed");
  const pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    if (out_fd) {
      ::dup2(fds[1], STDOUT_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
    }
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
  return pid;
}

// Reads the child's "shard N listening on ADDRESS" line (within 60 s).
StatusOr<std::string> ReadAddress(int fd, pid_t pid) {
  std::string line;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  while (std::chrono::steady_clock::now() < give_up) {
    char c;
    const ssize_t n = ::read(fd, &c, 1);
    if (n == 1) {
      if (c == '\n') {
        const auto at = line.find(" listening on ");
        if (at != std::string::npos) return line.substr(at + 14);
        line.clear();
      } else {
        line += c;
      }
      continue;
    }
    if (n == 0) break;  // the child closed stdout: it died
    int status;
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return absl::UnavailableError("shard process " + std::to_string(pid) + " did not start serving");
}

std::string Describe(int status) {
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "exit status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

Status RunShardProcess(const Config& config, int index, const std::string& listen) {
  const DistributedOptions& d = config.distributed;
  if (index < 0 || index >= d.shards)
    return absl::InvalidArgumentError("shard index " + std::to_string(index) + " outside [0, " + std::to_string(d.shards) + ")");
  DB_ASSIGN_OR_RETURN(auto data, Dataset::Load(config.train));
  DB_ASSIGN_OR_RETURN(auto w, Workload::Create(config, data));  // same seed: same initial values
  std::vector<float> initial(w->num_params());
  w->GetParams(initial);
  const ShardMap map(static_cast<int64_t>(initial.size()), static_cast<int>(d.shards));
  DB_ASSIGN_OR_RETURN(auto shard, ParameterShard::Create(MakeShardOptions(config, index),
                                                         std::span<const float>(initial).subspan(map.begin(index), map.size(index))));
  DB_ASSIGN_OR_RETURN(TransportOptions to, MakeTransportOptions(config));
  auto transport = MakeGrpcTransport(to);
  DB_ASSIGN_OR_RETURN(auto server, transport->ServeShard(listen, shard.get()));
  ::signal(SIGTERM, OnSignal);
  ::signal(SIGINT, OnSignal);
  std::printf("shard %d listening on %s\n", index, server->address().c_str());
  std::fflush(stdout);
  LOG_INFO << "shard " << index << " of " << d.shards << " (" << map.size(index) << " parameters, version "
           << shard->version() << ") listening on " << server->address();
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  server.reset();
  if (!d.shard_checkpoint_dir.empty()) DB_RETURN_IF_ERROR(shard->SaveCheckpoint());
  LOG_INFO << "shard " << index << " stopped at version " << shard->version();
  return absl::OkStatus();
}

StatusOr<LaunchResult> Launch(const Config& config, const LaunchOptions& options) {
  const DistributedOptions& d = config.distributed;
  // Every role reads the same config with the same overrides, plus what the launcher decides.
  std::vector<std::string> overrides = options.overrides;
  overrides.push_back("distributed.transport=\"grpc\"");
  std::string ckpt_dir = d.shard_checkpoint_dir;
  if (ckpt_dir.empty()) {
    ckpt_dir = config.train.run_dir + "/shards";
    overrides.push_back("distributed.shard_checkpoint_dir=\"" + ckpt_dir + "\"");
  }
  if (d.shard_checkpoint_every == 0) overrides.push_back("distributed.shard_checkpoint_every=50");
  if (config.train.threads == 0) {  // share the cores between the replica processes
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    overrides.push_back("train.threads=" + std::to_string(std::max<int64_t>(1, cores / d.replicas)));
  }
  DB_ASSIGN_OR_RETURN(std::string secret, LoadSecret(d));
  if (secret.empty()) {
    Random rng(static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) ^ ::getpid());
    char buf[33];
    for (int i = 0; i < 32; ++i) buf[i] = "0123456789abcdef"[rng.Next() % 16];
    buf[32] = 0;
    secret = buf;
  }
  ::setenv("DISTBELIEF_SECRET", secret.c_str(), 1);  // children inherit it; no file needed
  auto role = [&](const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> args = {options.self, name, "--config", options.config_path};
    for (const auto& o : overrides) {
      args.push_back("--set");
      args.push_back(o);
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };

  LaunchResult result;
  const auto start = std::chrono::steady_clock::now();
  std::map<pid_t, int> shard_of, replica_of;
  std::vector<std::string> addresses(d.shards);
  std::vector<pid_t> shard_pids(d.shards, -1);
  auto start_shard = [&](int s, const std::string& listen) -> Status {
    int fd = -1;
    DB_ASSIGN_OR_RETURN(pid_t pid, Spawn(role("shard", {"--index", std::to_string(s), "--listen", listen}), &fd));
    auto address = ReadAddress(fd, pid);
    ::close(fd);
    if (!address.ok()) return address.status();
    addresses[s] = *address;
    shard_of[pid] = s;
    shard_pids[s] = pid;
    LOG_INFO << "started shard " << s << " pid " << pid << " at " << *address;
    return absl::OkStatus();
  };
  auto stop_all = [&] {
    for (auto& [pid, s] : shard_of) ::kill(pid, SIGTERM);
    for (auto& [pid, r] : replica_of) ::kill(pid, SIGTERM);
    for (auto& [pid, s] : shard_of) ::waitpid(pid, nullptr, 0);
    for (auto& [pid, r] : replica_of) ::waitpid(pid, nullptr, 0);
  };
  for (int s = 0; s < d.shards; ++s) {
    Status st = start_shard(s, "127.0.0.1:0");
    if (!st.ok()) {
      stop_all();
      return st;
    }
  }
  std::string joined;
  for (const auto& a : addresses) joined += (joined.empty() ? "" : ",") + a;
  if (d.mode == "sandblaster") {
    // Sandblaster: R worker processes serve portions; this process is the coordinator.
    std::vector<std::string> workers;
    std::vector<pid_t> worker_pids;
    auto stop_workers = [&] {
      for (pid_t pid : worker_pids) ::kill(pid, SIGTERM);
      for (pid_t pid : worker_pids) ::waitpid(pid, nullptr, 0);
    };
    for (int r = 0; r < d.replicas; ++r) {
      int fd = -1;
      auto pid = Spawn(role("worker", {"--index", std::to_string(r), "--shards", joined}), &fd);
      if (!pid.ok()) {
        stop_workers();
        stop_all();
        return pid.status();
      }
      worker_pids.push_back(*pid);
      auto address = ReadAddress(fd, *pid);
      ::close(fd);
      if (!address.ok()) {
        stop_workers();
        stop_all();
        return address.status();
      }
      LOG_INFO << "started worker " << r << " pid " << *pid << " at " << *address;
      workers.push_back(*address);
    }
    Config coordinator = config;
    coordinator.distributed.transport = "grpc";
    coordinator.distributed.secret_file.clear();  // the secret is in DISTBELIEF_SECRET now
    coordinator.distributed.shard_addresses = addresses;
    coordinator.distributed.worker_addresses = workers;
    auto r = RunSandblaster(coordinator);
    stop_workers();
    stop_all();
    if (!r.ok()) return r.status();
    result.eval.loss = r->run.train.test_loss;
    result.eval.accuracy = r->run.train.test_accuracy;
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
  }
  auto start_replica = [&](int r) -> Status {
    DB_ASSIGN_OR_RETURN(pid_t pid, Spawn(role("replica", {"--index", std::to_string(r), "--shards", joined}), nullptr));
    replica_of[pid] = r;
    LOG_INFO << "started replica " << r << " pid " << pid;
    return absl::OkStatus();
  };
  DB_RETURN_IF_ERROR(start_replica(0));
  int started = 1;
  // Warmstart: the others join once shard 0 has taken warmstart_steps / n_push updates.
  TransportOptions to;
  to.secret = secret;
  auto transport = MakeGrpcTransport(to);
  DB_ASSIGN_OR_RETURN(auto shard0, transport->ConnectShard(addresses[0]));
  int running = 1;
  while (running > 0 || started < d.replicas) {
    if (started < d.replicas) {
      rpc::ShardInfoReply info;
      const bool warm = d.warmstart_steps == 0 ||
                        (shard0->Info(&info, Millis(2000)).ok() &&
                         static_cast<int64_t>(info.version()) >= d.warmstart_steps / d.n_push);
      if (warm || running == 0) {
        for (; started < d.replicas; ++started, ++running) DB_RETURN_IF_ERROR(start_replica(started));
      }
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    if (auto it = replica_of.find(pid); it != replica_of.end()) {
      --running;
      if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        ++result.replicas_failed;
        LOG_WARN << "replica " << it->second << " died (" << Describe(status) << "); the run goes on without it";
      } else {
        LOG_INFO << "replica " << it->second << " finished";
      }
      replica_of.erase(it);
    } else if (auto sh = shard_of.find(pid); sh != shard_of.end()) {
      const int s = sh->second;
      shard_of.erase(sh);
      ++result.shard_restarts;
      LOG_WARN << "shard " << s << " died (" << Describe(status) << "); restarting it from its checkpoint";
      Status st = absl::UnavailableError("not started");
      for (int attempt = 0; attempt < 20 && !st.ok(); ++attempt) {
        st = start_shard(s, addresses[s]);
        if (!st.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(250));
      }
      if (!st.ok()) {
        stop_all();
        return st;
      }
    }
  }
  if (result.replicas_failed == d.replicas) {
    stop_all();
    return absl::InternalError("every replica died");
  }
  Config eval_config = config;
  eval_config.distributed.secret_file.clear();  // the secret is in DISTBELIEF_SECRET now
  auto e = EvaluateShards(eval_config, addresses);
  stop_all();
  if (!e.ok()) return e.status();
  result.eval = *e;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace distbelief
