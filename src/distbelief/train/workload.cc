#include "distbelief/train/workload.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <utility>

#include "distbelief/io/checkpoint.h"
#include "distbelief/models/models.h"
#include "distbelief/nn/loss.h"

namespace distbelief {

StatusOr<std::shared_ptr<const Dataset>> Dataset::Load(const TrainOptions& o) {
  auto d = std::make_shared<Dataset>();
  DB_ASSIGN_OR_RETURN(d->train, ReadMnist(o.data_dir, "train"));
  DB_ASSIGN_OR_RETURN(d->test, ReadMnist(o.data_dir, "t10k"));
  if (o.train_limit > 0 && o.train_limit < d->train.images.dim(0)) {
    const int64_t n = o.train_limit, row = d->train.images.dim(1);
    Tensor imgs({n, row}), labels({n});
    std::memcpy(imgs.data(), d->train.images.data(), n * row * sizeof(float));
    std::memcpy(labels.data(), d->train.labels.data(), n * sizeof(float));
    d->train.images = std::move(imgs);
    d->train.labels = std::move(labels);
  }
  return std::shared_ptr<const Dataset>(std::move(d));
}

void GatherRows(const Tensor& src, std::span<const int64_t> order, int64_t begin, int64_t count, Tensor* dst) {
  const int64_t row = src.size() / src.dim(0);
  Shape s = src.shape();
  s[0] = count;
  dst->Resize(s);
  for (int64_t i = 0; i < count; ++i)
    std::memcpy(dst->data() + i * row, src.data() + order[begin + i] * row, row * sizeof(float));
}

EvalResult Evaluate(Sequential* model, const std::string& kind, const LabelledImages& test, int64_t limit) {
  model->SetTraining(false);
  const int64_t n = limit > 0 ? std::min(limit, test.images.dim(0)) : test.images.dim(0), bs = 1000;
  double loss = 0.0;
  int64_t correct = 0;
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Tensor x, target;
  for (int64_t b = 0; b < n; b += bs) {
    const int64_t m = std::min(bs, n - b);
    GatherRows(test.images, order, b, m, &x);
    GatherRows(test.labels, order, b, m, &target);
    const Tensor& out = model->Forward(x);
    if (kind == "mlp") {
      SoftmaxCrossEntropy ce;
      loss += ce.Forward(out, target) * m;
      const int64_t classes = out.dim(-1);
      for (int64_t i = 0; i < m; ++i) {
        const float* row = out.data() + i * classes;
        if (std::max_element(row, row + classes) - row == static_cast<int64_t>(target[i])) ++correct;
      }
    } else {
      MeanSquaredError mse;
      loss += mse.Forward(out, x) * m;
    }
  }
  model->SetTraining(true);
  return {loss / n, kind == "mlp" ? double(correct) / n : 0.0};
}

StatusOr<std::unique_ptr<Workload>> Workload::Create(const Config& config, std::shared_ptr<const Dataset> data) {
  std::unique_ptr<Workload> w(new Workload());
  ModelOptions mo = config.model;
  mo.inputs = data->train.images.dim(1);
  mo.classes = 10;
  DB_ASSIGN_OR_RETURN(w->model_, BuildModel(mo, config.train.seed));
  w->kind_ = config.model.kind;
  w->data_ = std::move(data);
  w->params_ = w->model_.params();
  for (Param* p : w->params_) w->num_params_ += p->value.size();
  return w;
}

void Workload::GetParams(std::span<float> flat) {
  int64_t off = 0;
  for (Param* p : params_) {
    std::memcpy(flat.data() + off, p->value.data(), p->value.size() * sizeof(float));
    off += p->value.size();
  }
}

void Workload::SetParams(std::span<const float> flat) {
  int64_t off = 0;
  for (Param* p : params_) {
    std::memcpy(p->value.data(), flat.data() + off, p->value.size() * sizeof(float));
    off += p->value.size();
  }
}

Status Workload::SaveCheckpoint(const std::string& path, const std::string& config_text, int64_t step) {
  Checkpoint c;
  for (Param* p : params_) c.tensors.emplace(p->name, p->value);
  c.metadata["step"] = std::to_string(step);
  c.metadata["config"] = config_text;
  c.metadata["format"] = "distbelief-checkpoint-1";
  return WriteCheckpoint(path, c);
}

std::vector<std::span<float>> Workload::ParamPieces() {
  std::vector<std::span<float>> pieces;
  for (Param* p : params_) pieces.push_back(p->value.span());
  return pieces;
}

std::vector<std::span<const float>> Workload::GradPieces() {
  std::vector<std::span<const float>> pieces;
  for (Param* p : params_) pieces.push_back(std::as_const(p->grad).span());
  return pieces;
}

double Workload::LossAndGradient(std::span<const int64_t> indices, std::span<float> grad) {
  const double loss = ComputeGradient(indices);
  int64_t off = 0;
  for (Param* p : params_) {
    std::memcpy(grad.data() + off, p->grad.data(), p->grad.size() * sizeof(float));
    off += p->grad.size();
  }
  return loss;
}

double Workload::ComputeGradient(std::span<const int64_t> indices) {
  const int64_t n = static_cast<int64_t>(indices.size());
  GatherRows(data_->train.images, indices, 0, n, &x_);
  GatherRows(data_->train.labels, indices, 0, n, &target_);
  model_.ZeroGrad();
  const Tensor& out = model_.Forward(x_);
  Tensor dout;
  double loss;
  if (kind_ == "mlp") {
    SoftmaxCrossEntropy ce;
    loss = ce.Forward(out, target_);
    ce.Backward(&dout);
  } else {
    MeanSquaredError mse;
    loss = mse.Forward(out, x_);
    mse.Backward(&dout);
  }
  model_.Backward(dout);
  return loss;
}

}  // namespace distbelief
