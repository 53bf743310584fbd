// The distbelief command line: flags -> a config file read once into typed options -> the
// workload the config selects (workloads/registry.h) -> the engine. Nothing else.
//   distbelief train  --config FILE [--set section.key=value]... [--resume CHECKPOINT | --overwrite]
//                     [--dashboard PORT]
//   distbelief eval   --config FILE --checkpoint FILE
//   distbelief eval face-neuron --config FILE --checkpoint FILE [--faces DIR --nonfaces DIR --csv F
//                               --readout code|pooled|normalized]
//   distbelief eval parzen --config FILE --checkpoint FILE   (a GAN: Parzen log-likelihood of MNIST's test set)
//   distbelief eval bleu --hyp FILE --ref FILE [--tokenize 13a|none]   (corpus BLEU, one sentence a line)
//   distbelief translate --checkpoint FILE [--config FILE] [--beam N] [--length-penalty A] [--batch N]
//                      (Seq2Seq: English lines on stdin, one French line each on stdout)
//   distbelief search --problems FILE [--checkpoint FILE] [--strategy tree|samples] [--budget TOKENS]
//                     [--children N] [--samples N] [--temperature T] [--seed S] [--calculator]
//                      (Countdown: one JSON problem a line, one JSON answer a line on stdout)
//   distbelief scale  --config FILE          (a scaling-law sweep: `train` of a [scale] config)
//   distbelief dashboard [--runs DIR] [--listen HOST:PORT] [--token T]   (the web page over runs;
//                      `train --dashboard PORT` serves it beside a live run)
//   distbelief launch --config FILE [--overwrite] (the job as shard and replica processes over gRPC)
//   distbelief shard | replica | worker ...  (the process roles launch starts: train/launch.h)
//   distbelief collect --config FILE --shards A,B [--overwrite] (pull, evaluate and save what
//                      shards hold: the end of a job whose roles a cluster scheduler started)
// Errors print "distbelief: error: ..." and exit with status 2.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "distbelief/dashboard/dashboard.h"
#include "distbelief/text/bleu.h"
#include "distbelief/train/checkpointing.h"
#include "distbelief/train/downpour.h"
#include "distbelief/train/launch.h"
#include "distbelief/train/sandblaster.h"
#include "distbelief/workloads/registry.h"
#include "distbelief/workloads/reasoning/countdown_lab.h"
#include "distbelief/workloads/seq2seq/seq2seq_enfr.h"

namespace {

using namespace distbelief;

int Fail(const Status& s) {
  std::fprintf(stderr, "distbelief: error: %s\n", std::string(s.message()).c_str());
  return 2;
}

std::string SelfPath(const char* argv0) {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n > 0) return std::string(buf, n);
  return argv0;
}

// The config file, read once: the workload it selects and the engine's options.
struct Loaded {
  std::unique_ptr<Workload> workload;
  std::string name;  // the workload's
  EngineOptions engine;
};

StatusOr<Loaded> Load(const std::string& path, const std::vector<std::string>& overrides) {
  DB_ASSIGN_OR_RETURN(ConfigFile file, ConfigFile::Load(path, overrides));
  Loaded l;
  DB_ASSIGN_OR_RETURN(l.engine, ParseEngineOptions(&file));
  DB_ASSIGN_OR_RETURN(l.workload, SelectWorkload(&file, &l.name));
  DB_RETURN_IF_ERROR(file.CheckAllRead());
  return l;
}

// The flags every subcommand that reads a config takes.
struct ConfigFlags {
  std::string path;
  std::vector<std::string> overrides;
  void Add(CLI::App* app, bool required = true) {
    auto* o = app->add_option("--config", path, "TOML config file");
    if (required) o->required();
    app->add_option("--set", overrides, "Override a config value: section.key=value (TOML value; strings in quotes)");
  }
};

void AddRoleFlags(CLI::App* app, RoleOptions* r, std::string* shards) {
  app->add_option("--index", r->index, "Index of this shard, replica or worker")->required();
  if (r->role != Role::kReplica) app->add_option("--listen", r->listen, "HOST:PORT to serve at (port 0: any)");
  if (r->role != Role::kShard) app->add_option("--shards", *shards, "The shards' addresses, comma-separated")->required();
  app->add_option("--threads", r->threads, "Threads of this process (0: the config's)");
  app->add_option("--secret-file", r->secret_file, "File holding the shared secret");
  if (r->role != Role::kReplica)
    app->add_flag("--insecure", r->insecure, "Serve a non-loopback address without a secret (anyone may connect)");
  if (r->role == Role::kReplica)
    app->add_option("--progress-file", r->progress_file, "Record finished steps here, and resume from it");
  if (r->role == Role::kShard) {
    app->add_option("--checkpoint-dir", r->shard_checkpoint_dir, "Where the shard checkpoints");
    app->add_option("--checkpoint-every", r->shard_checkpoint_every, "Updates between shard checkpoints");
  }
}

std::vector<std::string> SplitCommas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    std::string part = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!part.empty()) out.push_back(std::move(part));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

Status RunRole(RoleOptions r, const ConfigFlags& flags, const std::string& shards) {
  r.shards = SplitCommas(shards);
  r.config_path = flags.path;
  DB_ASSIGN_OR_RETURN(Loaded l, Load(flags.path, flags.overrides));
  if (l.engine.distributed.mode == Mode::kLocal)
    return absl::InvalidArgumentError(flags.path + " has no [distributed] section");
  DB_RETURN_IF_ERROR(ApplyRole(r, &l.engine));
  DB_ASSIGN_OR_RETURN(const Job job, l.workload->MakeJob(l.engine));
  switch (r.role) {
    case Role::kShard: return RunShardRole(l.engine, job, r.index, r.listen);
    case Role::kReplica: return RunDownpourReplica(l.engine, job, r.index, r.progress_file);
    case Role::kWorker: return RunSandblasterWorker(l.engine, job, r.index, r.listen);
  }
  return absl::InternalError("unknown role");
}

Status RunLaunch(const ConfigFlags& flags, const std::string& self, bool overwrite) {
  DB_ASSIGN_OR_RETURN(Loaded l, Load(flags.path, flags.overrides));
  DB_ASSIGN_OR_RETURN(const Job job, l.workload->MakeJob(l.engine));
  DB_RETURN_IF_ERROR(CheckRunDirFree(l.engine.train.run_dir, false, overwrite));
  DB_ASSIGN_OR_RETURN(LaunchResult r, Launch(l.engine, job, {self}));
  std::printf("cluster: %d shard processes, %d replicas; %d replicas died, %d replica restarts, %d shard restarts; %.1f s\n",
              r.shard_processes,
              l.engine.distributed.mode == Mode::kSandblaster ? l.engine.distributed.sandblaster.replicas
                                                               : l.engine.distributed.downpour.replicas,
              r.replicas_failed, r.replica_restarts, r.shard_restarts, r.seconds);
  // The parameters the shards ended with, evaluated and saved by the workload.
  EngineOptions local = l.engine;
  local.distributed.mode = Mode::kLocal;
  DB_RETURN_IF_ERROR(l.workload->Report(local, &r.run));
  return absl::OkStatus();
}

// What the shards hold, evaluated and saved by the workload as at the end of `launch`.
Status RunCollect(RoleOptions r, const ConfigFlags& flags, const std::string& shards, bool overwrite) {
  r.shards = SplitCommas(shards);
  r.config_path = flags.path;
  DB_ASSIGN_OR_RETURN(Loaded l, Load(flags.path, flags.overrides));
  if (l.engine.distributed.mode != Mode::kDownpour)
    return absl::InvalidArgumentError(flags.path + " is not a Downpour job ([distributed] mode = \"downpour\")");
  DB_RETURN_IF_ERROR(ApplyRole(r, &l.engine));
  DB_ASSIGN_OR_RETURN(const Job job, l.workload->MakeJob(l.engine));
  DB_RETURN_IF_ERROR(CheckRunDirFree(l.engine.train.run_dir, false, overwrite));
  RunResult run;
  DB_ASSIGN_OR_RETURN(run.model, PullFromShards(l.engine, job));
  std::printf("collected the parameters from %zu shards\n", r.shards.size());
  EngineOptions local = l.engine;
  local.distributed.mode = Mode::kLocal;
  return l.workload->Report(local, &run);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"distbelief: DistBelief-style deep learning on CPU machines and clusters"};
  app.require_subcommand(1);
  std::string workloads;
  for (const WorkloadEntry& w : Workloads()) workloads += "\n  [" + std::string(w.section) + "]  " + w.name + ": " + w.summary;
  app.footer("A config's section selects the workload:" + workloads);

  ConfigFlags train_flags, eval_flags, face_flags, parzen_flags, scale_flags, launch_flags, shard_flags, replica_flags, worker_flags, collect_flags;
  std::string resume, checkpoint, face_checkpoint;
  std::map<std::string, std::string> face_extra;
  CLI::App* train = app.add_subcommand("train", "Train the workload a config selects");
  train_flags.Add(train);
  train->add_option("--resume", resume, "Continue from this checkpoint (single-process runs)");
  bool overwrite = false;
  train->add_flag("--overwrite", overwrite, "Replace the run already in train.run_dir");
  int train_dashboard = -1;
  train->add_option("--dashboard", train_dashboard, "Serve the dashboard on 127.0.0.1:PORT while training (0: any free port)")
      ->check(CLI::Range(0, 65535));

  CLI::App* eval = app.add_subcommand("eval", "Evaluate a checkpoint");
  eval_flags.Add(eval, false);
  eval->add_option("--checkpoint", checkpoint, "Checkpoint to evaluate");
  CLI::App* face = eval->add_subcommand("face-neuron", "Score every neuron of a cat-network checkpoint on faces vs non-faces");
  face_flags.Add(face);
  face->add_option("--checkpoint", face_checkpoint, "Cat-network checkpoint")->required();
  std::string faces, nonfaces, csv, readout;
  face->add_option("--faces", faces, "Folder of face images (default: cat.faces_dir)");
  face->add_option("--nonfaces", nonfaces, "Folder of non-face images (default: cat.nonfaces_dir)");
  face->add_option("--csv", csv, "Write every neuron's accuracy here");
  face->add_option("--readout", readout, "Which outputs are the neurons: code (before pooling), pooled (default), normalized (after LCN)");

  CLI::App* parzen = eval->add_subcommand("parzen", "Parzen-window log-likelihood of MNIST's test set under a GAN's samples");
  parzen_flags.Add(parzen);
  std::string parzen_checkpoint;
  parzen->add_option("--checkpoint", parzen_checkpoint, "GAN checkpoint")->required();
  CLI::App* bleu = eval->add_subcommand("bleu", "Corpus BLEU of a file of translations against a file of references");
  std::string bleu_hyp, bleu_ref, bleu_tokenize = "13a";
  bleu->add_option("--hyp", bleu_hyp, "Translations, one sentence a line")->required();
  bleu->add_option("--ref", bleu_ref, "References, one sentence a line, in the same order")->required();
  bleu->add_option("--tokenize", bleu_tokenize, "13a (mteval's, sacreBLEU's default) or none (split at spaces)")
      ->check(CLI::IsMember({"13a", "none"}));

  CLI::App* translate = app.add_subcommand("translate", "Translate English lines on stdin with a Seq2Seq checkpoint");
  std::string tr_checkpoint, tr_config;
  int tr_beam = 0;
  float tr_alpha = -1.0f;
  int64_t tr_batch = 32;
  translate->add_option("--checkpoint", tr_checkpoint, "Seq2Seq checkpoint (spm.model beside it)")->required();
  translate->add_option("--config", tr_config, "Config (default: the one stored in the checkpoint)");
  translate->add_option("--beam", tr_beam, "Beam width, 1 = greedy (default: seq2seq.beam)")->check(CLI::Range(1, 64));
  translate->add_option("--length-penalty", tr_alpha, "GNMT length penalty alpha (default: seq2seq.length_penalty)")
      ->check(CLI::Range(0.0, 5.0));
  translate->add_option("--batch", tr_batch, "Lines translated together (output is flushed after each batch)")
      ->check(CLI::Range(1, 100000));

  CLI::App* search = app.add_subcommand("search", "Solve Countdown problems (JSON lines) with a trained policy and the exact verifier");
  std::string se_problems = "-", se_checkpoint = "runs/countdown/checkpoint.safetensors";
  CountdownSearchOptions se;
  std::string se_strategy = "tree";
  search->add_option("--problems", se_problems, "One {\"numbers\": [..], \"target\": N} a line (- = stdin)");
  search->add_option("--checkpoint", se_checkpoint, "A Countdown policy (distbelief train --config configs/countdown.toml)");
  search->add_option("--strategy", se_strategy, "tree: policy-guided tree search over steps; samples: greedy then samples")
      ->check(CLI::IsMember({"tree", "samples"}));
  search->add_option("--budget", se.tree_options.max_tokens, "Tokens the tree search may generate per problem")
      ->check(CLI::Range(1, 1 << 20));
  search->add_option("--children", se.tree_options.children, "Next steps the tree search samples at each node")
      ->check(CLI::Range(1, 256));
  search->add_option("--samples", se.samples, "Samples tried after the greedy answer until one verifies (0: greedy only)")
      ->check(CLI::Range(0, 4096));
  search->add_option("--temperature", se.temperature, "Sampling temperature")->check(CLI::Range(0.01, 10.0));
  search->add_option("--seed", se.seed, "Seed of the sampling");
  search->add_flag("--calculator", se.calculator,
                   "Write the exact result after each \"a op b=\" the policy writes (on whatever its config says)");

  CLI::App* scale = app.add_subcommand("scale", "Run a scaling-law sweep ([scale] config)");
  scale_flags.Add(scale);
  CLI::App* launch = app.add_subcommand("launch", "Run the job as shard and replica processes over gRPC");
  launch_flags.Add(launch);
  launch->add_flag("--overwrite", overwrite, "Replace the run already in train.run_dir");

  RoleOptions shard_role, replica_role, worker_role;
  shard_role.role = Role::kShard;
  replica_role.role = Role::kReplica;
  worker_role.role = Role::kWorker;
  std::string replica_shards, worker_shards, no_shards;
  CLI::App* shard = app.add_subcommand("shard", "Serve one parameter-server shard over gRPC");
  shard_flags.Add(shard);
  AddRoleFlags(shard, &shard_role, &no_shards);
  CLI::App* replica = app.add_subcommand("replica", "Run one Downpour replica against shards over gRPC");
  replica_flags.Add(replica);
  AddRoleFlags(replica, &replica_role, &replica_shards);
  CLI::App* worker = app.add_subcommand("worker", "Serve Sandblaster work portions over gRPC");
  worker_flags.Add(worker);
  AddRoleFlags(worker, &worker_role, &worker_shards);
  RoleOptions collect_role;
  collect_role.role = Role::kReplica;
  std::string collect_shards;
  CLI::App* collect = app.add_subcommand("collect", "Pull, evaluate and save the parameters a Downpour job's shards hold");
  collect_flags.Add(collect);
  collect->add_option("--shards", collect_shards, "The shards' addresses, comma-separated")->required();
  collect->add_option("--secret-file", collect_role.secret_file, "File holding the shared secret");
  collect->add_flag("--overwrite", overwrite, "Replace the run already in train.run_dir");

  CLI::App* dashboard = app.add_subcommand("dashboard", "Serve a read-only web page of the runs under a folder, live");
  DashboardOptions dash;
  dashboard->add_option("--runs", dash.runs_dir, "Folder of runs (each a folder with metrics.jsonl, report.md or scale.db)");
  dashboard->add_option("--listen", dash.listen, "HOST:PORT (loopback unless a token is set; port 0: any)");
  dashboard->add_option("--token", dash.token, "Token every request must carry (default: $DISTBELIEF_DASHBOARD_TOKEN)");

  CLI11_PARSE(app, argc, argv);

  Status s;
  if (train->parsed() || scale->parsed()) {
    const ConfigFlags& f = train->parsed() ? train_flags : scale_flags;
    StatusOr<Loaded> l = Load(f.path, f.overrides);
    if (!l.ok()) return Fail(l.status());
    if (scale->parsed() && l->name != "scale") return Fail(absl::InvalidArgumentError(f.path + " has no [scale] section"));
    l->engine.train.resume = resume;
    if (Status free = CheckRunDirFree(l->engine.train.run_dir, !resume.empty(), overwrite); !free.ok()) return Fail(free);
    std::error_code ec;
    std::unique_ptr<Dashboard> live;
    if (train_dashboard >= 0) {  // the run's parent folder, so earlier runs can be overlaid
      DashboardOptions d;
      d.runs_dir = std::filesystem::path(l->engine.train.run_dir).parent_path().string();
      if (d.runs_dir.empty()) d.runs_dir = ".";
      d.listen = "127.0.0.1:" + std::to_string(train_dashboard);
      StatusOr<std::unique_ptr<Dashboard>> started = Dashboard::Start(d);
      if (!started.ok()) return Fail(started.status());
      live = std::move(*started);
      std::fprintf(stderr, "dashboard: %s\n", live->url().c_str());
    }
    if (overwrite && resume.empty()) {  // a replaced run's curves start afresh
      std::filesystem::remove(l->engine.train.run_dir + "/metrics.jsonl", ec);
      for (const auto& f : std::filesystem::directory_iterator(l->engine.train.run_dir, ec))
        if (f.path().filename().string().rfind("events.out.tfevents.", 0) == 0) std::filesystem::remove(f.path(), ec);
    }
    // train.pid tells the dashboard this run is live (removed at the end, kept by a crash).
    const std::string pid_file = l->engine.train.run_dir + "/train.pid";
    std::filesystem::create_directories(l->engine.train.run_dir, ec);
    if (std::FILE* f = std::fopen(pid_file.c_str(), "w")) {
      std::fprintf(f, "%ld\n", static_cast<long>(::getpid()));
      std::fclose(f);
    }
    s = l->workload->Train(l->engine);
    std::filesystem::remove(pid_file, ec);
  } else if (face->parsed()) {
    StatusOr<Loaded> l = Load(face_flags.path, face_flags.overrides);
    if (!l.ok()) return Fail(l.status());
    EvalRequest request{face_checkpoint, {}};
    if (!faces.empty()) request.flags["faces"] = faces;
    if (!nonfaces.empty()) request.flags["nonfaces"] = nonfaces;
    if (!csv.empty()) request.flags["csv"] = csv;
    if (!readout.empty()) request.flags["readout"] = readout;
    s = l->workload->Evaluate(l->engine, request);
  } else if (parzen->parsed()) {
    StatusOr<Loaded> l = Load(parzen_flags.path, parzen_flags.overrides);
    if (!l.ok()) return Fail(l.status());
    if (l->name != "gan") return Fail(absl::InvalidArgumentError(parzen_flags.path + " has no [gan] section"));
    s = l->workload->Evaluate(l->engine, {parzen_checkpoint, {}});
  } else if (bleu->parsed()) {
    StatusOr<BleuScore> b = CorpusBleuOfFiles(bleu_hyp, bleu_ref, bleu_tokenize == "13a");
    if (!b.ok()) return Fail(b.status());
    std::printf("%s\n", b->ToString().c_str());
  } else if (eval->parsed()) {
    if (eval_flags.path.empty() || checkpoint.empty())
      return Fail(absl::InvalidArgumentError("eval needs --config and --checkpoint"));
    StatusOr<Loaded> l = Load(eval_flags.path, eval_flags.overrides);
    if (!l.ok()) return Fail(l.status());
    s = l->workload->Evaluate(l->engine, {checkpoint, {}});
  } else if (search->parsed()) {
    FILE* in = se_problems == "-" ? stdin : std::fopen(se_problems.c_str(), "r");
    if (!in) return Fail(absl::NotFoundError("cannot open problems file " + se_problems));
    se.tree = se_strategy == "tree";
    s = RunCountdownSearch(se_checkpoint, se, in, stdout);
    if (in != stdin) std::fclose(in);
  } else if (translate->parsed()) {
    s = RunTranslate(tr_checkpoint, tr_config, tr_beam, tr_alpha, tr_batch, stdin, stdout);
  } else if (launch->parsed()) {
    s = RunLaunch(launch_flags, SelfPath(argv[0]), overwrite);
  } else if (shard->parsed()) {
    s = RunRole(shard_role, shard_flags, "");
  } else if (replica->parsed()) {
    s = RunRole(replica_role, replica_flags, replica_shards);
  } else if (worker->parsed()) {
    s = RunRole(worker_role, worker_flags, worker_shards);
  } else if (dashboard->parsed()) {
    if (dash.token.empty() && std::getenv("DISTBELIEF_DASHBOARD_TOKEN")) dash.token = std::getenv("DISTBELIEF_DASHBOARD_TOKEN");
    // SIGINT / SIGTERM end it: blocked here, so the server's threads inherit the mask and this
    // thread receives them in sigwait.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    StatusOr<std::unique_ptr<Dashboard>> d = Dashboard::Start(dash);
    if (!d.ok()) return Fail(d.status());
    std::printf("dashboard: %s (runs in %s; Ctrl-C stops it)\n", (*d)->url().c_str(), dash.runs_dir.c_str());
    std::fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
  } else if (collect->parsed()) {
    s = RunCollect(collect_role, collect_flags, collect_shards, overwrite);
  }
  return s.ok() ? 0 : Fail(s);
}
