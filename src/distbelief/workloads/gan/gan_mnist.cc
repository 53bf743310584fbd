#include "distbelief/workloads/gan/gan_mnist.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "distbelief/base/logging.h"
#include "distbelief/base/shuffle.h"
#include "distbelief/train/checkpointing.h"

namespace distbelief {

StatusOr<GanMnistOptions> ParseGanMnistOptions(ConfigFile* file) {
  GanMnistOptions o;
  o.net.g_hidden = {1200, 1200};
  o.net.g_output = Activation::kSigmoid;
  o.net.d_hidden = {240, 240};
  o.net.d_pieces = 5;
  o.net.d_dropout = 0.5f;
  o.net.d_input_dropout = 0.2f;
  Section& g = file->section("gan");
  DB_RETURN_IF_ERROR(g.Int("noise", &o.net.noise, 1, 1 << 16));
  DB_RETURN_IF_ERROR(g.IntList("g_hidden", &o.net.g_hidden, 1, 1 << 16));
  DB_RETURN_IF_ERROR(g.IntList("d_hidden", &o.net.d_hidden, 1, 1 << 16));
  DB_RETURN_IF_ERROR(g.Int("d_pieces", &o.net.d_pieces, 0, 64));
  DB_RETURN_IF_ERROR(g.Float("d_dropout", &o.net.d_dropout, 0.0, 0.9));
  DB_RETURN_IF_ERROR(g.Float("d_input_dropout", &o.net.d_input_dropout, 0.0, 0.9));
  DB_RETURN_IF_ERROR(g.String("data_dir", &o.data_dir));
  DB_RETURN_IF_ERROR(g.Int("train_size", &o.train_size, 1, 59999));
  DB_RETURN_IF_ERROR(g.Int("epochs", &o.epochs, 1, 100000));
  DB_RETURN_IF_ERROR(g.Int("batch", &o.batch, 1, 1 << 16));
  DB_RETURN_IF_ERROR(g.Int("d_steps", &o.d_steps, 1, 100));
  DB_RETURN_IF_ERROR(g.Int("parzen_samples", &o.parzen_samples, 1, 1000000));
  DB_RETURN_IF_ERROR(g.Int("parzen_test", &o.parzen_test, 1, 10000));
  DB_RETURN_IF_ERROR(g.Int("parzen_validation", &o.parzen_validation, 1, 59999));
  if (o.net.g_hidden.empty()) return g.Error("g_hidden", "must not be empty");
  if (o.net.d_hidden.empty()) return g.Error("d_hidden", "must not be empty");
  if (o.batch > o.train_size) return g.Error("batch", "is larger than gan.train_size");
  o.net.image = 784;
  return o;
}

namespace {

Tensor Rows(const Tensor& src, int64_t begin, int64_t count) {
  const int64_t row = src.dim(1);
  Tensor out({count, row});
  std::memcpy(out.data(), src.data() + begin * row, count * row * sizeof(float));
  return out;
}

}  // namespace

StatusOr<std::shared_ptr<const GanData>> GanData::Load(const GanMnistOptions& o) {
  DB_ASSIGN_OR_RETURN(LabelledImages train, ReadMnist(o.data_dir, "train"));
  DB_ASSIGN_OR_RETURN(LabelledImages test, ReadMnist(o.data_dir, "t10k"));
  if (train.images.dim(1) != o.net.image)
    return absl::InvalidArgumentError(o.data_dir + " holds images of " + std::to_string(train.images.dim(1)) +
                                      " pixels; the GAN makes " + std::to_string(o.net.image));
  const int64_t n = train.images.dim(0);
  if (o.train_size >= n)
    return absl::InvalidArgumentError("gan.train_size = " + std::to_string(o.train_size) + " leaves none of the " +
                                      std::to_string(n) + " training images to validate on");
  auto d = std::make_shared<GanData>();
  d->train = Rows(train.images, 0, o.train_size);
  d->validation = Rows(train.images, o.train_size, n - o.train_size);
  d->test = std::move(test.images);
  return std::shared_ptr<const GanData>(std::move(d));
}

StatusOr<std::unique_ptr<GanReplica>> GanReplica::Create(const GanMnistOptions& o, std::shared_ptr<const GanData> data,
                                                         uint64_t seed, int replica, int replicas) {
  std::unique_ptr<GanReplica> m(new GanReplica(o.net, seed));
  m->o_ = o;
  m->data_ = std::move(data);
  m->seed_ = seed;
  m->replica_ = replica;
  const int64_t n = m->data_->train.dim(0);
  for (int64_t i = replica; i < n; i += replicas) m->share_.push_back(i);
  if (static_cast<int64_t>(m->share_.size()) < o.batch)
    return absl::InvalidArgumentError("replica " + std::to_string(replica) + " of " + std::to_string(replicas) + " gets " +
                                      std::to_string(m->share_.size()) + " training images, fewer than gan.batch = " +
                                      std::to_string(o.batch));
  m->steps_per_epoch_ = static_cast<int64_t>(m->share_.size()) / o.batch;
  return m;
}

std::vector<Param*> GanReplica::params(int group) {
  return group == 0 ? gan_.discriminator().params() : gan_.generator().params();
}

StatusOr<StepLoss> GanReplica::ComputeGradient(int64_t step) {
  const int64_t epoch = step / steps_per_epoch_;
  if (epoch != epoch_) {
    order_ = share_;
    Random rng(seed_ * 7919 + static_cast<uint64_t>(epoch) * 104729 + static_cast<uint64_t>(replica_));
    Shuffle(std::span<int64_t>(order_), &rng);
    epoch_ = epoch;
  }
  GatherRows(data_->train, order_, (step % steps_per_epoch_) * o_.batch, o_.batch, &real_);
  const GanLosses l = gan_.Gradients(real_, step % o_.d_steps == o_.d_steps - 1);
  StepLoss s;
  s.total = l.d_loss + l.g_loss;
  s.terms = {l.d_loss, l.g_loss};
  return s;
}

GreyImage DigitGrid(const Tensor& images, int64_t cols) {
  const int64_t n = images.dim(0), side = 28, rows = (n + cols - 1) / cols;
  GreyImage g;
  g.w = cols * (side + 1) + 1;
  g.h = rows * (side + 1) + 1;
  g.pixels.assign(g.w * g.h, 0.5f);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t x0 = 1 + (i % cols) * (side + 1), y0 = 1 + (i / cols) * (side + 1);
    for (int64_t y = 0; y < side; ++y)
      for (int64_t x = 0; x < side; ++x) g.pixels[(y0 + y) * g.w + x0 + x] = images[i * side * side + y * side + x];
  }
  return g;
}

StatusOr<GanParzenTable> GanParzen(Gan* gan, const GanData& data, const GanMnistOptions& o, uint64_t seed) {
  GanParzenTable t;
  t.centres = std::min(o.parzen_samples, data.train.dim(0));
  const Tensor validation = Rows(data.validation, 0, std::min(o.parzen_validation, data.validation.dim(0)));
  const Tensor test = Rows(data.test, 0, std::min(o.parzen_test, data.test.dim(0)));
  Random rng(seed * 1000003 + 17);
  const Tensor samples = gan->Sample(t.centres, &rng);
  DB_ASSIGN_OR_RETURN(t.gan, ParzenLogLikelihood(samples, validation, test));
  DB_ASSIGN_OR_RETURN(t.real, ParzenLogLikelihood(Rows(data.train, 0, t.centres), validation, test));
  return t;
}

namespace {

std::string FormatTable(const GanParzenTable& t, int64_t validation, int64_t test) {
  char buf[512];
  std::string s = "Parzen-window log-likelihood (nats) of " + std::to_string(test) + " MNIST test images, sigma chosen on " +
                  std::to_string(validation) + " validation images:\n\n";
  s += "| centres | count | sigma | validation LL | test LL +- s.e. |\n|---|---|---|---|---|\n";
  std::snprintf(buf, sizeof(buf), "| GAN samples | %ld | %.3f | %.1f | %.1f +- %.1f |\n", long(t.centres), t.gan.sigma,
                t.gan.validation.mean, t.gan.test.mean, t.gan.test.standard_error);
  s += buf;
  std::snprintf(buf, sizeof(buf), "| real training digits (reference) | %ld | %.3f | %.1f | %.1f +- %.1f |\n",
                long(t.centres), t.real.sigma, t.real.validation.mean, t.real.test.mean, t.real.test.standard_error);
  s += buf;
  s += "| Goodfellow et al. 2014, table 1 (their GAN) | 10000 | | | 225 +- 2 |\n";
  return s;
}

// Sample `count` images and put each beside its nearest training image (squared distance).
StatusOr<Tensor> SamplesAndNearest(Gan* gan, const Tensor& train, int64_t count, uint64_t seed) {
  Random rng(seed * 31 + 5);
  const Tensor s = gan->Sample(count, &rng);
  DB_ASSIGN_OR_RETURN(Tensor d2, SquaredDistances(s, train));
  const int64_t n = train.dim(0), row = s.dim(1);
  Tensor out({2 * count, row});
  for (int64_t i = 0; i < count; ++i) {
    const float* r = d2.data() + i * n;
    const int64_t j = std::min_element(r, r + n) - r;
    std::memcpy(out.data() + i * row, s.data() + i * row, row * sizeof(float));
    std::memcpy(out.data() + (count + i) * row, train.data() + j * row, row * sizeof(float));
  }
  return out;
}

}  // namespace

StatusOr<Job> GanJob(const GanMnistOptions& options, std::shared_ptr<const GanData> shared, const EngineOptions& e) {
  const int replicas = e.distributed.mode == Mode::kDownpour ? e.distributed.downpour.replicas : 1;
  if (e.distributed.mode == Mode::kSandblaster)
    return absl::InvalidArgumentError("the GAN trains locally or with Downpour: Sandblaster's L-BFGS minimizes one "
                                      "loss, and a GAN's two players minimize two");
  const uint64_t seed = e.train.seed;
  DB_ASSIGN_OR_RETURN(auto probe, GanReplica::Create(options, shared, seed, 0, replicas));
  Job job;
  job.name = "gan";
  job.steps = replicas * options.epochs * probe->steps_per_epoch();
  job.steps_per_epoch = probe->steps_per_epoch();
  job.examples_per_step = options.batch;
  job.loss_terms = {"d_loss", "g_loss"};
  const GanMnistOptions o = options;
  const std::shared_ptr<const GanData> data = shared;
  job.make_replica = [o, data, seed](int r, int replicas) -> StatusOr<std::unique_ptr<ReplicaModel>> {
    DB_ASSIGN_OR_RETURN(auto m, GanReplica::Create(o, data, seed, r, replicas));
    return std::unique_ptr<ReplicaModel>(std::move(m));
  };
  // Each epoch: a grid of 100 samples from the same noise (samples/epoch_NNN.png), D's mean
  // belief on 1,000 test digits and 1,000 samples, and a quick Parzen estimate (1,000 samples,
  // 1,000 validation images, sigma chosen on them: for the curve only, not the table).
  const std::string dir = e.train.run_dir + "/samples";
  auto epoch = std::make_shared<int64_t>(0);
  job.evaluate = [data, dir, epoch, seed](ReplicaModel* model) -> StatusOr<Metrics> {
    Gan& gan = static_cast<GanReplica*>(model)->gan();
    ::mkdir(dir.c_str(), 0755);
    Random fixed(seed + 424242);
    char name[64];
    std::snprintf(name, sizeof(name), "/epoch_%03ld.png", long(++*epoch));
    DB_RETURN_IF_ERROR(WritePng(dir + name, DigitGrid(gan.Sample(100, &fixed), 10)));
    Random rng(seed + 99 + *epoch);
    const Tensor samples = gan.Sample(1000, &rng);
    const Tensor real = Rows(data->test, 0, std::min<int64_t>(1000, data->test.dim(0)));
    auto mean_prob = [&](const Tensor& x) {
      const Tensor logits = gan.Discriminate(x);
      double s = 0.0;
      for (float v : logits.span()) s += 1.0 / (1.0 + std::exp(-v));
      return s / logits.size();
    };
    const Tensor val = Rows(data->validation, 0, std::min<int64_t>(1000, data->validation.dim(0)));
    DB_ASSIGN_OR_RETURN(ParzenResult p, ParzenLogLikelihood(samples, val, val));
    return Metrics{{"d_real", mean_prob(real)}, {"d_fake", mean_prob(samples)}, {"parzen_1k", p.validation.mean}};
  };
  return job;
}

namespace {

class GanMnistWorkload : public Workload {
 public:
  explicit GanMnistWorkload(GanMnistOptions o) : o_(std::move(o)) {}

  StatusOr<Job> MakeJob(const EngineOptions& e) override {
    if (!data_) {
      DB_ASSIGN_OR_RETURN(data_, GanData::Load(o_));
    }
    return GanJob(o_, data_, e);
  }

  Status Report(const EngineOptions& e, RunResult* r) override {
    if (r->diverged) return absl::InternalError("the GAN's losses stopped being finite (lower optimizer.learning_rate)");
    Gan& gan = static_cast<GanReplica*>(r->model.get())->gan();
    std::printf("steps: %ld in %.1f s (%.1f steps/s)\n", long(r->steps), r->seconds, r->steps / std::max(r->seconds, 1e-9));
    if (r->first_loss.terms.size() == 2)
      std::printf("losses: D %.3f -> %.3f, G %.3f -> %.3f (first and last 10%% of steps)\n", r->first_loss.terms[0],
                  r->last_loss.terms[0], r->first_loss.terms[1], r->last_loss.terms[1]);
    if (e.distributed.mode == Mode::kDownpour)
      std::printf("downpour: %d replicas, staleness mean %.2f, max %lu\n", e.distributed.downpour.replicas,
                  r->mean_staleness, (unsigned long)r->max_staleness);
    return WriteReport(&gan, e.train.run_dir, e.train.seed);
  }

  Status Evaluate(const EngineOptions& e, const EvalRequest& request) override {
    if (!request.flags.empty())
      return absl::InvalidArgumentError("eval of a GAN takes no flag --" + request.flags.begin()->first);
    DB_ASSIGN_OR_RETURN(data_, GanData::Load(o_));
    DB_ASSIGN_OR_RETURN(auto model, GanReplica::Create(o_, data_, e.train.seed, 0, 1));
    std::vector<Param*> all = model->params(0), g = model->params(1);
    all.insert(all.end(), g.begin(), g.end());
    DB_RETURN_IF_ERROR(LoadModelCheckpoint(request.checkpoint, all).status());
    DB_ASSIGN_OR_RETURN(GanParzenTable t, GanParzen(&model->gan(), *data_, o_, e.train.seed));
    std::printf("%s", FormatTable(t, std::min(o_.parzen_validation, data_->validation.dim(0)),
                                  std::min(o_.parzen_test, data_->test.dim(0))).c_str());
    return absl::OkStatus();
  }

 private:
  Status WriteReport(Gan* gan, const std::string& run_dir, uint64_t seed) {
    DB_ASSIGN_OR_RETURN(GanParzenTable t, GanParzen(gan, *data_, o_, seed));
    const std::string table = FormatTable(t, std::min(o_.parzen_validation, data_->validation.dim(0)),
                                          std::min(o_.parzen_test, data_->test.dim(0)));
    std::printf("%s", table.c_str());
    Random rng(seed + 424242);
    DB_RETURN_IF_ERROR(WritePng(run_dir + "/samples.png", DigitGrid(gan->Sample(100, &rng), 10)));
    DB_ASSIGN_OR_RETURN(Tensor pairs, SamplesAndNearest(gan, data_->train, 10, seed));
    DB_RETURN_IF_ERROR(WritePng(run_dir + "/nearest.png", DigitGrid(pairs, 10)));
    std::ofstream md(run_dir + "/report.md");
    md << "# GAN on MNIST (Goodfellow et al. 2014)\n\n" << table
       << "\n100 samples (the same noise as the per-epoch grids in samples/):\n\n![samples](samples.png)\n\n"
       << "Top row: 10 samples; bottom row: the nearest of the " << data_->train.dim(0)
       << " training images to each (squared distance): the generator does not copy them.\n\n"
       << "![nearest](nearest.png)\n";
    if (!md) return absl::UnavailableError("cannot write " + run_dir + "/report.md");
    std::printf("report: %s/report.md (samples.png, nearest.png, samples/epoch_*.png)\n", run_dir.c_str());
    std::printf("checkpoint: %s\n", RunCheckpointPath(run_dir).c_str());
    return absl::OkStatus();
  }

  GanMnistOptions o_;
  std::shared_ptr<const GanData> data_;
};

}  // namespace

StatusOr<std::unique_ptr<Workload>> MakeGanMnistWorkload(ConfigFile* file) {
  DB_ASSIGN_OR_RETURN(GanMnistOptions o, ParseGanMnistOptions(file));
  return std::unique_ptr<Workload>(new GanMnistWorkload(std::move(o)));
}

}  // namespace distbelief
