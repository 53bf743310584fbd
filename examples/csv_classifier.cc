// A workload of your own, in one file: a classifier on a CSV file (rows of numbers, the class id
// last; every 5th row held out), trained by distbelief's engine as its config says: alone, or by
// Downpour replicas and shards ([distributed]). Usage: csv_classifier CONFIG [section.key=value...]
#include <cstdio>
#include <fstream>
#include <sstream>

#include "distbelief/base/shuffle.h"
#include "distbelief/config/config.h"
#include "distbelief/models/sequential.h"
#include "distbelief/nn/dense.h"
#include "distbelief/nn/loss.h"
#include "distbelief/train/engine.h"

using namespace distbelief;

struct Data {
  std::vector<std::vector<float>> x;  // features, standardized per column
  std::vector<float> y;               // class ids
  int classes = 0;
};

// Reads rows of numbers; a line that is not one is an error naming it.
StatusOr<Data> ReadCsv(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read " + path);
  Data d;
  std::string line, f;
  for (int n = 1; std::getline(in, line); ++n) {
    std::vector<float> row;
    char* end = nullptr;
    for (std::stringstream fields(line); std::getline(fields, f, ',');)
      if (row.push_back(std::strtof(f.c_str(), &end)); f.empty() || *end)
        return absl::InvalidArgumentError(path + ":" + std::to_string(n) + ": '" + f + "' is not a number");
    if (row.size() < 2 || (!d.x.empty() && row.size() != d.x[0].size() + 1) || row.back() < 0 || row.back() != int(row.back()))
      return absl::InvalidArgumentError(path + ":" + std::to_string(n) + ": not the features and a class id");
    d.classes = std::max(d.classes, int(row.back()) + 1);
    d.y.push_back(row.back());
    d.x.emplace_back(row.begin(), row.end() - 1);
  }
  if (d.x.size() < 10) return absl::InvalidArgumentError(path + " has fewer than 10 rows");
  for (size_t j = 0; j < d.x[0].size(); ++j) {
    double s = 0, ss = 0;
    for (const auto& r : d.x) s += r[j], ss += double(r[j]) * r[j];
    const double mean = s / d.x.size(), sd = std::sqrt(std::max(1e-12, ss / d.x.size() - mean * mean));
    for (auto& r : d.x) r[j] = float((r[j] - mean) / sd);
  }
  return d;
}

// Replica r of R: an MLP on every R-th training row, reshuffled each epoch.
class CsvReplica : public ReplicaModel {
 public:
  CsvReplica(std::shared_ptr<const Data> d, int64_t hidden, int64_t batch, uint64_t seed, int r, int R)
      : d_(d), batch_(batch), seed_(seed) {
    Random rng(seed);
    net_.Add(std::make_unique<Linear>("fc1", d->x[0].size(), hidden, &rng));
    net_.Add(std::make_unique<ActivationLayer>(Activation::kRelu));
    net_.Add(std::make_unique<Linear>("out", hidden, d->classes, &rng));
    for (int64_t i = 0; i < int64_t(d->x.size()); ++i)
      if (i % 5 != 4 && (i / 5) % R == r) mine_.push_back(i);
  }
  std::vector<Param*> params(int) override { return net_.params(); }
  StatusOr<StepLoss> ComputeGradient(int64_t step) override {
    const int64_t per_epoch = int64_t(mine_.size()) / batch_, at = (step % per_epoch) * batch_;
    if (at == 0) {
      Random rng(seed_ + step / per_epoch);
      Shuffle(std::span<int64_t>(order_ = mine_), &rng);
    }
    net_.ZeroGrad();
    SoftmaxCrossEntropy ce;
    StepLoss loss;
    loss.total = ce.Forward(net_.Forward(Rows({order_.begin() + at, order_.begin() + at + batch_})), y_);
    Tensor dout;
    ce.Backward(&dout);
    net_.Backward(dout);
    return loss;
  }
  double TestAccuracy() {
    std::vector<int64_t> held_out;
    for (int64_t i = 4; i < int64_t(d_->x.size()); i += 5) held_out.push_back(i);
    const Tensor& out = net_.Forward(Rows(held_out));
    int correct = 0;
    for (size_t i = 0; i < held_out.size(); ++i) {
      const float* o = out.data() + i * d_->classes;
      correct += std::max_element(o, o + d_->classes) - o == int(y_[i]);
    }
    return double(correct) / held_out.size();
  }

 private:
  const Tensor& Rows(const std::vector<int64_t>& rows) {  // into x_ (B, features) and y_ (B)
    const int64_t n = rows.size(), f = d_->x[0].size();
    x_.Resize({n, f});
    y_.Resize({n});
    for (int64_t i = 0; i < n; ++i) std::copy(d_->x[rows[i]].begin(), d_->x[rows[i]].end(), x_.data() + i * f), y_[i] = d_->y[rows[i]];
    return x_;
  }
  std::shared_ptr<const Data> d_;
  int64_t batch_;
  uint64_t seed_;
  Sequential net_;
  std::vector<int64_t> mine_, order_;
  Tensor x_, y_;
};

Status Main(const std::string& path, const std::vector<std::string>& overrides) {
  DB_ASSIGN_OR_RETURN(ConfigFile config, ConfigFile::Load(path, overrides));
  DB_ASSIGN_OR_RETURN(const EngineOptions engine, ParseEngineOptions(&config));
  Section& csv = config.section("csv");  // this workload's own options
  std::string file;
  int64_t hidden = 64, batch = 32, epochs = 20;
  DB_RETURN_IF_ERROR(csv.String("file", &file));
  DB_RETURN_IF_ERROR(csv.Int("hidden", &hidden, 1, 1 << 16));
  DB_RETURN_IF_ERROR(csv.Int("batch", &batch, 1, 1 << 16));
  DB_RETURN_IF_ERROR(csv.Int("epochs", &epochs, 1, 100000));
  DB_RETURN_IF_ERROR(config.CheckAllRead());
  DB_ASSIGN_OR_RETURN(Data data, ReadCsv(file));
  auto d = std::make_shared<const Data>(std::move(data));
  const int R = engine.distributed.mode == Mode::kDownpour ? engine.distributed.downpour.replicas : 1;
  const int64_t rows_each = int64_t(d->x.size()) * 4 / 5 / R;
  if (rows_each < batch) return absl::InvalidArgumentError("csv.batch exceeds the " + std::to_string(rows_each) + " rows of a replica");
  Job job;
  job.name = "csv";
  job.steps = R * epochs * (rows_each / batch);
  job.examples_per_step = batch;
  job.make_replica = [=, seed = engine.train.seed](int r, int replicas) -> StatusOr<std::unique_ptr<ReplicaModel>> {
    return std::unique_ptr<ReplicaModel>(new CsvReplica(d, hidden, batch, seed, r, replicas));
  };
  DB_ASSIGN_OR_RETURN(RunResult result, RunJob(engine, job));
  std::printf("%s: %zu rows, %d classes; train loss %.4f -> %.4f\n", file.c_str(), d->x.size(), d->classes,
              result.first_loss.total, result.last_loss.total);
  std::printf("test accuracy: %.2f%%\n", 100 * static_cast<CsvReplica*>(result.model.get())->TestAccuracy());
  return absl::OkStatus();
}

int main(int argc, char** argv) {
  if (argc < 2) return std::fprintf(stderr, "usage: csv_classifier CONFIG [section.key=value...]\n"), 2;
  const Status s = Main(argv[1], std::vector<std::string>(argv + 2, argv + argc));
  if (!s.ok()) return std::fprintf(stderr, "csv_classifier: error: %s\n", std::string(s.message()).c_str()), 2;
  return 0;
}
