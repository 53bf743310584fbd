#include "distbelief/nn/sequence.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"
#include "distbelief/tensor/blas.h"
#include "distbelief/tensor/vmath.h"

namespace distbelief {

// ---------------------------------------------------------------------------------------------
// Lstm

Lstm::Lstm(const std::string& name, int64_t in, int64_t hidden, Random* rng)
    : in_(in),
      h_(hidden),
      wx_(name + ".wx", {4 * hidden, in}),
      wh_(name + ".wh", {4 * hidden, hidden}),
      b_(name + ".b", {4 * hidden}) {
  const float bound = 1.0f / std::sqrt(static_cast<float>(hidden));
  for (float& v : wx_.value.span()) v = rng->Uniform(-bound, bound);
  for (float& v : wh_.value.span()) v = rng->Uniform(-bound, bound);
  for (int64_t j = hidden; j < 2 * hidden; ++j) b_.value[j] = 1.0f;  // forget gate bias
}

void Lstm::SetInitialState(const Tensor& h0, const Tensor& c0) {
  h0_ = h0;
  c0_ = c0;
  has_init_ = true;
}

// gates (B, T, 4H) = x Wx^T + b, then per step t: gates_t += h_{t-1} Wh^T and
//   i, f, o = sigmoid, g = tanh;  c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
void Lstm::Forward(const Tensor& x, Tensor* y) {
  CHECK(x.ndim() == 3 && x.dim(2) == in_) << "lstm: input " << x.ShapeString();
  x_ = &x;
  const int64_t nb = x.dim(0), nt = x.dim(1), h = h_, g4 = 4 * h_;
  gates_.Resize({nb, nt, g4});
  c_.Resize({nb, nt, h});
  tanh_c_.Resize({nb, nt, h});
  y->Resize({nb, nt, h});
  float* gd = gates_.data();
  for (int64_t r = 0; r < nb * nt; ++r) std::memcpy(gd + r * g4, b_.value.data(), g4 * sizeof(float));
  Gemm(false, true, nb * nt, g4, in_, 1.0f, x.data(), wx_.value.data(), 1.0f, gd);
  if (has_init_) {
    CHECK(h0_.dim(0) == nb && h0_.dim(1) == h) << "lstm: initial state shape";
  }
  for (int64_t t = 0; t < nt; ++t) {
    // Recurrent term: rows b of gates at step t (stride T 4H) += h_{t-1} (B, H) Wh^T.
    if (t > 0)
      Gemm(false, true, nb, g4, h, 1.0f, y->data() + (t - 1) * h, nt * h, wh_.value.data(), h,
           1.0f, gd + t * g4, nt * g4);
    else if (has_init_)
      Gemm(false, true, nb, g4, h, 1.0f, h0_.data(), h, wh_.value.data(), h, 1.0f, gd, nt * g4);
    ParallelFor(nb, 8, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        float* gt = gd + (b * nt + t) * g4;
        const float* cprev = t > 0 ? c_.data() + (b * nt + t - 1) * h
                                   : (has_init_ ? c0_.data() + b * h : nullptr);
        float* ct = c_.data() + (b * nt + t) * h;
        float* tc = tanh_c_.data() + (b * nt + t) * h;
        float* ht = y->data() + (b * nt + t) * h;
        for (int64_t j = 0; j < h; ++j) {
          const float i = FastSigmoid(gt[j]);
          const float f = FastSigmoid(gt[h + j]);
          const float g = FastTanh(gt[2 * h + j]);
          const float o = FastSigmoid(gt[3 * h + j]);
          gt[j] = i;
          gt[h + j] = f;
          gt[2 * h + j] = g;
          gt[3 * h + j] = o;
          ct[j] = f * (cprev ? cprev[j] : 0.0f) + i * g;
          tc[j] = FastTanh(ct[j]);
          ht[j] = o * tc[j];
        }
      }
    });
  }
  c_last_.Resize({nb, h});
  for (int64_t b = 0; b < nb; ++b)
    std::memcpy(c_last_.data() + b * h, c_.data() + (b * nt + nt - 1) * h, h * sizeof(float));
  h_seq_ = *y;
  has_dc_last_ = false;
}

// Backpropagation through time; dgates (B, T, 4H) are pre-activation gradients.
//   do = dh tanh(c) o(1-o);  dc = dc_next + dh o (1 - tanh^2 c)
//   di = dc g i(1-i);  dg = dc i (1-g^2);  df = dc c_prev f(1-f);  dc_next = dc f
//   dh_prev = dgates_t Wh;  dWh += dgates_t^T h_prev;  then dWx += dG^T x, db += sum dG, dx = dG Wx
void Lstm::Backward(const Tensor& dy, Tensor* dx) {
  const Tensor& x = *x_;
  const int64_t nb = x.dim(0), nt = x.dim(1), h = h_, g4 = 4 * h_;
  Tensor dgates({nb, nt, g4});
  Tensor dh_next({nb, h}), dc_next({nb, h});
  if (has_dc_last_) dc_next = dc_last_;
  for (int64_t t = nt - 1; t >= 0; --t) {
    ParallelFor(nb, 8, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        const float* gt = gates_.data() + (b * nt + t) * g4;
        const float* tc = tanh_c_.data() + (b * nt + t) * h;
        const float* cprev = t > 0 ? c_.data() + (b * nt + t - 1) * h
                                   : (has_init_ ? c0_.data() + b * h : nullptr);
        const float* dyt = dy.data() + (b * nt + t) * h;
        float* dhn = dh_next.data() + b * h;
        float* dcn = dc_next.data() + b * h;
        float* dg = dgates.data() + (b * nt + t) * g4;
        for (int64_t j = 0; j < h; ++j) {
          const float i = gt[j], f = gt[h + j], g = gt[2 * h + j], o = gt[3 * h + j];
          const float dh = dyt[j] + dhn[j];
          const float dc = dcn[j] + dh * o * (1.0f - tc[j] * tc[j]);
          dg[j] = dc * g * i * (1.0f - i);
          dg[h + j] = dc * (cprev ? cprev[j] : 0.0f) * f * (1.0f - f);
          dg[2 * h + j] = dc * i * (1.0f - g * g);
          dg[3 * h + j] = dh * tc[j] * o * (1.0f - o);
          dcn[j] = dc * f;
        }
      }
    });
    // dh_prev (B, H) = dgates_t (B, 4H) Wh (4H, H)
    Gemm(false, false, nb, h, g4, 1.0f, dgates.data() + t * g4, nt * g4, wh_.value.data(), h, 0.0f,
         dh_next.data(), h);
    const float* hprev = t > 0 ? h_seq_.data() + (t - 1) * h : (has_init_ ? h0_.data() : nullptr);
    if (hprev)
      Gemm(true, false, g4, h, nb, 1.0f, dgates.data() + t * g4, nt * g4, hprev,
           t > 0 ? nt * h : h, 1.0f, wh_.grad.data(), h);
  }
  dh0_ = dh_next;
  dc0_ = dc_next;
  Gemm(true, false, g4, in_, nb * nt, 1.0f, dgates.data(), x.data(), 1.0f, wx_.grad.data());
  for (int64_t r = 0; r < nb * nt; ++r)
    for (int64_t j = 0; j < g4; ++j) b_.grad[j] += dgates[r * g4 + j];
  if (dx) {
    dx->Resize(x.shape());
    Gemm(false, false, nb * nt, in_, g4, 1.0f, dgates.data(), wx_.value.data(), 0.0f, dx->data());
  }
}

// ---------------------------------------------------------------------------------------------
// CausalSelfAttention

CausalSelfAttention::CausalSelfAttention(const std::string& name, int64_t width, int64_t heads,
                                         Random* rng)
    : c_(width),
      nh_(heads),
      qkv_proj_(name + ".qkv", width, 3 * width, rng),
      out_proj_(name + ".out", width, width, rng) {
  CHECK(width % heads == 0) << "attention: width " << width << " not divisible by " << heads;
}

std::vector<Param*> CausalSelfAttention::params() {
  auto p = qkv_proj_.params();
  for (Param* q : out_proj_.params()) p.push_back(q);
  return p;
}

// Per (b, head): S (T, T) = Q K^T / sqrt(HS); P = causal softmax(S); O (T, HS) = P V.
// Causal in the work too: query rows go in blocks of kAttentionBlock, each against the keys up to
// its own last row only, so about half of the T x T square is computed and stored (the part of
// a row past its block is never written nor read; within the diagonal block it is zero). Each
// (b, head) pair is one task on one thread, its products serial (oneDNN runs single-threaded
// inside a parallel region), so the result does not depend on the thread count.
namespace {
constexpr int64_t kAttentionBlock = 64;
}

void CausalSelfAttention::Forward(const Tensor& x, Tensor* y) {
  CHECK(x.ndim() == 3 && x.dim(2) == c_) << "attention: input " << x.ShapeString();
  const int64_t nb = x.dim(0), nt = x.dim(1), c = c_, hs = c_ / nh_, c3 = 3 * c_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  qkv_proj_.Forward(x, &qkv_);
  att_.Resize({nb, nh_, nt, nt});
  heads_.Resize({nb, nt, c});
  ParallelFor(nb * nh_, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t b = i / nh_, hd = i % nh_;
      const float* q = qkv_.data() + b * nt * c3 + hd * hs;  // k = q + c, v = q + 2c, rows c3 apart
      float* p = att_.data() + i * nt * nt;
      float* o = heads_.data() + b * nt * c + hd * hs;
      for (int64_t r0 = 0; r0 < nt; r0 += kAttentionBlock) {
        const int64_t r1 = std::min(nt, r0 + kAttentionBlock);
        Gemm(false, true, r1 - r0, r1, hs, scale, q + r0 * c3, c3, q + c, c3, 0.0f, p + r0 * nt, nt);
        for (int64_t t = r0; t < r1; ++t) {
          float* row = p + t * nt;
          float mx = row[0];
          for (int64_t u = 1; u <= t; ++u) mx = std::max(mx, row[u]);
          float sum = 0.0f;
          for (int64_t u = 0; u <= t; ++u) {
            row[u] = FastExp(row[u] - mx);
            sum += row[u];
          }
          const float inv = 1.0f / sum;
          for (int64_t u = 0; u <= t; ++u) row[u] *= inv;
          for (int64_t u = t + 1; u < r1; ++u) row[u] = 0.0f;
        }
        Gemm(false, false, r1 - r0, hs, r1, 1.0f, p + r0 * nt, nt, q + 2 * c, c3, 0.0f, o + r0 * c, c);
      }
    }
  });
  out_proj_.Forward(heads_, y);
}

void CausalSelfAttention::Step(const Tensor& x, int64_t pos, KvCache* cache, Tensor* y) {
  const int64_t nb = x.dim(0), c = c_, hs = c_ / nh_, tmax = cache->k.dim(1);
  CHECK(x.ndim() == 2 && x.dim(1) == c && cache->k.dim(0) == nb && pos < tmax)
      << "attention step: input " << x.ShapeString() << ", cache " << cache->k.ShapeString() << ", position " << pos;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  qkv_proj_.Forward(x, &qkv_);  // (B, 3C)
  heads_.Resize({nb, c});
  ParallelFor(nb * nh_, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> p(static_cast<size_t>(pos + 1));
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t b = i / nh_, hd = i % nh_;
      const float* q = qkv_.data() + b * 3 * c + hd * hs;
      float* kc = cache->k.data() + b * tmax * c + hd * hs;
      float* vc = cache->v.data() + b * tmax * c + hd * hs;
      std::memcpy(kc + pos * c, q + c, hs * sizeof(float));
      std::memcpy(vc + pos * c, q + 2 * c, hs * sizeof(float));
      float mx = -INFINITY;
      for (int64_t u = 0; u <= pos; ++u) {
        float d = 0.0f;
        for (int64_t e = 0; e < hs; ++e) d += q[e] * kc[u * c + e];
        p[u] = d * scale;
        mx = std::max(mx, p[u]);
      }
      float sum = 0.0f;
      for (int64_t u = 0; u <= pos; ++u) sum += (p[u] = std::exp(p[u] - mx));
      float* o = heads_.data() + b * c + hd * hs;
      for (int64_t e = 0; e < hs; ++e) o[e] = 0.0f;
      for (int64_t u = 0; u <= pos; ++u) {
        const float w = p[u] / sum;
        for (int64_t e = 0; e < hs; ++e) o[e] += w * vc[u * c + e];
      }
    }
  });
  out_proj_.Forward(heads_, y);
}

// dP = dO V^T; dV = P^T dO; dS = P (dP - rowsum(dP P)); dQ = dS K / sqrt(HS); dK = dS^T Q / sqrt(HS)
// in the forward's blocks: dP, dS and dQ by blocks of query rows (keys up to the block's last
// row), dV and dK by the same blocks of keys (queries from the block's first row on).
void CausalSelfAttention::Backward(const Tensor& dy, Tensor* dx) {
  const int64_t nb = qkv_.dim(0), nt = qkv_.dim(1), c = c_, hs = c_ / nh_, c3 = 3 * c_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  Tensor dheads;
  out_proj_.Backward(dy, &dheads);
  Tensor dqkv({nb, nt, c3});
  ParallelFor(nb * nh_, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> ds_buf(static_cast<size_t>(nt * nt));
    float* ds = ds_buf.data();
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t b = i / nh_, hd = i % nh_;
      const float* q = qkv_.data() + b * nt * c3 + hd * hs;
      const float* p = att_.data() + i * nt * nt;
      const float* d_o = dheads.data() + b * nt * c + hd * hs;
      float* dq = dqkv.data() + b * nt * c3 + hd * hs;  // dk = dq + c, dv = dq + 2c
      for (int64_t r0 = 0; r0 < nt; r0 += kAttentionBlock) {
        const int64_t r1 = std::min(nt, r0 + kAttentionBlock);
        Gemm(false, true, r1 - r0, r1, hs, 1.0f, d_o + r0 * c, c, q + 2 * c, c3, 0.0f, ds + r0 * nt, nt);
        for (int64_t t = r0; t < r1; ++t) {
          float* row = ds + t * nt;
          const float* pr = p + t * nt;
          float dot = 0.0f;
          for (int64_t u = 0; u <= t; ++u) dot += row[u] * pr[u];
          for (int64_t u = 0; u <= t; ++u) row[u] = pr[u] * (row[u] - dot);
          for (int64_t u = t + 1; u < r1; ++u) row[u] = 0.0f;
        }
        Gemm(false, false, r1 - r0, hs, r1, scale, ds + r0 * nt, nt, q + c, c3, 0.0f, dq + r0 * c3, c3);
      }
      for (int64_t k0 = 0; k0 < nt; k0 += kAttentionBlock) {
        const int64_t k1 = std::min(nt, k0 + kAttentionBlock);
        Gemm(true, false, k1 - k0, hs, nt - k0, 1.0f, p + k0 * nt + k0, nt, d_o + k0 * c, c, 0.0f,
             dq + 2 * c + k0 * c3, c3);
        Gemm(true, false, k1 - k0, hs, nt - k0, scale, ds + k0 * nt + k0, nt, q + k0 * c3, c3, 0.0f,
             dq + c + k0 * c3, c3);
      }
    }
  });
  qkv_proj_.Backward(dqkv, dx);
}

}  // namespace distbelief
