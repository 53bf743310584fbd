#include "distbelief/nn/loss.h"

#include <cmath>
#include <vector>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"
#include "distbelief/base/sum.h"

namespace distbelief {
namespace {

// sum_{i < n} term(i) over the pool: each thread's chunk in 8 partial sums (PartialSum8), the
// chunks added in order, so the result depends only on n and the thread count.
template <typename Term>
double ParallelSum(int64_t n, Term term) {
  std::vector<double> part(NumThreads(), 0.0);
  ParallelFor(n, 8192, [&](int64_t lo, int64_t hi) { part[ThreadIndex()] = PartialSum8(lo, hi, term); });
  double s = 0.0;
  for (double v : part) s += v;
  return s;
}

}  // namespace

double SoftmaxCrossEntropy::Forward(const Tensor& logits, const Tensor& target, const Tensor* weight) {
  const int64_t v = logits.dim(-1), n = logits.size() / v;
  CHECK(target.size() == n) << "cross entropy: " << target.size() << " targets for " << n << " rows";
  CHECK(weight == nullptr || weight->size() == n) << "cross entropy: " << weight->size() << " weights for " << n << " rows";
  target_ = &target;
  weight_ = weight;
  probs_.Resize(logits.shape());
  std::vector<double> row_loss(n, 0.0);
  ParallelFor(n, 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float* z = logits.data() + i * v;
      float* p = probs_.data() + i * v;
      float mx = z[0];
      for (int64_t j = 1; j < v; ++j) mx = std::max(mx, z[j]);
      double sum = 0.0;
      for (int64_t j = 0; j < v; ++j) {
        p[j] = std::exp(z[j] - mx);
        sum += p[j];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < v; ++j) p[j] *= inv;
      const int64_t t = static_cast<int64_t>(target[i]);
      if (t >= 0) {
        CHECK(t < v) << "cross entropy: class " << t << " outside " << v;
        row_loss[i] = -(z[t] - mx - std::log(sum));
      }
    }
  });
  total_weight_ = 0.0;
  double loss = 0.0;
  for (int64_t i = 0; i < n; ++i)
    if (target[i] >= 0) {
      const double w = weight ? (*weight)[i] : 1.0;
      CHECK(w >= 0.0) << "cross entropy: negative weight " << w << " of row " << i;
      loss += w * row_loss[i];
      total_weight_ += w;
    }
  return total_weight_ > 0.0 ? loss / total_weight_ : 0.0;
}

// dlogits = w_i (softmax - onehot(target)) / total weight; zero for ignored rows.
void SoftmaxCrossEntropy::Backward(Tensor* dlogits) {
  const int64_t v = probs_.dim(-1), n = probs_.size() / v;
  dlogits->Resize(probs_.shape());
  const double inv = total_weight_ > 0.0 ? 1.0 / total_weight_ : 0.0;
  ParallelFor(n, 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t t = static_cast<int64_t>((*target_)[i]);
      float* d = dlogits->data() + i * v;
      const float* p = probs_.data() + i * v;
      if (t < 0) {
        for (int64_t j = 0; j < v; ++j) d[j] = 0.0f;
        continue;
      }
      const float scale = static_cast<float>((weight_ ? (*weight_)[i] : 1.0) * inv);
      for (int64_t j = 0; j < v; ++j) d[j] = p[j] * scale;
      d[t] -= scale;
    }
  });
}

// loss = max(z, 0) - z t + log(1 + exp(-|z|)), which never overflows.
double SigmoidCrossEntropy::Forward(const Tensor& logits, const Tensor& target) {
  CHECK(logits.size() == target.size()) << "sigmoid cross entropy: sizes differ";
  logits_ = &logits;
  target_ = &target;
  double s = 0.0;
  for (int64_t i = 0; i < logits.size(); ++i) {
    const double z = logits[i], t = target[i];
    s += std::max(z, 0.0) - z * t + std::log1p(std::exp(-std::abs(z)));
  }
  return s / logits.size();
}

// dlogits = (sigmoid(z) - t) / numel
void SigmoidCrossEntropy::Backward(Tensor* dlogits) {
  dlogits->Resize(logits_->shape());
  const float scale = 1.0f / logits_->size();
  for (int64_t i = 0; i < logits_->size(); ++i)
    (*dlogits)[i] = scale * (1.0f / (1.0f + std::exp(-(*logits_)[i])) - (*target_)[i]);
}

double MeanSquaredError::Forward(const Tensor& pred, const Tensor& target) {
  CHECK(pred.size() == target.size()) << "mse: " << pred.ShapeString() << " vs "
                                      << target.ShapeString();
  pred_ = &pred;
  target_ = &target;
  const float *a = pred.data(), *b = target.data();
  const double s = ParallelSum(pred.size(), [=](int64_t i) {
    const double d = double(a[i]) - b[i];
    return d * d;
  });
  return s / pred.size();
}

// dpred = 2 (pred - target) / numel
void MeanSquaredError::Backward(Tensor* dpred) {
  dpred->Resize(pred_->shape());
  const float scale = 2.0f / pred_->size();
  const float *a = pred_->data(), *b = target_->data();
  float* d = dpred->data();
  ParallelFor(pred_->size(), 8192, [=](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) d[i] = scale * (a[i] - b[i]);
  });
}

double IcaSparsity::Forward(const Tensor& pooled) {
  pooled_ = &pooled;
  const float* p = pooled.data();
  const double eps = eps_;
  const double s = ParallelSum(pooled.size(), [=](int64_t i) { return std::sqrt(eps + double(p[i]) * p[i]); });
  return lambda_ * s / pooled.dim(0);
}

void IcaSparsity::Backward(Tensor* dpooled) {
  const Tensor& p = *pooled_;
  dpooled->Resize(p.shape());
  const float scale = lambda_ / p.dim(0), eps = eps_;
  const float* x = p.data();
  float* d = dpooled->data();
  ParallelFor(p.size(), 8192, [=](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) d[i] = scale * x[i] / std::sqrt(eps + x[i] * x[i]);
  });
}

}  // namespace distbelief
