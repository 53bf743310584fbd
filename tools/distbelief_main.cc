// The distbelief command line: parses flags, calls into src/, prints results. Nothing else.
//   distbelief train --config FILE [--set section.key=value]... [--resume CHECKPOINT]
//   distbelief eval  --config FILE --checkpoint FILE    (test-set loss and accuracy of a checkpoint)
//   distbelief launch --config FILE                     (a local cluster of shard and replica processes)
//   distbelief shard --config FILE --index I [--listen HOST:PORT]
//   distbelief replica --config FILE --index R --shards HOST:PORT,...
//   distbelief worker --config FILE --index R --shards HOST:PORT,... [--listen HOST:PORT]  (Sandblaster)
//   distbelief scale --config FILE                      (a scaling-law sweep, fits and plots)
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "distbelief/train/config.h"
#include "distbelief/base/parallel.h"
#include "distbelief/train/cat_downpour.h"
#include "distbelief/train/cat_report.h"
#include "distbelief/train/cat_trainer.h"
#include "distbelief/train/downpour.h"
#include "distbelief/train/launcher.h"
#include "distbelief/train/sandblaster.h"
#include "distbelief/train/local_trainer.h"
#include "distbelief/scale/sweep.h"

namespace {

int Fail(const distbelief::Status& s) {
  std::fprintf(stderr, "distbelief: error: %s\n", std::string(s.message()).c_str());
  return 2;
}

distbelief::CatTrainOptions CatOptionsFrom(const distbelief::Config& config) {
  using namespace distbelief;
  const CatOptions& k = config.cat;
  CatTrainOptions o;
  o.net.frame = k.frame;
  o.net.lambda = k.lambda;
  o.net.init_scale = k.init_scale;
  o.net.stages.assign(k.stages, CatStageOptions{k.maps, k.field, k.stride, k.pool, k.lcn_window});
  o.train_dir = k.train_dir;
  o.faces_dir = k.faces_dir;
  o.nonfaces_dir = k.nonfaces_dir;
  o.steps_per_stage = k.steps_per_stage;
  o.batch = k.batch;
  o.learning_rate = k.learning_rate;
  o.max_side = k.max_side;
  o.partitions = k.partitions;
  o.seed = config.train.seed;
  return o;
}

int TrainCat(const distbelief::Config& config) {
  using namespace distbelief;
  const CatTrainOptions o = CatOptionsFrom(config);
  if (config.train.threads > 0) SetNumThreads(static_cast<int>(config.train.threads));
  auto net = CatNet::Create(o.net, o.seed);
  if (!net.ok()) return Fail(net.status());
  StatusOr<CatTrainResult> r = absl::UnknownError("");
  if (config.distributed.enabled) {
    if (config.distributed.mode != "downpour")
      return Fail(absl::InvalidArgumentError("the cat network trains with distributed.mode = \"downpour\""));
    if (!config.distributed.shard_addresses.empty())
      return Fail(absl::InvalidArgumentError("the cat network starts its own shards; remove distributed.shard_addresses"));
    CatDownpourStats stats;
    r = TrainCatNetDownpour(net->get(), o, config, &stats);
    if (r.ok()) {
      const long parts = long(config.cat.partitions);
      const std::string split = parts > 1 ? " x " + std::to_string(parts) + " partitions" : "";
      std::printf("downpour: %ld replicas%s, %ld shards%s (%s), mean staleness %.2f updates, %ld replicas failed, %.1f s\n",
                  long(config.distributed.replicas), split.c_str(), long(config.distributed.shards),
                  parts > 1 ? " per partition" : "", config.distributed.transport.c_str(), stats.mean_staleness,
                  long(stats.replicas_failed), stats.seconds);
    }
  } else {
    if (o.partitions > 1)
      return Fail(absl::InvalidArgumentError("cat.partitions needs a [distributed] section (model partitions train under Downpour)"));
    r = TrainCatNet(net->get(), o);
  }
  if (!r.ok()) return Fail(r.status());
  std::printf("trained on random crops of %ld photos and video frames (%ld unreadable files skipped)\n", long(r->training_images), long(r->unreadable));
  for (size_t s = 0; s < r->first_loss.size(); ++s)
    std::printf("stage %zu: reconstruction %.2f -> %.2f, sparsity %.2f -> %.2f\n", s + 1, r->first_loss[s].first,
                r->last_loss[s].first, r->first_loss[s].second, r->last_loss[s].second);
  const FaceNeuronReport& f = r->report;
  std::printf("face test set: %ld faces, %ld non-faces\n", long(f.faces), long(f.nonfaces));
  std::printf("  chance (all one class)   %.1f%%\n", 100 * f.chance);
  std::printf("  best single pixel        %.1f%%\n", 100 * f.best_pixel.accuracy);
  for (const auto& b : f.best_per_stage)
    std::printf("  best stage-%d neuron      %.1f%% (unit %ld)\n", b.stage + 1, 100 * b.accuracy, long(b.unit));
  Status saved = SaveCatNet(net->get(), config.train.run_dir + "/checkpoint.safetensors", config.text);
  if (!saved.ok()) return Fail(saved);
  std::printf("checkpoint: %s/checkpoint.safetensors\n", config.train.run_dir.c_str());
  auto report = WriteCatReport(net->get(), o, *r, config.train.run_dir);
  if (!report.ok()) return Fail(report.status());
  std::printf("report: %s\n", report->c_str());
  std::printf("best neuron accuracy: %.1f%%\n", 100 * f.best.accuracy);
  return 0;
}

int TrainDistributed(const distbelief::Config& config, const std::string& resume) {
  using namespace distbelief;
  if (!resume.empty()) return Fail(absl::InvalidArgumentError(
      "--resume is for single-process runs; distributed shards resume from their own checkpoints "
      "(distributed.shard_checkpoint_dir)"));
  StatusOr<DistributedResult> r = absl::UnimplementedError("mode");
  if (config.distributed.mode == "downpour") r = RunDownpour(config);
  if (config.distributed.mode == "sandblaster") {
    auto s = RunSandblaster(config);
    if (!s.ok()) return Fail(s.status());
    std::printf("function evaluations: %ld, backup tasks: %ld\n", long(s->evaluations), long(s->backup_tasks));
    std::printf("train loss: first %.5f, last %.5f\n", s->run.train.first_train_loss, s->run.train.last_train_loss);
    r = s->run;
  }
  if (!r.ok()) return Fail(r.status());
  std::printf("mode: %s, %ld replicas, %zu shards\n", config.distributed.mode.c_str(),
              long(config.distributed.replicas), size_t(config.distributed.shards));
  std::printf("examples: %ld in %.1f s (%.0f examples/s)\n", long(r->examples), r->seconds, r->examples / r->seconds);
  std::printf("staleness: mean %.2f, max %lu updates\n", r->mean_staleness, (unsigned long)r->max_staleness);
  if (r->replicas_failed) std::printf("replicas failed: %ld\n", long(r->replicas_failed));
  if (config.model.kind == "mlp") {
    std::printf("test loss: %.4f\n", r->train.test_loss);
    std::printf("test accuracy: %.2f%%\n", 100.0 * r->train.test_accuracy);
  } else {
    std::printf("test reconstruction MSE: %.5f\n", r->train.test_loss);
  }
  std::printf("checkpoint: %s/checkpoint.safetensors\n", config.train.run_dir.c_str());
  return 0;
}

int Train(const std::string& config_path, const std::vector<std::string>& overrides,
          const std::string& resume) {
  using namespace distbelief;
  auto config = LoadConfig(config_path, overrides);
  if (!config.ok()) return Fail(config.status());
  if (config->cat.enabled) return TrainCat(*config);
  if (config->distributed.enabled) return TrainDistributed(*config, resume);
  auto trainer = LocalTrainer::Create(*config);
  if (!trainer.ok()) return Fail(trainer.status());
  if (!resume.empty()) {
    Status s = (*trainer)->Resume(resume);
    if (!s.ok()) return Fail(s);
  }
  auto result = (*trainer)->Run();
  if (!result.ok()) return Fail(result.status());
  std::printf("steps: %ld\n", long(result->steps));
  std::printf("train loss: first %.4f, last %.4f\n", result->first_train_loss,
              result->last_train_loss);
  if (config->model.kind == "mlp") {
    std::printf("test loss: %.4f\n", result->test_loss);
    std::printf("test accuracy: %.2f%%\n", 100.0 * result->test_accuracy);
  } else {
    std::printf("test reconstruction MSE: %.5f\n", result->test_loss);
  }
  std::printf("checkpoint: %s\n", (*trainer)->checkpoint_path().c_str());
  std::printf("metrics: %s/metrics.jsonl\n", config->train.run_dir.c_str());
  return 0;
}

int Eval(const std::string& config_path, const std::vector<std::string>& overrides,
         const std::string& checkpoint) {
  using namespace distbelief;
  auto config = LoadConfig(config_path, overrides);
  if (!config.ok()) return Fail(config.status());
  auto trainer = LocalTrainer::Create(*config);
  if (!trainer.ok()) return Fail(trainer.status());
  Status s = (*trainer)->Resume(checkpoint);
  if (!s.ok()) return Fail(s);
  TrainResult r;
  (*trainer)->Evaluate(&r);
  if (config->model.kind == "mlp") {
    std::printf("test loss: %.4f\n", r.test_loss);
    std::printf("test accuracy: %.2f%%\n", 100.0 * r.test_accuracy);
  } else {
    std::printf("test reconstruction MSE: %.5f\n", r.test_loss);
  }
  return 0;
}

// distbelief eval face-neuron: every neuron's best single-threshold accuracy on two folders.
int EvalFaceNeuron(const distbelief::Config& config, const std::string& checkpoint, const std::string& faces,
                   const std::string& nonfaces, const std::string& csv) {
  using namespace distbelief;
  if (!config.cat.enabled) return Fail(absl::InvalidArgumentError("the config has no [cat] section"));
  CatTrainOptions o = CatOptionsFrom(config);
  if (!faces.empty()) o.faces_dir = faces;
  if (!nonfaces.empty()) o.nonfaces_dir = nonfaces;
  auto net = CatNet::Create(o.net, o.seed);
  if (!net.ok()) return Fail(net.status());
  Status s = LoadCatNet(net->get(), checkpoint);
  if (!s.ok()) return Fail(s);
  std::vector<std::vector<double>> per_unit;
  auto r = EvaluateFaceNeurons(net->get(), o, &per_unit);
  if (!r.ok()) return Fail(r.status());
  if (!csv.empty()) {
    std::FILE* f = std::fopen(csv.c_str(), "w");
    if (!f) return Fail(absl::UnavailableError("cannot write " + csv));
    std::fprintf(f, "stage,unit,accuracy\n");
    for (size_t st = 0; st < per_unit.size(); ++st)
      for (size_t u = 0; u < per_unit[st].size(); ++u) std::fprintf(f, "%zu,%zu,%.4f\n", st + 1, u, per_unit[st][u]);
    std::fclose(f);
    std::printf("every neuron: %s\n", csv.c_str());
  }
  std::printf("face test set: %ld faces (%s), %ld non-faces (%s)\n", long(r->faces), o.faces_dir.c_str(),
              long(r->nonfaces), o.nonfaces_dir.c_str());
  std::printf("chance %.1f%%, best single pixel %.1f%%\n", 100 * r->chance, 100 * r->best_pixel.accuracy);
  for (const auto& b : r->best_per_stage)
    std::printf("best stage-%d neuron: unit %ld, %.1f%%\n", b.stage + 1, long(b.unit), 100 * b.accuracy);
  std::printf("best neuron accuracy: %.1f%% (stage %d, unit %ld)\n", 100 * r->best.accuracy, r->best.stage + 1,
              long(r->best.unit));
  return 0;
}

std::vector<std::string> SplitCommas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const std::string part = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!part.empty()) out.push_back(part);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

int Scale(const distbelief::Config& config) {
  using namespace distbelief;
  auto r = RunSweep(config);
  if (!r.ok()) return Fail(r.status());
  std::printf("%-11s %6s %6s %10s %10s %9s %8s  %s\n", "model", "width", "layers", "N", "D", "loss", "seconds", "status");
  for (const auto& run : r->runs)
    std::printf("%-11s %6ld %6ld %10ld %10ld %9.4f %8.1f  %s\n", run.workload.c_str(), long(run.width), long(run.layers),
                long(run.params), long(run.tokens), run.loss, run.seconds, run.status.c_str());
  std::printf("%ld runs trained now, %ld from %s/scale.db\n", long(r->runs_executed),
              long(r->runs.size() - r->runs_executed), config.scale.out_dir.c_str());
  const JointLaw& l = r->joint.law;
  auto ci = [&](const std::vector<Interval>& iv, size_t i) {
    static char buf[64];
    if (i < iv.size()) std::snprintf(buf, sizeof(buf), " [%.4g, %.4g]", iv[i].lo, iv[i].hi);
    else buf[0] = 0;
    return std::string(buf);
  };
  std::printf("L(N, D) = E + A/N^alpha + B/D^beta over %ld runs (95%% bootstrap intervals):\n", long(l.points));
  std::printf("  E = %.4g%s\n  A = %.4g%s\n  alpha = %.4g%s\n  B = %.4g%s\n  beta = %.4g%s\n", l.e,
              ci(r->joint.intervals, 0).c_str(), l.a, ci(r->joint.intervals, 1).c_str(), l.alpha,
              ci(r->joint.intervals, 2).c_str(), l.b, ci(r->joint.intervals, 3).c_str(), l.beta,
              ci(r->joint.intervals, 4).c_str());
  if (r->by_n)
    std::printf("L(N) at the largest D: E = %.4g, alpha_N = %.4g%s\n", r->by_n->law.e, r->by_n->law.alpha,
                ci(r->by_n->intervals, 2).c_str());
  if (r->by_d)
    std::printf("L(D) at the largest N: E = %.4g, beta_D = %.4g%s\n", r->by_d->law.e, r->by_d->law.alpha,
                ci(r->by_d->intervals, 2).c_str());
  std::printf("compute-optimal frontier: N_opt ~ C^%.3f, D_opt ~ C^%.3f\n", l.beta / (l.alpha + l.beta),
              l.alpha / (l.alpha + l.beta));
  if (r->predicted && r->measured)
    std::printf("prediction check: largest run predicted %.4f, measured %.4f, error %.2f%%\n", *r->predicted,
                *r->measured, 100.0 * std::abs(*r->predicted - *r->measured) / *r->measured);
  for (const auto& f : r->files) std::printf("wrote %s\n", f.c_str());
  return 0;
}

std::string SelfPath(const char* argv0) {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n > 0) return std::string(buf, n);
  return argv0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"distbelief: DistBelief-style deep learning on CPU machines and clusters"};
  app.require_subcommand(1);

  std::string config_path, resume;
  std::vector<std::string> overrides;
  CLI::App* train = app.add_subcommand("train", "Train a model in this process");
  train->add_option("--config", config_path, "TOML config file")->required();
  train->add_option("--set", overrides, "Override a config value: section.key=value (TOML value)");
  train->add_option("--resume", resume, "Continue from this checkpoint");

  std::string eval_config, eval_checkpoint;
  std::vector<std::string> eval_overrides;
  CLI::App* eval = app.add_subcommand("eval", "Evaluate a checkpoint on the test set");
  eval->add_option("--config", eval_config, "TOML config the checkpoint was trained with");
  eval->add_option("--checkpoint", eval_checkpoint, "Checkpoint to evaluate");
  eval->add_option("--set", eval_overrides, "Override a config value: section.key=value");

  std::string fn_config, fn_checkpoint, fn_faces, fn_nonfaces, fn_csv;
  std::vector<std::string> fn_overrides;
  CLI::App* face = eval->add_subcommand("face-neuron", "Score every neuron of a cat-network checkpoint on faces vs non-faces");
  face->add_option("--config", fn_config, "TOML config with the [cat] section it was trained with")->required();
  face->add_option("--checkpoint", fn_checkpoint, "Cat-network checkpoint")->required();
  face->add_option("--faces", fn_faces, "Folder of face images (default: cat.faces_dir)");
  face->add_option("--nonfaces", fn_nonfaces, "Folder of non-face images (default: cat.nonfaces_dir)");
  face->add_option("--csv", fn_csv, "Write every neuron's accuracy here");
  face->add_option("--set", fn_overrides, "Override a config value");
  std::string role_config, listen = "127.0.0.1:0", shards;
  std::vector<std::string> role_overrides;
  int index = 0;
  CLI::App* launch = app.add_subcommand("launch", "Run a local cluster: shard and replica processes, watched and restarted");
  launch->add_option("--config", role_config, "TOML config with a [distributed] section")->required();
  launch->add_option("--set", role_overrides, "Override a config value: section.key=value");
  CLI::App* shard = app.add_subcommand("shard", "Serve one parameter-server shard over gRPC");
  shard->add_option("--config", role_config, "TOML config")->required();
  shard->add_option("--set", role_overrides, "Override a config value");
  shard->add_option("--index", index, "Shard index")->required();
  shard->add_option("--listen", listen, "Address to bind (default 127.0.0.1:0, a free loopback port)");
  CLI::App* replica = app.add_subcommand("replica", "Run one Downpour model replica against running shards");
  replica->add_option("--config", role_config, "TOML config")->required();
  replica->add_option("--set", role_overrides, "Override a config value");
  replica->add_option("--index", index, "Replica index")->required();
  replica->add_option("--shards", shards, "Comma-separated shard addresses, in shard order")->required();
  CLI::App* worker = app.add_subcommand("worker", "Serve Sandblaster work portions over gRPC against running shards");
  worker->add_option("--config", role_config, "TOML config")->required();
  worker->add_option("--set", role_overrides, "Override a config value");
  worker->add_option("--index", index, "Worker index")->required();
  worker->add_option("--shards", shards, "Comma-separated shard addresses, in shard order")->required();
  worker->add_option("--listen", listen, "Address to bind (default 127.0.0.1:0, a free loopback port)");

  CLI::App* scale = app.add_subcommand("scale", "Run a scaling-law sweep: train every size x data amount, fit, plot");
  scale->add_option("--config", role_config, "TOML config with a [scale] section")->required();
  scale->add_option("--set", role_overrides, "Override a config value: section.key=value");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);  // CLI11 reports usage errors by exception; exit non-zero here
  }
  if (train->parsed()) return Train(config_path, overrides, resume);
  if (face->parsed()) {
    auto c = distbelief::LoadConfig(fn_config, fn_overrides);
    if (!c.ok()) return Fail(c.status());
    return EvalFaceNeuron(*c, fn_checkpoint, fn_faces, fn_nonfaces, fn_csv);
  }
  if (eval->parsed()) {
    if (eval_config.empty() || eval_checkpoint.empty())
      return Fail(absl::InvalidArgumentError("eval needs --config and --checkpoint (or: eval face-neuron ...)"));
    return Eval(eval_config, eval_overrides, eval_checkpoint);
  }
  using namespace distbelief;
  auto config = LoadConfig(role_config, role_overrides);
  if (!config.ok()) return Fail(config.status());
  if ((launch->parsed() || replica->parsed() || worker->parsed()) && !config->distributed.enabled)
    return Fail(absl::InvalidArgumentError(role_config + " has no [distributed] section"));
  if (scale->parsed()) {
    if (!config->scale.enabled) return Fail(absl::InvalidArgumentError(role_config + " has no [scale] section"));
    return Scale(*config);
  }
  if (shard->parsed()) {
    Status s = RunShardProcess(*config, index, listen);
    return s.ok() ? 0 : Fail(s);
  }
  if (worker->parsed()) {
    Status s = RunSandblasterWorkerProcess(*config, index, SplitCommas(shards), listen);
    return s.ok() ? 0 : Fail(s);
  }
  if (replica->parsed()) {
    Status s = RunDownpourReplicaProcess(*config, index, SplitCommas(shards));
    return s.ok() ? 0 : Fail(s);
  }
  if (launch->parsed()) {
    auto r = Launch(*config, {SelfPath(argv[0]), role_config, role_overrides});
    if (!r.ok()) return Fail(r.status());
    std::printf("cluster: %ld shards, %ld replicas; %d replicas died, %d shard restarts; %.1f s\n",
                long(config->distributed.shards), long(config->distributed.replicas), r->replicas_failed,
                r->shard_restarts, r->seconds);
    if (config->model.kind == "mlp") {
      std::printf("test loss: %.4f\n", r->eval.loss);
      std::printf("test accuracy: %.2f%%\n", 100.0 * r->eval.accuracy);
    } else {
      std::printf("test reconstruction MSE: %.5f\n", r->eval.loss);
    }
    std::printf("checkpoint: %s/checkpoint.safetensors\n", config->train.run_dir.c_str());
    return 0;
  }
  return 1;
}
