// The cat network as the command line runs it: `distbelief train` trains every stage and writes
// the checkpoint and report; `distbelief eval face-neuron` scores a checkpoint on any two folders.
#include <cstdio>

#include "distbelief/base/parallel.h"
#include "distbelief/train/checkpointing.h"
#include "distbelief/workloads/cat/cat.h"
#include "distbelief/workloads/cat/report.h"

namespace distbelief {
namespace {

class CatWorkload : public Workload {
 public:
  explicit CatWorkload(CatOptions o) : o_(std::move(o)) {}

  StatusOr<Job> MakeJob(const EngineOptions&) override {
    return absl::UnimplementedError("the cat network trains stage by stage in one process (one job per stage); "
                                    "run it with `distbelief train`, with distributed.transport = \"grpc\" for "
                                    "shards behind gRPC");
  }
  Status Report(const EngineOptions&, RunResult*) override { return absl::OkStatus(); }

  Status Train(const EngineOptions& e) override {
    if (e.train.threads > 0) SetNumThreads(static_cast<int>(e.train.threads));
    DB_ASSIGN_OR_RETURN(auto net, CatNet::Create(o_.net, e.train.seed));
    DB_ASSIGN_OR_RETURN(const CatTrainResult r, TrainCatNet(net.get(), o_, e));
    if (e.distributed.mode == Mode::kDownpour) {
      const ClusterOptions& c = e.distributed.cluster;
      const std::string split = o_.partitions > 1 ? " x " + std::to_string(o_.partitions) + " partitions" : "";
      std::printf("downpour: %d replicas%s, %d shards%s (%s), mean staleness %.2f updates, %ld replicas failed, %.1f s\n",
                  e.distributed.downpour.replicas, split.c_str(), c.shards, o_.partitions > 1 ? " per partition" : "",
                  c.transport.kind == TransportKind::kGrpc ? "grpc" : "inproc", r.mean_staleness,
                  long(r.replicas_failed), r.seconds);
    }
    std::printf("trained on random crops of %ld photos and video frames (%ld unreadable files skipped)\n",
                long(r.training_images), long(r.unreadable));
    for (size_t s = 0; s < r.first_loss.size(); ++s)
      std::printf("stage %zu: reconstruction %.2f -> %.2f, sparsity %.2f -> %.2f\n", s + 1, r.first_loss[s].first,
                  r.last_loss[s].first, r.first_loss[s].second, r.last_loss[s].second);
    const FaceNeuronReport& f = r.report;
    std::printf("face test set: %ld faces, %ld non-faces\n", long(f.faces), long(f.nonfaces));
    std::printf("  chance (all one class)   %.1f%%\n", 100 * f.chance);
    std::printf("  best single pixel        %.1f%%\n", 100 * f.best_pixel.accuracy);
    for (const auto& b : f.best_per_stage)
      std::printf("  best stage-%d neuron      %.1f%% (unit %ld)\n", b.stage + 1, 100 * b.accuracy, long(b.unit));
    DB_RETURN_IF_ERROR(SaveCatNet(net.get(), RunCheckpointPath(e.train.run_dir), e.train.config_text));
    std::printf("checkpoint: %s\n", RunCheckpointPath(e.train.run_dir).c_str());
    DB_ASSIGN_OR_RETURN(const std::string report, WriteCatReport(net.get(), o_, r, e.train.run_dir));
    std::printf("report: %s\n", report.c_str());
    std::printf("best neuron accuracy: %.1f%%\n", 100 * f.best.accuracy);
    return absl::OkStatus();
  }

  // Every neuron's best single-threshold accuracy on two folders (--faces, --nonfaces; default the
  // config's), optionally each unit's to --csv.
  Status Evaluate(const EngineOptions& e, const EvalRequest& request) override {
    CatOptions o = o_;
    for (const auto& [flag, value] : request.flags) {
      if (flag == "faces") o.faces_dir = value;
      else if (flag == "nonfaces") o.nonfaces_dir = value;
      else if (flag != "csv") return absl::InvalidArgumentError("face-neuron eval takes no flag --" + flag);
    }
    DB_ASSIGN_OR_RETURN(auto net, CatNet::Create(o.net, e.train.seed));
    DB_RETURN_IF_ERROR(LoadCatNet(net.get(), request.checkpoint));
    std::vector<std::vector<double>> per_unit;
    DB_ASSIGN_OR_RETURN(const FaceNeuronReport r, EvaluateFaceNeurons(net.get(), o, &per_unit));
    if (auto csv = request.flags.find("csv"); csv != request.flags.end()) {
      std::FILE* f = std::fopen(csv->second.c_str(), "w");
      if (!f) return absl::UnavailableError("cannot write " + csv->second);
      std::fprintf(f, "stage,unit,accuracy\n");
      for (size_t st = 0; st < per_unit.size(); ++st)
        for (size_t u = 0; u < per_unit[st].size(); ++u) std::fprintf(f, "%zu,%zu,%.4f\n", st + 1, u, per_unit[st][u]);
      std::fclose(f);
      std::printf("every neuron: %s\n", csv->second.c_str());
    }
    std::printf("face test set: %ld faces (%s), %ld non-faces (%s)\n", long(r.faces), o.faces_dir.c_str(),
                long(r.nonfaces), o.nonfaces_dir.c_str());
    std::printf("chance %.1f%%, best single pixel %.1f%%\n", 100 * r.chance, 100 * r.best_pixel.accuracy);
    for (const auto& b : r.best_per_stage)
      std::printf("best stage-%d neuron: unit %ld, %.1f%%\n", b.stage + 1, long(b.unit), 100 * b.accuracy);
    std::printf("best neuron accuracy: %.1f%% (stage %d, unit %ld)\n", 100 * r.best.accuracy, r.best.stage + 1,
                long(r.best.unit));
    return absl::OkStatus();
  }

 private:
  CatOptions o_;
};

}  // namespace

StatusOr<std::unique_ptr<Workload>> MakeCatWorkload(ConfigFile* file) {
  DB_ASSIGN_OR_RETURN(CatOptions o, ParseCatOptions(file));
  return std::unique_ptr<Workload>(new CatWorkload(std::move(o)));
}

}  // namespace distbelief
