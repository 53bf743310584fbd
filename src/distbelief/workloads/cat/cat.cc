#include "distbelief/workloads/cat/cat.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <sstream>

#include "distbelief/base/logging.h"
#include "distbelief/io/checkpoint.h"
#include "distbelief/io/metrics.h"
#include "distbelief/mp/cat_partitions.h"

namespace distbelief {

StatusOr<Tensor> FramesFromFolder(const std::string& dir, int64_t frame, int64_t* count) {
  DB_ASSIGN_OR_RETURN(ImageFolder folder, LoadImageFolder(dir));
  const int64_t n = static_cast<int64_t>(folder.images.size());
  Tensor frames({n, 1, frame, frame});
  CropOptions o;
  o.size = frame;
  o.min_scale = 1.0;  // the whole image's central square
  for (int64_t i = 0; i < n; ++i) {
    Random rng(i);  // min_scale 1 leaves only the position of the square to draw
    CropStream::Crop(folder.images[i], o, &rng, frames.data() + i * frame * frame);
  }
  *count = n;
  return frames;
}

StatusOr<std::unique_ptr<CatNet>> RandomCatNet(const CatOptions& o, uint64_t seed) {
  CatNetOptions n = o.net;
  n.init_scale = 1.0f;
  return CatNet::Create(n, seed);
}

GreyImage FilterGrid(CatNet* net, int64_t location_step, int64_t zoom) {
  const Tensor w = net->encoder(0).Filters();  // (OH, OW, K, C, F, F), C = 1
  const int64_t oh = w.dim(0), ow = w.dim(1), k = w.dim(2), f = w.dim(4);
  // Tiles in reading order: location by location (row-major), the K maps of a location side by
  // side, wrapped into a near-square grid.
  std::vector<const float*> tiles;
  for (int64_t y = 0; y < oh; y += location_step)
    for (int64_t x = 0; x < ow; x += location_step)
      for (int64_t m = 0; m < k; ++m) tiles.push_back(w.data() + ((y * ow + x) * k + m) * f * f);
  const int64_t n = static_cast<int64_t>(tiles.size());
  int64_t cols = k;
  while (cols * cols < n) cols += k;  // whole locations per row
  const int64_t rows = (n + cols - 1) / cols, cell = f + 1;
  GreyImage g;
  g.w = (cols * cell + 1) * zoom;
  g.h = (rows * cell + 1) * zoom;
  g.pixels.assign(g.w * g.h, 0.5f);
  for (int64_t t = 0; t < n; ++t) {
    const float* p = tiles[t];
    float lo = p[0], hi = p[0];
    for (int64_t i = 0; i < f * f; ++i) lo = std::min(lo, p[i]), hi = std::max(hi, p[i]);
    const int64_t top = (t / cols) * cell + 1, left = (t % cols) * cell + 1;
    for (int64_t i = 0; i < f * f; ++i) {
      const float v = (p[i] - lo) / (hi - lo + 1e-12f);
      for (int64_t dy = 0; dy < zoom; ++dy)
        for (int64_t dx = 0; dx < zoom; ++dx)
          g.pixels[((top + i / f) * zoom + dy) * g.w + (left + i % f) * zoom + dx] = v;
    }
  }
  return g;
}

}  // namespace distbelief

namespace distbelief {

// distbelief-cat-2: encoder weights (OH, OW, C, F, F, K), maps innermost.
constexpr char kCatFormat[] = "distbelief-cat-2";

Status SaveCatNet(CatNet* net, const std::string& path, const std::string& config_text) {
  Checkpoint c;
  for (Param* p : net->AllParams()) c.tensors.emplace(p->name, p->value);
  c.metadata["config"] = config_text;
  c.metadata["format"] = kCatFormat;
  return WriteCheckpoint(path, c);
}

Status LoadCatNet(CatNet* net, const std::string& path) {
  DB_ASSIGN_OR_RETURN(Checkpoint c, ReadCheckpoint(path));
  const auto format = c.metadata.find("format");
  if (format == c.metadata.end() || format->second != kCatFormat) {
    std::ostringstream msg;
    msg << path << ": not a cat network of this version (format \""
        << (format == c.metadata.end() ? std::string() : format->second) << "\", want \"" << kCatFormat
        << "\"; distbelief-cat-1 stored the encoder's maps outermost: train again)";
    return absl::InvalidArgumentError(msg.str());
  }
  const std::vector<Param*> params = net->AllParams();
  for (Param* p : params) {
    auto it = c.tensors.find(p->name);
    if (it == c.tensors.end()) return absl::InvalidArgumentError(path + ": no tensor " + p->name);
    if (it->second.shape() != p->value.shape())
      return absl::InvalidArgumentError(path + ": " + p->name + " has shape " + it->second.ShapeString() +
                                        ", the network wants " + p->value.ShapeString());
  }
  for (Param* p : params) p->value = c.tensors.at(p->name);
  return absl::OkStatus();
}

}  // namespace distbelief

namespace distbelief {

StatusOr<CatOptions> ParseCatOptions(ConfigFile* file) {
  CatOptions o;
  Section& c = file->section("cat");
  int64_t stages = 3;
  CatStageOptions st;
  DB_RETURN_IF_ERROR(c.Int("frame", &o.net.frame, 8, 1024));
  DB_RETURN_IF_ERROR(c.Int("stages", &stages, 1, 9));
  DB_RETURN_IF_ERROR(c.Int("maps", &st.maps, 1, 1024));
  DB_RETURN_IF_ERROR(c.Int("field", &st.field, 1, 512));
  DB_RETURN_IF_ERROR(c.Int("stride", &st.stride, 1, 512));
  DB_RETURN_IF_ERROR(c.Int("pool", &st.pool, 1, 64));
  DB_RETURN_IF_ERROR(c.Int("lcn_window", &st.lcn_window, 1, 63));
  o.net.stages.assign(stages, st);
  // The top stage may be wider: its units are the candidates for a face neuron (0: cat.maps).
  int64_t top_maps = 0;
  DB_RETURN_IF_ERROR(c.Int("top_maps", &top_maps, 0, 4096));
  if (top_maps > 0) o.net.stages.back().maps = top_maps;
  // ... and its fields closer together, for more locations and so more units (0: cat.stride).
  int64_t top_stride = 0;
  DB_RETURN_IF_ERROR(c.Int("top_stride", &top_stride, 0, 512));
  if (top_stride > 0) o.net.stages.back().stride = top_stride;
  DB_RETURN_IF_ERROR(c.Float("lambda", &o.net.lambda, 0.0, 100.0));
  o.net.init_scale = 0.05f;
  DB_RETURN_IF_ERROR(c.Float("init_scale", &o.net.init_scale, 1e-6, 10.0));
  DB_RETURN_IF_ERROR(c.Int("input_lcn", &o.net.input_lcn, 0, 63));
  if (o.net.input_lcn > 0 && o.net.input_lcn % 2 == 0) return c.Error("input_lcn", "must be odd (or 0: none)");
  DB_RETURN_IF_ERROR(c.Int("steps_per_stage", &o.steps_per_stage, 1, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(c.Int("batch", &o.batch, 1, 1 << 16));
  DB_RETURN_IF_ERROR(c.Int("max_side", &o.max_side, 0, 1 << 16));
  DB_RETURN_IF_ERROR(c.Int("partitions", &o.partitions, 1, 1024));
  DB_RETURN_IF_ERROR(c.Float("motion_share", &o.motion_share, 0.0, 1.0));
  DB_RETURN_IF_ERROR(c.Float("min_scale", &o.min_scale, 0.01, 1.0));
  if (o.partitions > st.maps)
    return c.Error("partitions", "= " + std::to_string(o.partitions) + " exceeds cat.maps = " + std::to_string(st.maps) +
                                     "; the network is split by maps");
  if (o.partitions > 1 && o.net.input_lcn > 0)
    return c.Error("input_lcn", "is not implemented with model partitions (cat.partitions > 1)");
  DB_RETURN_IF_ERROR(c.Float("learning_rate", &o.learning_rate, 1e-9, 100.0));
  DB_RETURN_IF_ERROR(c.String("train_dir", &o.train_dir));
  DB_RETURN_IF_ERROR(c.StringList("faces_dirs", &o.faces_dirs));
  DB_RETURN_IF_ERROR(c.StringList("nonfaces_dirs", &o.nonfaces_dirs));
  return o;
}

namespace {

// One replica's view of stage s: its own network (the stages below copied from the one being
// trained, frozen), split into model partitions or whole, and its own stream of crops.
class CatStageReplica : public ReplicaModel {
 public:
  static StatusOr<std::unique_ptr<CatStageReplica>> Create(CatNet* master, const CatOptions& o, uint64_t seed,
                                                           const ImageFolder* photos, const std::vector<Region>* motion,
                                                           const TransportOptions& t,
                                                           int stage, int replica) {
    std::unique_ptr<CatStageReplica> m(new CatStageReplica());
    m->stage_ = stage;
    DB_ASSIGN_OR_RETURN(m->net_, CatNet::Create(o.net, seed));
    for (int s = 0; s <= stage; ++s) CopyFlatStage(master, m->net_.get(), s);
    if (o.partitions > 1) {
      m->transport_ = MakeTransport(t);  // the partitions' own links, in process or over gRPC
      DB_ASSIGN_OR_RETURN(m->parts_, CatPartitions::Create(m->net_.get(), o.net, o.partitions, m->transport_.get()));
    }
    CropOptions co;
    co.size = o.net.frame;
    co.batch = o.batch;
    co.seed = seed * 1000003 + static_cast<uint64_t>(replica) * 7919 + static_cast<uint64_t>(stage);
    co.region_share = o.motion_share;
    co.min_scale = o.min_scale;
    m->crops_ = std::make_unique<CropStream>(photos, co, o.motion_share > 0 ? *motion : std::vector<Region>{});
    return m;
  }
  int num_groups() const override { return parts_ ? parts_->partitions() : 1; }
  std::vector<Param*> params(int g) override { return parts_ ? parts_->StageParams(g, stage_) : net_->StageParams(stage_); }
  NormBound norm_bound(int g) override {
    return {parts_ ? parts_->DecoderBlocks(g, stage_) : net_->DecoderBlocks(stage_), 1.0f};
  }
  StatusOr<StepLoss> ComputeGradient(int64_t) override {
    const Tensor x = crops_->Next();
    std::pair<double, double> loss;
    if (parts_) {
      DB_ASSIGN_OR_RETURN(loss, parts_->StageLossAndGradient(stage_, x));
    } else {
      for (Param* p : net_->StageParams(stage_)) p->grad.ZeroOnPool();
      loss = net_->StageLossAndGradient(stage_, net_->StageInput(stage_, x));
    }
    StepLoss l;
    l.total = loss.first + loss.second;
    l.terms = {loss.first, loss.second};
    return l;
  }
  // Writes this replica's stage parameters into `net`.
  void CopyStageTo(CatNet* net) {
    if (parts_) parts_->CopyTo(net, stage_);
    else CopyFlatStage(net_.get(), net, stage_);
  }
  static void CopyFlatStage(CatNet* from, CatNet* to, int s) {
    std::vector<Param*> src = from->StageParams(s), dst = to->StageParams(s);
    for (size_t i = 0; i < src.size(); ++i)
      std::copy(src[i]->value.data(), src[i]->value.data() + src[i]->value.size(), dst[i]->value.data());
  }

 private:
  CatStageReplica() = default;
  int stage_ = 0;
  std::unique_ptr<CatNet> net_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<CatPartitions> parts_;  // after transport_: destroyed first
  std::unique_ptr<CropStream> crops_;
};

// The engine options of a stage: the cat's own Adagrad at a constant rate, no run checkpoint
// (the workload saves the whole network once every stage is done).
EngineOptions StageOptions(const CatOptions& o, EngineOptions e) {
  e.optimizer = OptimizerOptions{};
  e.optimizer.name = Optimizer::kAdagrad;
  e.optimizer.learning_rate = o.learning_rate;
  e.train.schedule = ScheduleOptions{};
  e.train.max_steps = 0;
  e.train.resume.clear();
  return e;
}

}  // namespace

StatusOr<CatTrainResult> TrainCatNet(CatNet* net, const CatOptions& o, const EngineOptions& engine) {
  if (engine.distributed.mode == Mode::kSandblaster)
    return absl::InvalidArgumentError("the cat network trains with distributed.mode = \"downpour\" (or without "
                                      "[distributed]); Sandblaster needs a fixed example set");
  if (!engine.distributed.cluster.shard_addresses.empty())
    return absl::InvalidArgumentError("the cat network starts its own shards for each stage; remove "
                                      "distributed.shard_addresses");
  ImageFolderOptions fo;
  fo.min_side = o.net.frame;
  fo.max_side = o.max_side;
  CatTrainResult result;
  DB_ASSIGN_OR_RETURN(result.test, LoadFaceSet(o.faces_dirs, o.nonfaces_dirs, o.net.frame));
  DB_ASSIGN_OR_RETURN(ImageFolder photos, LoadImageFolder(o.train_dir, fo));
  std::string per_source;
  for (const auto& [source, n] : photos.per_source)
    per_source += (per_source.empty() ? "" : ", ") + (source.empty() ? std::string("(top level)") : source) + " " +
                  std::to_string(n);
  LOG_INFO << "training stream " << o.train_dir << ": " << photos.images.size() << " images (" << per_source << ")";
  result.training_images = static_cast<int64_t>(photos.images.size());
  std::vector<Region> motion;
  if (o.motion_share > 0) {
    motion = MotionRegions(photos, o.net.frame);
    const auto moving = std::count_if(motion.begin(), motion.end(), [](const Region& r) { return r.side > 0; });
    LOG_INFO << "motion regions in " << moving << " of " << photos.images.size() << " images; " << o.motion_share
             << " of their crops are taken about them";
  }
  result.unreadable = photos.unreadable;
  if (!engine.train.run_dir.empty()) {
    // What the network sees: 64 crops of the training stream as drawn (run_dir/training_crops.png).
    CropOptions co;
    co.size = o.net.frame;
    co.batch = 64;
    co.seed = engine.train.seed;
    co.region_share = o.motion_share;
    co.min_scale = o.min_scale;
    CropStream stream(&photos, co, motion);
    const Tensor crops = stream.Next();
    const int64_t f = o.net.frame, cells = 8;
    GreyImage grid;
    grid.w = grid.h = cells * (f + 1) + 1;
    grid.pixels.assign(static_cast<size_t>(grid.w * grid.h), 1.0f);
    for (int64_t k = 0; k < 64; ++k) {
      const float* c = crops.data() + k * f * f;
      const auto [lo, hi] = std::minmax_element(c, c + f * f);
      const float span = std::max(*hi - *lo, 1e-6f);
      for (int64_t y = 0; y < f; ++y)
        for (int64_t x = 0; x < f; ++x)
          grid.pixels[static_cast<size_t>((1 + (k / cells) * (f + 1) + y) * grid.w + 1 + (k % cells) * (f + 1) + x)] =
              (c[y * f + x] - *lo) / span;
    }
    std::error_code ec;
    std::filesystem::create_directories(engine.train.run_dir, ec);
    DB_RETURN_IF_ERROR(WritePng(engine.train.run_dir + "/training_crops.png", grid));
  }
  const EngineOptions e = StageOptions(o, engine);
  const uint64_t seed = e.train.seed;
  const TransportOptions& t = e.distributed.cluster.transport;
  for (int s = 0; s < net->num_stages(); ++s) {
    Job job;
    job.name = "cat-stage-" + std::to_string(s + 1);
    job.steps = o.steps_per_stage;
    job.examples_per_step = o.batch;
    job.loss_terms = {"reconstruction", "sparsity"};
    job.write_checkpoint = false;
    job.make_replica = [net, &o, seed, &photos, &motion, &t, s](int r, int) -> StatusOr<std::unique_ptr<ReplicaModel>> {
      DB_ASSIGN_OR_RETURN(auto m, CatStageReplica::Create(net, o, seed, &photos, &motion, t, s, r));
      return std::unique_ptr<ReplicaModel>(std::move(m));
    };
    DB_ASSIGN_OR_RETURN(RunResult r, RunJob(e, job));
    if (r.diverged) return absl::InternalError("cat stage " + std::to_string(s + 1) + " diverged (lower cat.learning_rate)");
    static_cast<CatStageReplica*>(r.model.get())->CopyStageTo(net);
    auto terms = [](const StepLoss& l) { return std::pair<double, double>(l.terms[0], l.terms[1]); };
    result.first_loss.push_back(terms(r.first_loss));
    result.last_loss.push_back(terms(r.last_loss));
    result.seconds += r.seconds;
    result.mean_staleness += r.mean_staleness / net->num_stages();
    result.replicas_failed += r.replicas_failed;
  }
  DB_ASSIGN_OR_RETURN(auto random, RandomCatNet(o, seed + 1));
  result.table = FaceNeuronTable(net, random.get(), result.test, seed);
  return result;
}

}  // namespace distbelief
