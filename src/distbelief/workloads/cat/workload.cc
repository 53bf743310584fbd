// The cat network as the command line runs it: `distbelief train` trains every stage and writes
// the checkpoint and report; `distbelief eval face-neuron` scores a checkpoint on any two folders.
#include <cstdio>

#include "absl/strings/str_split.h"

#include "distbelief/base/parallel.h"
#include "distbelief/train/checkpointing.h"
#include "distbelief/workloads/cat/cat.h"
#include "distbelief/workloads/cat/report.h"

namespace distbelief {
namespace {

std::vector<std::string> SplitList(const std::string& s) {
  return absl::StrSplit(s, ',', absl::SkipEmpty());
}

void PrintFaceTest(const FaceSet& set, const FaceTable& t) {
  std::printf("face test set:");
  for (size_t i = 0; i < set.sources.size(); ++i) std::printf("%s %s", i ? "," : "", set.sources[i].c_str());
  std::printf("\n%s", t.Markdown().c_str());
}

void PrintTopStage(const FaceTable& t) {
  std::printf("top-stage neuron: %.1f%% held out (AUC %.3f), %+.1f points (AUC %+.3f) against the best baseline\n",
              100 * t.top.accuracy, t.top.auc, 100 * t.top_margin_accuracy, t.top_margin_auc);
}

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
    PrintFaceTest(r.test, r.table);
    DB_RETURN_IF_ERROR(SaveCatNet(net.get(), RunCheckpointPath(e.train.run_dir), e.train.config_text));
    std::printf("checkpoint: %s\n", RunCheckpointPath(e.train.run_dir).c_str());
    DB_ASSIGN_OR_RETURN(const std::string report, WriteCatReport(net.get(), o_, r, e.train.run_dir));
    std::printf("report: %s\n", report.c_str());
    PrintTopStage(r.table);
    return absl::OkStatus();
  }

  // The face test of a checkpoint on any folders (--faces, --nonfaces: comma-separated; default
  // the config's), its neurons read as --readout says (code, pooled: the default, normalized);
  // with --csv, every unit's selection and held-out scores.
  Status Evaluate(const EngineOptions& e, const EvalRequest& request) override {
    CatOptions o = o_;
    CatNet::Readout readout = CatNet::Readout::kPooled;
    for (const auto& [flag, value] : request.flags) {
      if (flag == "faces") {
        o.faces_dirs = SplitList(value);
      } else if (flag == "nonfaces") {
        o.nonfaces_dirs = SplitList(value);
      } else if (flag == "readout") {
        DB_ASSIGN_OR_RETURN(readout, ParseReadout(value));
      } else if (flag != "csv") {
        return absl::InvalidArgumentError("face-neuron eval takes no flag --" + flag);
      }
    }
    DB_ASSIGN_OR_RETURN(auto net, CatNet::Create(o.net, e.train.seed));
    DB_RETURN_IF_ERROR(LoadCatNet(net.get(), request.checkpoint));
    DB_ASSIGN_OR_RETURN(const FaceSet set, LoadFaceSet(o.faces_dirs, o.nonfaces_dirs, o.net.frame));
    DB_ASSIGN_OR_RETURN(auto random, RandomCatNet(o, e.train.seed + 1));
    const FaceTable table = FaceNeuronTable(net.get(), random.get(), set, e.train.seed, readout);
    if (auto csv = request.flags.find("csv"); csv != request.flags.end()) {
      std::FILE* f = std::fopen(csv->second.c_str(), "w");
      if (!f) return absl::UnavailableError("cannot write " + csv->second);
      std::fprintf(f, "stage,unit,selection_accuracy,held_out_accuracy,held_out_auc\n");
      const FaceHalves h = SplitFaceSet(set.labels, e.train.seed);
      const std::vector<Tensor> features = net->Features(set.frames, readout);
      const int64_t n = set.frames.dim(0);
      for (size_t st = 0; st < features.size(); ++st) {
        const int64_t units = features[st].size() / n;
        for (int64_t u = 0; u < units; ++u) {
          double sel = 0.0;
          const float* x = features[st].data() + u;
          const ScoreCut cut = BestCut(x, units, set.labels, h.selection, &sel);
          std::fprintf(f, "%zu,%ld,%.4f,%.4f,%.4f\n", st + 1, long(u), sel, CutAccuracy(x, units, set.labels, h.report, cut),
                       RocAuc(x, units, set.labels, h.report, cut.faces_above));
        }
      }
      std::fclose(f);
      std::printf("every neuron: %s\n", csv->second.c_str());
    }
    PrintFaceTest(set, table);
    PrintTopStage(table);
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
