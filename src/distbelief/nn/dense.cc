#include "distbelief/nn/dense.h"

#include <algorithm>
#include <cmath>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"
#include "distbelief/tensor/blas.h"
#include "distbelief/tensor/vmath.h"

namespace distbelief {
namespace {

// Rows of a tensor whose last dimension is `d`.
int64_t Rows(const Tensor& t, int64_t d) {
  CHECK(t.ndim() >= 1 && t.dim(-1) == d) << "last dim of " << t.ShapeString() << " is not " << d;
  return t.size() / d;
}

Shape WithLastDim(const Shape& s, int64_t d) {
  Shape out = s;
  out.back() = d;
  return out;
}

constexpr int64_t kGrain = 16384;  // elementwise work below this stays on one thread

}  // namespace

// ---------------------------------------------------------------------------------------------
// Linear

Linear::Linear(const std::string& name, int64_t in, int64_t out, Random* rng, bool bias)
    : in_(in), out_(out), has_bias_(bias), w_(name + ".w", {out, in}), b_(name + ".b", {out}) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(in));
  for (float& v : w_.value.span()) v = rng->Uniform(-bound, bound);
  if (has_bias_)
    for (float& v : b_.value.span()) v = rng->Uniform(-bound, bound);
}

std::vector<Param*> Linear::params() {
  if (has_bias_) return {&w_, &b_};
  return {&w_};
}

// x (N, D) -> y (N, O) = x W^T + b
void Linear::Forward(const Tensor& x, Tensor* y) {
  const int64_t n = Rows(x, in_);
  x_ = &x;
  y->Resize(WithLastDim(x.shape(), out_));
  float* yd = y->data();
  if (has_bias_) {
    const float* b = b_.value.data();
    for (int64_t i = 0; i < n; ++i) std::copy(b, b + out_, yd + i * out_);
  }
  Gemm(false, true, n, out_, in_, 1.0f, x.data(), w_.value.data(), has_bias_ ? 1.0f : 0.0f, yd);
}

// dy (N, O): dW (O, D) += dy^T x;  db (O) += sum_n dy;  dx (N, D) = dy W
void Linear::Backward(const Tensor& dy, Tensor* dx) {
  const Tensor& x = *x_;
  const int64_t n = Rows(dy, out_);
  if (param_grads_) Gemm(true, false, out_, in_, n, 1.0f, dy.data(), x.data(), 1.0f, w_.grad.data());
  if (has_bias_ && param_grads_) {
    float* db = b_.grad.data();
    const float* g = dy.data();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < out_; ++o) db[o] += g[i * out_ + o];
  }
  if (dx) {
    dx->Resize(x.shape());
    Gemm(false, false, n, in_, out_, 1.0f, dy.data(), w_.value.data(), 0.0f, dx->data());
  }
}

// ---------------------------------------------------------------------------------------------
// Activations: sigmoid and tanh differentiate through their outputs, ReLU through its input.

std::string ActivationLayer::Kind() const {
  switch (f_) {
    case Activation::kSigmoid: return "sigmoid";
    case Activation::kTanh: return "tanh";
    case Activation::kRelu: return "relu";
    case Activation::kGelu: return "gelu";
  }
  return "?";
}

void ActivationLayer::Forward(const Tensor& x, Tensor* y) {
  x_ = &x;
  y->Resize(x.shape());
  const float* xd = x.data();
  float* yd = y->data();
  const Activation f = f_;
  if (f == Activation::kGelu) y_.Resize(x.shape());
  float* td = y_.data();
  ParallelFor(x.size(), kGrain, [&](int64_t lo, int64_t hi) {
    switch (f) {
      case Activation::kSigmoid:
        for (int64_t i = lo; i < hi; ++i) yd[i] = FastSigmoid(xd[i]);
        break;
      case Activation::kTanh:
        for (int64_t i = lo; i < hi; ++i) yd[i] = FastTanh(xd[i]);
        break;
      case Activation::kRelu:
        for (int64_t i = lo; i < hi; ++i) yd[i] = xd[i] > 0.0f ? xd[i] : 0.0f;
        break;
      case Activation::kGelu:  // 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
        for (int64_t i = lo; i < hi; ++i) {
          const float x = xd[i];
          td[i] = FastTanh(0.7978845608f * (x + 0.044715f * x * x * x));
          yd[i] = 0.5f * x * (1.0f + td[i]);
        }
        break;
    }
  });
  if (f_ == Activation::kSigmoid || f_ == Activation::kTanh) y_ = *y;
}

void ActivationLayer::Backward(const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  dx->Resize(dy.shape());
  const float* g = dy.data();
  float* d = dx->data();
  const float* xd = x_->data();
  const float* yd = y_.data();
  const Activation f = f_;
  ParallelFor(dy.size(), kGrain, [&](int64_t lo, int64_t hi) {
    switch (f) {
      case Activation::kSigmoid:  // s' = s (1 - s)
        for (int64_t i = lo; i < hi; ++i) d[i] = g[i] * yd[i] * (1.0f - yd[i]);
        break;
      case Activation::kTanh:  // tanh' = 1 - tanh^2
        for (int64_t i = lo; i < hi; ++i) d[i] = g[i] * (1.0f - yd[i] * yd[i]);
        break;
      case Activation::kRelu:
        for (int64_t i = lo; i < hi; ++i) d[i] = xd[i] > 0.0f ? g[i] : 0.0f;
        break;
      case Activation::kGelu:  // 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx
        for (int64_t i = lo; i < hi; ++i) {
          const float x = xd[i], t = yd[i];
          const float du = 0.7978845608f * (1.0f + 3.0f * 0.044715f * x * x);
          d[i] = g[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
        }
        break;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Maxout

// x (N, D) -> y (N, D/k)
void Maxout::Forward(const Tensor& x, Tensor* y) {
  const int64_t d = x.dim(-1);
  CHECK(d % k_ == 0) << "maxout: " << d << " features not divisible by " << k_;
  const int64_t groups = x.size() / k_;
  x_shape_ = x.shape();
  y->Resize(WithLastDim(x.shape(), d / k_));
  argmax_.resize(groups);
  const float* xd = x.data();
  for (int64_t g = 0; g < groups; ++g) {
    int32_t best = 0;
    for (int32_t j = 1; j < k_; ++j)
      if (xd[g * k_ + j] > xd[g * k_ + best]) best = j;
    argmax_[g] = best;
    (*y)[g] = xd[g * k_ + best];
  }
}

// dx is dy routed to the arg max of each group, zero elsewhere.
void Maxout::Backward(const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  dx->Resize(x_shape_);
  dx->Zero();
  for (int64_t g = 0; g < dy.size(); ++g) (*dx)[g * k_ + argmax_[g]] = dy[g];
}

// ---------------------------------------------------------------------------------------------
// Dropout

void Dropout::Forward(const Tensor& x, Tensor* y) {
  y->Resize(x.shape());
  if (!training_ || p_ == 0.0f) {
    mask_.Resize(x.shape()).Fill(1.0f);
    *y = x;
    return;
  }
  mask_.Resize(x.shape());
  const float keep = 1.0f / (1.0f - p_);
  // The mask is drawn serially so that it does not depend on the thread count.
  for (int64_t i = 0; i < x.size(); ++i) mask_[i] = rng_.Uniform() < p_ ? 0.0f : keep;
  for (int64_t i = 0; i < x.size(); ++i) (*y)[i] = x[i] * mask_[i];
}

void Dropout::Backward(const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  dx->Resize(dy.shape());
  for (int64_t i = 0; i < dy.size(); ++i) (*dx)[i] = dy[i] * mask_[i];
}

// ---------------------------------------------------------------------------------------------
// LayerNorm (llm.c's layernorm_forward / layernorm_backward, on rows of length D)

LayerNorm::LayerNorm(const std::string& name, int64_t dim, float eps)
    : dim_(dim), eps_(eps), gamma_(name + ".gamma", {dim}), beta_(name + ".beta", {dim}) {
  gamma_.value.Fill(1.0f);
}

// x (N, D) -> y (N, D)
void LayerNorm::Forward(const Tensor& x, Tensor* y) {
  const int64_t n = Rows(x, dim_);
  x_ = &x;
  y->Resize(x.shape());
  mean_.resize(n);
  rstd_.resize(n);
  const float* g = gamma_.value.data();
  const float* b = beta_.value.data();
  ParallelFor(n, 64, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float* xi = x.data() + i * dim_;
      float* yi = y->data() + i * dim_;
      float m = 0.0f;
      for (int64_t j = 0; j < dim_; ++j) m += xi[j];
      m /= dim_;
      float v = 0.0f;
      for (int64_t j = 0; j < dim_; ++j) v += (xi[j] - m) * (xi[j] - m);
      v /= dim_;
      const float rs = 1.0f / std::sqrt(v + eps_);
      for (int64_t j = 0; j < dim_; ++j) yi[j] = (xi[j] - m) * rs * g[j] + b[j];
      mean_[i] = m;
      rstd_[i] = rs;
    }
  });
}

// With xhat = (x - mean) rstd and dxhat = dy * gamma:
//   dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)); dgamma += dy xhat; dbeta += dy.
void LayerNorm::Backward(const Tensor& dy, Tensor* dx) {
  const int64_t n = Rows(dy, dim_);
  const float* g = gamma_.value.data();
  float* dg = gamma_.grad.data();
  float* db = beta_.grad.data();
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x_->data() + i * dim_;
    const float* gi = dy.data() + i * dim_;
    for (int64_t j = 0; j < dim_; ++j) {
      dg[j] += gi[j] * (xi[j] - mean_[i]) * rstd_[i];
      db[j] += gi[j];
    }
  }
  if (!dx) return;
  dx->Resize(dy.shape());
  ParallelFor(n, 64, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float* xi = x_->data() + i * dim_;
      const float* gi = dy.data() + i * dim_;
      float* di = dx->data() + i * dim_;
      float mean_dxhat = 0.0f, mean_dxhat_xhat = 0.0f;
      for (int64_t j = 0; j < dim_; ++j) {
        const float xhat = (xi[j] - mean_[i]) * rstd_[i];
        const float dxhat = gi[j] * g[j];
        mean_dxhat += dxhat;
        mean_dxhat_xhat += dxhat * xhat;
      }
      mean_dxhat /= dim_;
      mean_dxhat_xhat /= dim_;
      for (int64_t j = 0; j < dim_; ++j) {
        const float xhat = (xi[j] - mean_[i]) * rstd_[i];
        di[j] = rstd_[i] * (gi[j] * g[j] - mean_dxhat - xhat * mean_dxhat_xhat);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Embedding

Embedding::Embedding(const std::string& name, int64_t vocab, int64_t dim, int64_t max_positions,
                     Random* rng)
    : vocab_(vocab),
      dim_(dim),
      max_positions_(max_positions),
      table_(name + ".tokens", {vocab, dim}),
      positions_(name + ".positions", {std::max<int64_t>(max_positions, 1), dim}) {
  for (float& v : table_.value.span()) v = static_cast<float>(rng->Normal() * 0.02);
  for (float& v : positions_.value.span()) v = static_cast<float>(rng->Normal() * 0.01);
}

std::vector<Param*> Embedding::params() {
  if (max_positions_ > 0) return {&table_, &positions_};
  return {&table_};
}

// x (B, T) ids -> y (B, T, E) = table[id] (+ positions[t])
void Embedding::Forward(const Tensor& x, Tensor* y) {
  CHECK(x.ndim() == 2) << "embedding input must be (B, T), got " << x.ShapeString();
  const int64_t b = x.dim(0), t = x.dim(1);
  CHECK(max_positions_ == 0 || t <= max_positions_) << "sequence longer than max_positions";
  x_ = &x;
  y->Resize({b, t, dim_});
  for (int64_t i = 0; i < b * t; ++i) {
    const int64_t id = static_cast<int64_t>(x[i]);
    CHECK(id >= 0 && id < vocab_) << "token id " << id << " outside vocabulary " << vocab_;
    const float* row = table_.value.data() + id * dim_;
    const float* pos = positions_.value.data() + (i % t) * dim_;
    float* out = y->data() + i * dim_;
    for (int64_t e = 0; e < dim_; ++e) out[e] = row[e] + (max_positions_ > 0 ? pos[e] : 0.0f);
  }
}

// dtable[id] += dy[b, t];  dpositions[t] += dy[b, t]
void Embedding::Backward(const Tensor& dy, Tensor* dx) {
  CHECK(dx == nullptr) << "embedding has no input gradient";
  const int64_t t = x_->dim(1);
  for (int64_t i = 0; i < x_->size(); ++i) {
    const int64_t id = static_cast<int64_t>((*x_)[i]);
    const float* g = dy.data() + i * dim_;
    float* row = table_.grad.data() + id * dim_;
    float* pos = positions_.grad.data() + (i % t) * dim_;
    for (int64_t e = 0; e < dim_; ++e) row[e] += g[e];
    if (max_positions_ > 0)
      for (int64_t e = 0; e < dim_; ++e) pos[e] += g[e];
  }
}

}  // namespace distbelief
