#include "distbelief/nn/spatial.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"
#include "distbelief/tensor/blas.h"

namespace distbelief {
namespace {

// One vector register of fp32 lanes: 16 with AVX-512, 8 with AVX2 (the register blocking below
// is sized so the accumulators fit in the 32 or 16 registers). The unaligned alias is for loads.
#ifdef __AVX512F__
constexpr int kLanes = 16;
constexpr int kBlockK = 8;
#else
constexpr int kLanes = 8;
constexpr int kBlockK = 4;
#endif
typedef float vf __attribute__((vector_size(kLanes * 4)));
typedef float vfu __attribute__((vector_size(kLanes * 4), aligned(4)));
inline vf Load(const float* p) { return *reinterpret_cast<const vfu*>(p); }
inline void Store(float* p, vf v) { *reinterpret_cast<vfu*>(p) = v; }
inline float HSum(vf v) {
  float s = 0.0f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

int64_t RoundUp16(int64_t n) { return (n + 15) / 16 * 16; }

// Y[b][k] = dot(P[b], W[k]) for b in [0, NB), k in [0, NK): rows of length 16 * n16, leading
// dimension ld. The NB x NK accumulators stay in registers.
template <int NB, int NK>
void DotBlock(int64_t n16, int64_t ld, const float* p, const float* w, float* y, int64_t ldy) {
  vf acc[NB][NK] = {};
  for (int64_t j = 0; j < n16 * 16; j += kLanes) {
    vf pv[NB];
    for (int b = 0; b < NB; ++b) pv[b] = Load(p + b * ld + j);
    for (int k = 0; k < NK; ++k) {
      const vf wv = Load(w + k * ld + j);
      for (int b = 0; b < NB; ++b) acc[b][k] += pv[b] * wv;
    }
  }
  for (int b = 0; b < NB; ++b)
    for (int k = 0; k < NK; ++k) y[b * ldy + k] = HSum(acc[b][k]);
}

template <int NB>
void DotBlockK(int nk, int64_t n16, int64_t ld, const float* p, const float* w, float* y,
               int64_t ldy) {
  switch (nk) {
    case 1: return DotBlock<NB, 1>(n16, ld, p, w, y, ldy);
    case 2: return DotBlock<NB, 2>(n16, ld, p, w, y, ldy);
    case 3: return DotBlock<NB, 3>(n16, ld, p, w, y, ldy);
    case 4: return DotBlock<NB, 4>(n16, ld, p, w, y, ldy);
#ifdef __AVX512F__
    case 5: return DotBlock<NB, 5>(n16, ld, p, w, y, ldy);
    case 6: return DotBlock<NB, 6>(n16, ld, p, w, y, ldy);
    case 7: return DotBlock<NB, 7>(n16, ld, p, w, y, ldy);
#endif
    default: return DotBlock<NB, kBlockK>(n16, ld, p, w, y, ldy);
  }
}

// Y (B, K) = P (B, n) W (K, n)^T with n = 16 * n16 and leading dimension ld for P and W.
void SmallGemmNT(int64_t nb, int64_t nk, int64_t n16, int64_t ld, const float* p, const float* w,
                 float* y) {
  for (int64_t b = 0; b < nb; b += 2) {
    for (int64_t k = 0; k < nk; k += kBlockK) {
      const int kk = static_cast<int>(std::min<int64_t>(kBlockK, nk - k));
      if (nb - b >= 2)
        DotBlockK<2>(kk, n16, ld, p + b * ld, w + k * ld, y + b * nk + k, nk);
      else
        DotBlockK<1>(kk, n16, ld, p + b * ld, w + k * ld, y + b * nk + k, nk);
    }
  }
}

// G (K, n) += D (B, K)^T P (B, n): four rows of G held in registers while the batch streams.
void SmallGemmTN(int64_t nb, int64_t nk, int64_t n, const float* d, const float* p, float* g) {
  int64_t k = 0;
  for (; k + 4 <= nk; k += 4) {
    for (int64_t j = 0; j < n; j += kLanes) {
      vf acc[4];
      for (int q = 0; q < 4; ++q) acc[q] = Load(g + (k + q) * n + j);
      for (int64_t b = 0; b < nb; ++b) {
        const vf pv = Load(p + b * n + j);
        for (int q = 0; q < 4; ++q) acc[q] += d[b * nk + k + q] * pv;
      }
      for (int q = 0; q < 4; ++q) Store(g + (k + q) * n + j, acc[q]);
    }
  }
  for (; k < nk; ++k) {
    for (int64_t j = 0; j < n; j += kLanes) {
      vf acc = Load(g + k * n + j);
      for (int64_t b = 0; b < nb; ++b) acc += d[b * nk + k] * Load(p + b * n + j);
      Store(g + k * n + j, acc);
    }
  }
}

// Q (B, n) = D (B, K) W (K, n): two rows of Q in registers, W streamed once per pair.
void SmallGemmNN(int64_t nb, int64_t nk, int64_t n, const float* d, const float* w, float* q) {
  for (int64_t b = 0; b < nb; b += 2) {
    const bool two = nb - b >= 2;
    for (int64_t j = 0; j < n; j += kLanes) {
      vf a0 = {}, a1 = {};
      for (int64_t k = 0; k < nk; ++k) {
        const vf wv = Load(w + k * n + j);
        a0 += d[b * nk + k] * wv;
        if (two) a1 += d[(b + 1) * nk + k] * wv;
      }
      Store(q + b * n + j, a0);
      if (two) Store(q + (b + 1) * n + j, a1);
    }
  }
}

// Per-thread scratch that grows as needed and is reused across calls.
std::vector<float>& Scratch(int slot) {
  thread_local std::vector<float> buffers[4];
  return buffers[slot];
}
float* ScratchZeroed(int slot, int64_t n) {
  auto& v = Scratch(slot);
  if (static_cast<int64_t>(v.size()) < n + 16) v.resize(n + 16);
  std::memset(v.data(), 0, n * sizeof(float));
  return v.data();
}
// As ScratchZeroed, but only zeroed when rows of `used` floats are padded to `ld`: the padding
// must be zero, everything else is overwritten by the caller.
float* ScratchRows(int slot, int64_t rows, int64_t used, int64_t ld) {
  if (used == ld) {
    auto& v = Scratch(slot);
    if (static_cast<int64_t>(v.size()) < rows * ld + 16) v.resize(rows * ld + 16);
    return v.data();
  }
  return ScratchZeroed(slot, rows * ld);
}
inline void CopyRow(float* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Locally connected kernels, shared by LocallyConnected2d and its transpose.
// Geometry: image (B, C, H, W), code (B, K, OH, OW), untied weights W (OH OW, K, C F F).
// P_l(img) (B, CFF) is the field of location l in every image.

namespace {

struct LcGeometry {
  int64_t b, c, h, w, k, f, s, oh, ow;
  int64_t cff() const { return c * f * f; }
  int64_t locs() const { return oh * ow; }
};

// P (B, ld) = the fields of location l, zero-padded from CFF to ld.
void GatherFields(const LcGeometry& g, const float* img, int64_t l, int64_t b_lo, int64_t b_hi,
                  int64_t ld, float* p) {
  const int64_t oy = l / g.ow, ox = l % g.ow;
  for (int64_t b = b_lo; b < b_hi; ++b)
    for (int64_t ci = 0; ci < g.c; ++ci)
      for (int64_t fy = 0; fy < g.f; ++fy)
        CopyRow(p + (b - b_lo) * ld + (ci * g.f + fy) * g.f,
                img + ((b * g.c + ci) * g.h + oy * g.s + fy) * g.w + ox * g.s, g.f);
}

// W_l as (K, ld) rows: the weights themselves when CFF is a multiple of 16, else a zero-padded
// copy in scratch slot 1.
const float* WeightsAt(const LcGeometry& g, const float* w, int64_t l, int64_t ld) {
  const int64_t cff = g.cff();
  if (cff == ld) return w + l * g.k * cff;
  float* wl = ScratchZeroed(1, g.k * ld);
  for (int64_t k = 0; k < g.k; ++k) CopyRow(wl + k * ld, w + (l * g.k + k) * cff, cff);
  return wl;
}

// code (B, K, OH, OW) = P_l(img) W_l^T (+ bias (K, OH OW) when not null). Locations over threads.
void LcImageToCode(const LcGeometry& g, const float* img, const float* w, const float* bias,
                   float* code) {
  const int64_t ld = RoundUp16(g.cff()), locs = g.locs();
  ParallelFor(locs, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t l = lo; l < hi; ++l) {
      float* p = ScratchRows(0, g.b, g.cff(), ld);
      float* yl = ScratchZeroed(2, g.b * g.k);
      GatherFields(g, img, l, 0, g.b, ld, p);
      const float* wl = WeightsAt(g, w, l, ld);
      SmallGemmNT(g.b, g.k, ld / 16, ld, p, wl, yl);
      for (int64_t b = 0; b < g.b; ++b)
        for (int64_t k = 0; k < g.k; ++k)
          code[(b * g.k + k) * locs + l] = yl[b * g.k + k] + (bias ? bias[k * locs + l] : 0.0f);
    }
  });
}

// img (B, C, H, W) = sum_l scatter(code_l W_l): the transpose of LcImageToCode (overwrites img).
// Images over threads, since fields of different locations overlap.
void LcCodeToImage(const LcGeometry& g, const float* code, const float* w, float* img) {
  const int64_t ld = RoundUp16(g.cff()), locs = g.locs();
  std::memset(img, 0, g.b * g.c * g.h * g.w * sizeof(float));
  ParallelFor(g.b, 1, [&](int64_t b_lo, int64_t b_hi) {
    const int64_t mb = b_hi - b_lo;
    for (int64_t l = 0; l < locs; ++l) {
      const int64_t oy = l / g.ow, ox = l % g.ow;
      float* cl = ScratchZeroed(2, mb * g.k);
      float* dp = ScratchRows(3, mb, ld, ld);
      const float* wl = WeightsAt(g, w, l, ld);
      for (int64_t b = 0; b < mb; ++b)
        for (int64_t k = 0; k < g.k; ++k) cl[b * g.k + k] = code[((b_lo + b) * g.k + k) * locs + l];
      SmallGemmNN(mb, g.k, ld, cl, wl, dp);
      for (int64_t b = 0; b < mb; ++b)
        for (int64_t ci = 0; ci < g.c; ++ci)
          for (int64_t fy = 0; fy < g.f; ++fy) {
            float* dst = img + (((b_lo + b) * g.c + ci) * g.h + oy * g.s + fy) * g.w + ox * g.s;
            const float* src = dp + b * ld + (ci * g.f + fy) * g.f;
            for (int64_t fx = 0; fx < g.f; ++fx) dst[fx] += src[fx];
          }
    }
  });
}

// dW_l (K, CFF) += code_l^T P_l(img); dbias (K, OH OW) += sum_b code_l when not null.
// Locations over threads.
void LcWeightGrad(const LcGeometry& g, const float* img, const float* code, float* dw,
                  float* dbias) {
  const int64_t ld = RoundUp16(g.cff()), locs = g.locs(), cff = g.cff();
  ParallelFor(locs, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t l = lo; l < hi; ++l) {
      float* p = ScratchRows(0, g.b, g.cff(), ld);
      float* cl = ScratchZeroed(2, g.b * g.k);
      GatherFields(g, img, l, 0, g.b, ld, p);
      for (int64_t b = 0; b < g.b; ++b)
        for (int64_t k = 0; k < g.k; ++k) cl[b * g.k + k] = code[(b * g.k + k) * locs + l];
      float* dst = dw + l * g.k * cff;
      if (ld == cff) {
        SmallGemmTN(g.b, g.k, ld, cl, p, dst);  // accumulate straight into the gradient
      } else {
        float* dwl = ScratchZeroed(1, g.k * ld);
        SmallGemmTN(g.b, g.k, ld, cl, p, dwl);
        for (int64_t k = 0; k < g.k; ++k)
          for (int64_t j = 0; j < cff; ++j) dst[k * cff + j] += dwl[k * ld + j];
      }
      if (dbias)
        for (int64_t k = 0; k < g.k; ++k) {
          float s = 0.0f;
          for (int64_t b = 0; b < g.b; ++b) s += cl[b * g.k + k];
          dbias[k * locs + l] += s;
        }
    }
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// LocallyConnected2d

LocallyConnected2d::LocallyConnected2d(const std::string& name, SpatialShape in, int64_t maps,
                                       int64_t field, int64_t stride, Random* rng, bool bias)
    : in_(in),
      k_(maps),
      f_(field),
      s_(stride),
      oh_((in.h - field) / stride + 1),
      ow_((in.w - field) / stride + 1),
      has_bias_(bias),
      w_(name + ".w", {oh_, ow_, maps, in.c, field, field}),
      b_(name + ".b", {maps, oh_, ow_}) {
  CHECK(field <= in.h && field <= in.w && stride >= 1) << "locally connected: bad geometry";
  const float bound = 1.0f / std::sqrt(static_cast<float>(in.c * field * field));
  for (float& v : w_.value.span()) v = rng->Uniform(-bound, bound);
}

std::vector<Param*> LocallyConnected2d::params() {
  if (has_bias_) return {&w_, &b_};
  return {&w_};
}

// x (B, C, H, W) -> y (B, K, OH, OW): y_l = P_l(x) W_l^T + b_l
void LocallyConnected2d::Forward(const Tensor& x, Tensor* y) {
  CHECK(x.ndim() == 4 && x.dim(1) == in_.c && x.dim(2) == in_.h && x.dim(3) == in_.w)
      << "locally connected: input " << x.ShapeString();
  x_ = &x;
  y->Resize({x.dim(0), k_, oh_, ow_});
  const LcGeometry g{x.dim(0), in_.c, in_.h, in_.w, k_, f_, s_, oh_, ow_};
  LcImageToCode(g, x.data(), w_.value.data(), has_bias_ ? b_.value.data() : nullptr, y->data());
}

// dW_l += dy_l^T P_l(x); db_l += sum_b dy_l; dx = sum_l scatter(dy_l W_l)
void LocallyConnected2d::Backward(const Tensor& dy, Tensor* dx) {
  const Tensor& x = *x_;
  const LcGeometry g{x.dim(0), in_.c, in_.h, in_.w, k_, f_, s_, oh_, ow_};
  LcWeightGrad(g, x.data(), dy.data(), w_.grad.data(), has_bias_ ? b_.grad.data() : nullptr);
  if (!dx) return;
  dx->Resize(x.shape());
  LcCodeToImage(g, dy.data(), w_.value.data(), dx->data());
}

// ---------------------------------------------------------------------------------------------
// LocallyConnectedTranspose2d

LocallyConnectedTranspose2d::LocallyConnectedTranspose2d(const std::string& name, SpatialShape out,
                                                         int64_t maps, int64_t field,
                                                         int64_t stride, Random* rng)
    : out_(out),
      k_(maps),
      f_(field),
      s_(stride),
      oh_((out.h - field) / stride + 1),
      ow_((out.w - field) / stride + 1),
      w_(name + ".w", {oh_, ow_, maps, out.c, field, field}),
      b_(name + ".b", {out.c, out.h, out.w}) {
  CHECK(field <= out.h && field <= out.w && stride >= 1) << "locally connected: bad geometry";
  const float bound = 1.0f / std::sqrt(static_cast<float>(maps));
  for (float& v : w_.value.span()) v = rng->Uniform(-bound, bound) / field;
}

// x (B, K, OH, OW) -> y (B, C, H, W) = sum_l scatter(x_l W_l) + b
void LocallyConnectedTranspose2d::Forward(const Tensor& x, Tensor* y) {
  CHECK(x.ndim() == 4 && x.dim(1) == k_ && x.dim(2) == oh_ && x.dim(3) == ow_)
      << "locally connected transpose: input " << x.ShapeString();
  x_ = &x;
  const LcGeometry g{x.dim(0), out_.c, out_.h, out_.w, k_, f_, s_, oh_, ow_};
  y->Resize({x.dim(0), out_.c, out_.h, out_.w});
  LcCodeToImage(g, x.data(), w_.value.data(), y->data());
  const int64_t img = out_.c * out_.h * out_.w;
  for (int64_t b = 0; b < x.dim(0); ++b)
    for (int64_t i = 0; i < img; ++i) (*y)[b * img + i] += b_.value[i];
}

// dW_l += x_l^T P_l(dy); db += sum_b dy; dx_l = P_l(dy) W_l^T
void LocallyConnectedTranspose2d::Backward(const Tensor& dy, Tensor* dx) {
  const Tensor& x = *x_;
  const LcGeometry g{x.dim(0), out_.c, out_.h, out_.w, k_, f_, s_, oh_, ow_};
  LcWeightGrad(g, dy.data(), x.data(), w_.grad.data(), nullptr);
  const int64_t img = out_.c * out_.h * out_.w;
  for (int64_t b = 0; b < x.dim(0); ++b)
    for (int64_t i = 0; i < img; ++i) b_.grad[i] += dy[b * img + i];
  if (!dx) return;
  dx->Resize(x.shape());
  LcImageToCode(g, dy.data(), w_.value.data(), nullptr, dx->data());
}

// ---------------------------------------------------------------------------------------------
// Conv2d

Conv2d::Conv2d(const std::string& name, SpatialShape in, int64_t maps, int64_t field,
               int64_t stride, int64_t pad, Random* rng)
    : in_(in),
      k_(maps),
      f_(field),
      s_(stride),
      pad_(pad),
      oh_((in.h + 2 * pad - field) / stride + 1),
      ow_((in.w + 2 * pad - field) / stride + 1),
      w_(name + ".w", {maps, in.c, field, field}),
      b_(name + ".b", {maps}) {
  CHECK(oh_ >= 1 && ow_ >= 1) << "conv2d: bad geometry";
  const float bound = 1.0f / std::sqrt(static_cast<float>(in.c * field * field));
  for (float& v : w_.value.span()) v = rng->Uniform(-bound, bound);
  for (float& v : b_.value.span()) v = rng->Uniform(-bound, bound);
}

namespace {
// cols (C F F, OH OW) from one image (C, H, W), zero outside the image. Rows over threads.
void Im2Col(const float* img, int64_t c, int64_t h, int64_t w, int64_t f, int64_t s, int64_t pad,
            int64_t oh, int64_t ow, float* cols) {
  ParallelFor(c * f * f, 4, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t ci = r / (f * f), fy = (r / f) % f, fx = r % f;
      float* out = cols + r * oh * ow;
      for (int64_t oy = 0; oy < oh; ++oy) {
        const int64_t iy = oy * s + fy - pad;
        for (int64_t ox = 0; ox < ow; ++ox) {
          const int64_t ix = ox * s + fx - pad;
          out[oy * ow + ox] =
              (iy >= 0 && iy < h && ix >= 0 && ix < w) ? img[(ci * h + iy) * w + ix] : 0.0f;
        }
      }
    }
  });
}
// The adjoint of Im2Col: adds cols back into the image. Serial per image: fields overlap.
void Col2Im(const float* cols, int64_t c, int64_t h, int64_t w, int64_t f, int64_t s, int64_t pad,
            int64_t oh, int64_t ow, float* img) {
  for (int64_t r = 0; r < c * f * f; ++r) {
    const int64_t ci = r / (f * f), fy = (r / f) % f, fx = r % f;
    const float* in = cols + r * oh * ow;
    for (int64_t oy = 0; oy < oh; ++oy) {
      const int64_t iy = oy * s + fy - pad;
      if (iy < 0 || iy >= h) continue;
      for (int64_t ox = 0; ox < ow; ++ox) {
        const int64_t ix = ox * s + fx - pad;
        if (ix >= 0 && ix < w) img[(ci * h + iy) * w + ix] += in[oy * ow + ox];
      }
    }
  }
}
}  // namespace

// Per image: y_b (K, OH OW) = W (K, CFF) cols_b (CFF, OH OW) + b
void Conv2d::Forward(const Tensor& x, Tensor* y) {
  CHECK(x.ndim() == 4 && x.dim(1) == in_.c && x.dim(2) == in_.h && x.dim(3) == in_.w)
      << "conv2d: input " << x.ShapeString();
  x_ = &x;
  const int64_t nb = x.dim(0), cff = in_.c * f_ * f_, locs = oh_ * ow_;
  y->Resize({nb, k_, oh_, ow_});
  cols_.Resize({cff, locs});
  for (int64_t b = 0; b < nb; ++b) {
    Im2Col(x.data() + b * in_.c * in_.h * in_.w, in_.c, in_.h, in_.w, f_, s_, pad_, oh_, ow_,
           cols_.data());
    float* yb = y->data() + b * k_ * locs;
    for (int64_t k = 0; k < k_; ++k) std::fill(yb + k * locs, yb + (k + 1) * locs, b_.value[k]);
    Gemm(false, false, k_, locs, cff, 1.0f, w_.value.data(), cols_.data(), 1.0f, yb);
  }
}

// dW (K, CFF) += dy_b cols_b^T;  db += sum dy_b;  dcols = W^T dy_b, folded back into dx.
void Conv2d::Backward(const Tensor& dy, Tensor* dx) {
  const Tensor& x = *x_;
  const int64_t nb = x.dim(0), cff = in_.c * f_ * f_, locs = oh_ * ow_;
  const int64_t img = in_.c * in_.h * in_.w;
  Tensor dcols({cff, locs});
  if (dx) {
    dx->Resize(x.shape());
    dx->Zero();
  }
  for (int64_t b = 0; b < nb; ++b) {
    const float* gb = dy.data() + b * k_ * locs;
    Im2Col(x.data() + b * img, in_.c, in_.h, in_.w, f_, s_, pad_, oh_, ow_, cols_.data());
    Gemm(false, true, k_, cff, locs, 1.0f, gb, cols_.data(), 1.0f, w_.grad.data());
    for (int64_t k = 0; k < k_; ++k)
      for (int64_t i = 0; i < locs; ++i) b_.grad[k] += gb[k * locs + i];
    if (dx) {
      Gemm(true, false, cff, locs, k_, 1.0f, w_.value.data(), gb, 0.0f, dcols.data());
      Col2Im(dcols.data(), in_.c, in_.h, in_.w, f_, s_, pad_, oh_, ow_, dx->data() + b * img);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// L2Pool

// x (B, C, H, W) -> y (B, C, OH, OW) = sqrt(eps + sum_window x^2)
void L2Pool::Forward(const Tensor& x, Tensor* y) {
  CHECK(x.ndim() == 4 && x.dim(2) >= p_ && x.dim(3) >= p_) << "l2 pool: input " << x.ShapeString();
  x_ = &x;
  const int64_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3);
  const int64_t oh = (h - p_) / s_ + 1, ow = (w - p_) / s_ + 1;
  y->Resize({x.dim(0), x.dim(1), oh, ow});
  // Row by row of the output, the window's taps outermost: the innermost loop runs along a row
  // (contiguous when the stride is 1, so it vectorizes).
  ParallelFor(planes, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t pl = lo; pl < hi; ++pl) {
      const float* xp = x.data() + pl * h * w;
      float* yp = y->data() + pl * oh * ow;
      for (int64_t oy = 0; oy < oh; ++oy) {
        float* yr = yp + oy * ow;
        std::fill(yr, yr + ow, eps_);
        for (int64_t dy = 0; dy < p_; ++dy)
          for (int64_t dx = 0; dx < p_; ++dx) {
            const float* xr = xp + (oy * s_ + dy) * w + dx;
            if (s_ == 1) {
              for (int64_t ox = 0; ox < ow; ++ox) yr[ox] += xr[ox] * xr[ox];
            } else {
              for (int64_t ox = 0; ox < ow; ++ox) yr[ox] += xr[ox * s_] * xr[ox * s_];
            }
          }
        for (int64_t ox = 0; ox < ow; ++ox) yr[ox] = std::sqrt(yr[ox]);
      }
    }
  });
  y_ = *y;
}

// dx[i] = sum over the windows containing i of dy * x[i] / y
void L2Pool::Backward(const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  const Tensor& x = *x_;
  const int64_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3);
  const int64_t oh = y_.dim(2), ow = y_.dim(3);
  dx->Resize(x.shape());
  dx->Zero();
  ParallelFor(planes, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> ratio(ow);
    for (int64_t pl = lo; pl < hi; ++pl) {
      const float* xp = x.data() + pl * h * w;
      float* dp = dx->data() + pl * h * w;
      for (int64_t oy = 0; oy < oh; ++oy) {
        const float* dyr = dy.data() + pl * oh * ow + oy * ow;
        const float* yr = y_.data() + pl * oh * ow + oy * ow;
        for (int64_t ox = 0; ox < ow; ++ox) ratio[ox] = dyr[ox] / yr[ox];
        for (int64_t a = 0; a < p_; ++a)
          for (int64_t c = 0; c < p_; ++c) {
            const int64_t row = (oy * s_ + a) * w + c;
            if (s_ == 1) {
              for (int64_t ox = 0; ox < ow; ++ox) dp[row + ox] += ratio[ox] * xp[row + ox];
            } else {
              for (int64_t ox = 0; ox < ow; ++ox) dp[row + ox * s_] += ratio[ox] * xp[row + ox * s_];
            }
          }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// LocalContrastNorm

LocalContrastNorm::LocalContrastNorm(int64_t window, float sigma, float c0) : g_(window), c0_(c0) {
  CHECK(window % 2 == 1) << "lcn window must be odd";
  // The normalized 2-D Gaussian is the outer product of this 1-D one with itself.
  const int64_t r = window / 2;
  kernel1_.resize(window);
  double total = 0.0;
  for (int64_t a = 0; a < window; ++a) total += std::exp(-double((a - r) * (a - r)) / (2.0 * sigma * sigma));
  for (int64_t a = 0; a < window; ++a)
    kernel1_[a] = static_cast<float>(std::exp(-double((a - r) * (a - r)) / (2.0 * sigma * sigma)) / total);
}

void LocalContrastNorm::Smooth(const float* in, int64_t nb, int64_t c, int64_t h, int64_t w,
                               float* out) const {
  // The Gaussian is separable (g[a][d] = k1[a] k1[d]) and zero padding commutes with that:
  // the channel sum, then a horizontal and a vertical pass of G taps.
  const int64_t r = g_ / 2, hw = h * w;
  const float inv_c = 1.0f / static_cast<float>(c);
  const float* k1 = kernel1_.data();
  ParallelFor(nb, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> sum(hw), row(hw);
    for (int64_t b = lo; b < hi; ++b) {
      const float* src = in + b * c * hw;
      std::copy(src, src + hw, sum.begin());
      for (int64_t ci = 1; ci < c; ++ci) {
        const float* sc = src + ci * hw;
        for (int64_t i = 0; i < hw; ++i) sum[i] += sc[i];
      }
      for (int64_t y = 0; y < h; ++y) {
        const float* sr = sum.data() + y * w;
        float* rr = row.data() + y * w;
        for (int64_t x = 0; x < w; ++x) {
          float acc = 0.0f;
          const int64_t d0 = std::max<int64_t>(-r, -x), d1 = std::min<int64_t>(r, w - 1 - x);
          for (int64_t d = d0; d <= d1; ++d) acc += k1[d + r] * sr[x + d];
          rr[x] = acc;
        }
      }
      float* o = out + b * hw;
      for (int64_t y = 0; y < h; ++y) {
        float* orow = o + y * w;
        std::fill(orow, orow + w, 0.0f);
        const int64_t a0 = std::max<int64_t>(-r, -y), a1 = std::min<int64_t>(r, h - 1 - y);
        for (int64_t a = a0; a <= a1; ++a) {
          const float k = k1[a + r] * inv_c;
          const float* rr = row.data() + (y + a) * w;
          for (int64_t x = 0; x < w; ++x) orow[x] += k * rr[x];
        }
      }
    }
  });
}

// m = Smooth(x); v = x - m; den = sqrt(c0 + Smooth(v^2)); y = v / den
void LocalContrastNorm::Forward(const Tensor& x, Tensor* y) {
  CHECK(x.ndim() == 4) << "lcn: input " << x.ShapeString();
  x_ = &x;
  const int64_t nb = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3), hw = h * w;
  m_.Resize({nb, h, w});
  Smooth(x.data(), nb, c, h, w, m_.data());
  v_.Resize(x.shape());
  v2_.Resize(x.shape());
  ParallelFor(nb, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b)
      for (int64_t ci = 0; ci < c; ++ci) {
        const float* xs = x.data() + (b * c + ci) * hw;
        const float* ms = m_.data() + b * hw;
        float* vs = v_.data() + (b * c + ci) * hw;
        float* v2s = v2_.data() + (b * c + ci) * hw;
        for (int64_t i = 0; i < hw; ++i) {
          vs[i] = xs[i] - ms[i];
          v2s[i] = vs[i] * vs[i];
        }
      }
  });
  den_.Resize({nb, h, w});
  Smooth(v2_.data(), nb, c, h, w, den_.data());
  y->Resize(x.shape());
  ParallelFor(nb, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      float* d = den_.data() + b * hw;
      for (int64_t i = 0; i < hw; ++i) d[i] = std::sqrt(c0_ + d[i]);
      for (int64_t ci = 0; ci < c; ++ci) {
        const float* vs = v_.data() + (b * c + ci) * hw;
        float* ys = y->data() + (b * c + ci) * hw;
        for (int64_t i = 0; i < hw; ++i) ys[i] = vs[i] / d[i];
      }
    }
  });
}

// With s = Smooth(v^2), den = sqrt(c0 + s):
//   dv  = dy / den + 2 v * Smooth^T(ds),  ds = -sum_c (dy v) / den^2 * 1 / (2 den)
//   dx  = dv - Smooth^T(dv)   (Smooth^T broadcasts over c; g is symmetric)
void LocalContrastNorm::Backward(const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  const int64_t nb = v_.dim(0), c = v_.dim(1), h = v_.dim(2), w = v_.dim(3), hw = h * w;
  // ds per (b, pixel), then spread back: Smooth of a single-map tensor acts as Smooth^T / C.
  Tensor ds({nb, 1, h, w});
  ParallelFor(nb, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      float* dsb = ds.data() + b * hw;
      std::fill(dsb, dsb + hw, 0.0f);
      for (int64_t ci = 0; ci < c; ++ci) {
        const float* dys = dy.data() + (b * c + ci) * hw;
        const float* vs = v_.data() + (b * c + ci) * hw;
        for (int64_t i = 0; i < hw; ++i) dsb[i] += dys[i] * vs[i];
      }
      const float* d = den_.data() + b * hw;
      for (int64_t i = 0; i < hw; ++i) dsb[i] = -dsb[i] / (d[i] * d[i]) * 0.5f / d[i];
    }
  });
  Tensor ds_spread({nb, h, w});
  Smooth(ds.data(), nb, 1, h, w, ds_spread.data());  // = Smooth^T(ds) * C ... divided below
  dx->Resize(v_.shape());  // holds dv until the last pass
  const float inv_c = 1.0f / static_cast<float>(c);
  ParallelFor(nb, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b)
      for (int64_t ci = 0; ci < c; ++ci) {
        const float* dys = dy.data() + (b * c + ci) * hw;
        const float* vs = v_.data() + (b * c + ci) * hw;
        const float* d = den_.data() + b * hw;
        const float* sp = ds_spread.data() + b * hw;
        float* dv = dx->data() + (b * c + ci) * hw;
        for (int64_t i = 0; i < hw; ++i) dv[i] = dys[i] / d[i] + 2.0f * vs[i] * sp[i] * inv_c;
      }
  });
  Tensor dm({nb, h, w});
  Smooth(dx->data(), nb, c, h, w, dm.data());  // (1/C) g * sum_c dv
  ParallelFor(nb, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b)
      for (int64_t ci = 0; ci < c; ++ci) {
        float* dv = dx->data() + (b * c + ci) * hw;
        const float* m = dm.data() + b * hw;
        for (int64_t i = 0; i < hw; ++i) dv[i] -= m[i];
      }
  });
}

}  // namespace distbelief
