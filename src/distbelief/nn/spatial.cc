#include "distbelief/nn/spatial.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <immintrin.h>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"
#include "distbelief/tensor/blas.h"

namespace distbelief {
namespace {

// One vector register of fp32 lanes: 16 with AVX-512, 8 with AVX2. kAccs is how many accumulator
// registers the kernels below keep (of 32 or 16), the rest holding operands.
#ifdef __AVX512F__
constexpr int kLanes = 16;
constexpr int kAccs = 16;
#else
constexpr int kLanes = 8;
constexpr int kAccs = 8;
#endif
// Vectors of L fp32 lanes; the unaligned alias is for loads and stores. The kernels along the
// maps use L = kLanes, or 8 when a layer has at most 8 maps (the paper's network), so no lane is
// padding; everything else uses whole registers (vf).
template <int L>
struct Lanes {
  typedef float v __attribute__((vector_size(L * 4)));
  typedef float vu __attribute__((vector_size(L * 4), aligned(4)));
  static v Load(const float* p) { return *reinterpret_cast<const vu*>(p); }
  static void Store(float* p, v x) { *reinterpret_cast<vu*>(p) = x; }
};
using vf = Lanes<kLanes>::v;
inline vf Load(const float* p) { return Lanes<kLanes>::Load(p); }
inline void Store(float* p, vf v) { Lanes<kLanes>::Store(p, v); }

// 1 / sqrt(t) per lane for t > 0: the hardware estimate (14 or 12 bits) refined by one Newton step
// (relative error about 1e-7), no division and no square root.
inline vf Rsqrt(vf t) {
#if defined(__AVX512F__)
  const vf r = reinterpret_cast<vf>(_mm512_maskz_rsqrt14_ps(0xFFFF, reinterpret_cast<__m512>(t)));
#elif defined(__AVX__)
  const vf r = reinterpret_cast<vf>(_mm256_rsqrt_ps(reinterpret_cast<__m256>(t)));
#else
  vf r;
  for (int i = 0; i < kLanes; ++i) r[i] = 1.0f / std::sqrt(t[i]);
  return r;
#endif
  return r * (1.5f - 0.5f * t * r * r);
}

int64_t RoundUp(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Per-thread scratch that grows as needed and is reused across calls.
float* Scratch(int slot, int64_t n) {
  thread_local std::vector<float> buffers[4];
  auto& v = buffers[slot];
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  return v.data();
}
float* ScratchZeroed(int slot, int64_t n) {
  float* p = Scratch(slot, n);
  std::memset(p, 0, n * sizeof(float));
  return p;
}

// dst[i] = src[i] * (scale ? scale[i] : 1) for i < n: for the short rows of a pooled plane, so
// whole vectors and one masked vector for the rest (AVX-512), never a call to memcpy.
inline void CopyRow(const float* src, const float* scale, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) Store(dst + i, scale ? Load(src + i) * Load(scale + i) : Load(src + i));
  if (i == n) return;
#if defined(__AVX512F__)
  const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
  __m512 v = _mm512_maskz_loadu_ps(m, src + i);
  if (scale) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, scale + i));
  _mm512_mask_storeu_ps(dst + i, m, v);
#else
  for (; i < n; ++i) dst[i] = scale ? src[i] * scale[i] : src[i];
#endif
}

// dst[c ldd + r] = src[r lds + c] (+= with Add) for r < nr, c < nc, both at most 16; lanes nr ..
// lanes - 1 of each dst row are stored as zero (for padding that must stay zero), lanes beyond
// are left alone. The layouts between the kernels below (code (B, K, locations) against tiles of
// images innermost) are such blocks.
template <bool Add = false>
inline __attribute__((always_inline)) void Transpose16(const float* src, int64_t lds, int nr, int nc, float* dst,
                                                       int64_t ldd, int lanes) {
  lanes = std::max(lanes, nr);
#if defined(__AVX512F__)
  const __mmask16 cm = static_cast<__mmask16>((1u << nc) - 1), sm = static_cast<__mmask16>((1u << lanes) - 1);
  alignas(64) static const float kZeros[16] = {};
  __m512 r[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = _mm512_maskz_loadu_ps(cm, i < nr ? src + i * lds : kZeros);
  // A transpose swaps element (i, j) with (j, i): bit by bit, for d = 8, 4, 2, 1 it swaps
  // (i, j) with (i + d, j - d) where i has bit d clear and j has it set.
  struct Tables {
    alignas(64) int lo[4][16], hi[4][16];
    constexpr Tables() : lo(), hi() {
      for (int e = 0; e < 4; ++e)
        for (int j = 0, d = 8 >> e; j < 16; ++j) {
          lo[e][j] = (j & d) ? 16 + j - d : j;
          hi[e][j] = (j & d) ? 16 + j : j + d;
        }
    }
  };
  static constexpr Tables kT;
#pragma GCC unroll 4
  for (int e = 0; e < 4; ++e) {
    const int d = 8 >> e;
    const __m512i ilo = _mm512_load_si512(kT.lo[e]), ihi = _mm512_load_si512(kT.hi[e]);
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
      if (i & d) continue;
      const __m512 a = _mm512_permutex2var_ps(r[i], ilo, r[i + d]);
      r[i + d] = _mm512_permutex2var_ps(r[i], ihi, r[i + d]);
      r[i] = a;
    }
  }
#pragma GCC unroll 16
  for (int c = 0; c < 16; ++c) {  // unrolled, so that r stays in registers
    if (c >= nc) break;
    __m512 v = r[c];
    if (Add) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(sm, dst + c * ldd));
    _mm512_mask_storeu_ps(dst + c * ldd, sm, v);
  }
#else
  for (int c = 0; c < nc; ++c)
    for (int i = 0; i < lanes; ++i) {
      const float v = i < nr ? src[i * lds + c] : 0.0f;
      dst[c * ldd + i] = Add ? dst[c * ldd + i] + v : v;
    }
#endif
}

// out[i] = scale * sum_{t < taps} k[t] in[i + t step] for i < n: one pass, vectors along i.
template <int Taps>
void WeightedSumOfShiftedT(const float* in, int64_t n, int64_t taps, int64_t step, const float* k,
                           float scale, float* out) {
  if (Taps > 0) taps = Taps;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    vf acc = {};
    for (int64_t t = 0; t < taps; ++t) acc += k[t] * Load(in + i + t * step);
    Store(out + i, scale * acc);
  }
  for (; i < n; ++i) {
    float acc = 0.0f;
    for (int64_t t = 0; t < taps; ++t) acc += k[t] * in[i + t * step];
    out[i] = scale * acc;
  }
}

void WeightedSumOfShifted(const float* in, int64_t n, int64_t taps, int64_t step, const float* k,
                          float scale, float* out) {
  if (taps == 5) return WeightedSumOfShiftedT<5>(in, n, taps, step, k, scale, out);  // the cat network's LCN
  WeightedSumOfShiftedT<0>(in, n, taps, step, k, scale, out);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Locally connected kernels, shared by LocallyConnected2d and its transpose.
// Geometry: image (B, C, H, W), code (B, K, OH, OW); untied weights per location l, either
// K-inner (OH OW, C F F, K) (the encoder's: the maps of one tap are one vector) or K-outer
// (OH OW, K, C F F) (the decoder's: each map's decoding basis contiguous, for the norm bound).
// P_l(img) (B, CFF) is the field of location l in every image. No kernel copies a field: each
// pass lays the images out batch innermost, (CHW, B) (or as pixel pairs), and tap j = (ci, fy,
// fx) of location l is the row corner(l) + off[j] of that layout. The vectors run along the batch
// (image -> code, code -> image) or along the maps (the weight gradient; pairs of taps or of
// images share a vector where the maps fill only part of one).

namespace {

struct LcGeometry {
  int64_t b, c, h, w, k, f, s, oh, ow;
  int64_t cff() const { return c * f * f; }
  int64_t locs() const { return oh * ow; }
  int64_t image() const { return c * h * w; }
  int64_t corner(int64_t l) const { return (l / ow) * s * w + (l % ow) * s; }
  // off[j] for tap j = (ci, fy, fx): (ci H + fy) W + fx.
  std::vector<int64_t> TapOffsets() const {
    std::vector<int64_t> off;
    off.reserve(cff());
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t fy = 0; fy < f; ++fy)
        for (int64_t fx = 0; fx < f; ++fx) off.push_back((ci * h + fy) * w + fx);
    return off;
  }
};

// dw (TJ taps, ldw) [KC vectors of L lanes] += sum_b x_b[off[t]] c_b for the field corners
// base0 + b stride.
template <int L, int KC, int TJ>
void AccumulateTaps(int64_t nb, const int64_t* off, const float* base0, int64_t stride,
                    const float* c, int64_t ldc, float* dw, int64_t ldw) {
  using V = Lanes<L>;
  typename V::v acc[TJ][KC];
  for (int t = 0; t < TJ; ++t)
    for (int q = 0; q < KC; ++q) acc[t][q] = V::Load(dw + t * ldw + q * L);
  for (int64_t b = 0; b < nb; ++b) {
    const float* p = base0 + b * stride;
    typename V::v cv[KC];
    for (int q = 0; q < KC; ++q) cv[q] = V::Load(c + b * ldc + q * L);
    for (int t = 0; t < TJ; ++t) {
      const float x = p[off[t]];
      for (int q = 0; q < KC; ++q) acc[t][q] += x * cv[q];
    }
  }
  for (int t = 0; t < TJ; ++t)
    for (int q = 0; q < KC; ++q) V::Store(dw + t * ldw + q * L, acc[t][q]);
}

template <int L, int KC>
void AccumulateTapsAll(int64_t nb, int64_t cff, const int64_t* off, const float* base0,
                       int64_t stride, const float* c, int64_t ldc, float* dw, int64_t ldw) {
  constexpr int TJ = kAccs / KC > 0 ? kAccs / KC : 1;
  int64_t j = 0;
  for (; j + TJ <= cff; j += TJ) AccumulateTaps<L, KC, TJ>(nb, off + j, base0, stride, c, ldc, dw + j * ldw, ldw);
  for (; j < cff; ++j) AccumulateTaps<L, KC, 1>(nb, off + j, base0, stride, c, ldc, dw + j * ldw, ldw);
}

// Runs fn.template operator()<V>(v0) for each chunk of at most 4 vectors of L lanes of n (a
// multiple of L): V vectors starting at lane v0.
template <int L, typename Fn>
void ForVectorChunks(int64_t n, Fn&& fn) {
  for (int64_t v0 = 0; v0 < n; v0 += 4 * L) {
    switch (std::min<int64_t>(4, (n - v0) / L)) {
      case 1: fn.template operator()<1>(v0); break;
      case 2: fn.template operator()<2>(v0); break;
      case 3: fn.template operator()<3>(v0); break;
      default: fn.template operator()<4>(v0); break;
    }
  }
}

// The lanes of the vectors along K maps: 8 when 8 cover them and the machine's are wider.
int MapLanes(int64_t k) { return k <= 8 ? 8 : kLanes; }
// W_l as (CFF, RoundUp(K, 8)) rows of maps, zero-padded, in scratch slot 0: for image -> code
// when the maps do not fill blocks of 8 (otherwise it reads W in place, either layout).
const float* PaddedMapsInnerAt(const LcGeometry& g, const float* w, bool k_inner, int64_t l) {
  const int64_t cff = g.cff(), k = g.k, ldk = RoundUp(k, 8);
  const float* wl = w + l * cff * k;
  float* t = ScratchZeroed(0, cff * ldk);
  for (int64_t j = 0; j < cff; ++j)
    for (int64_t m = 0; m < k; ++m) t[j * ldk + m] = k_inner ? wl[j * k + m] : wl[m * cff + j];
  return t;
}

#if defined(__AVX512F__)
// Two taps per 16-lane vector, for the weight gradient of layers of at most 8 maps (8 lanes would
// leave half of each AVX-512 register, and so half the FMA width, idle) whose field taps pair up
// as horizontal neighbours: tap pair p is taps 2p and 2p + 1. A pair vector's lane 2m + t belongs
// to map m and tap 2p + t, so one 64-bit broadcast of the pair's two pixels times an image's 8
// maps, each twice, does both taps' multiply-adds for 8 maps at once.
inline __m512 BroadcastPair(const float* p) {
  double d;
  std::memcpy(&d, p, sizeof d);
  return _mm512_castpd_ps(_mm512_set1_pd(d));
}
// Lane 8t + m of the result = lane 2m + t of v: a pair vector back to rows j, j+1 of 8 maps.
inline __m512 Unpair(__m512 v) {
  return _mm512_maskz_permutexvar_ps(0xFFFF, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15), v);
}

// code2 (B, 16) = each image's 8 maps, every lane twice (lane 2m + t = map m): code (B, 8) as
// the pair vectors' lanes want it, made once per location.
inline void DuplicateLanes(int64_t nb, const float* code, float* code2) {
  const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  for (int64_t b = 0; b < nb; ++b)
    _mm512_storeu_ps(code2 + b * 16, _mm512_maskz_permutexvar_ps(0xFFFF, dup, _mm512_maskz_loadu_ps(0x00FF, code + b * 8)));
}

// dw (2 TP rows from 2 p0, 8) += sum_b x_b[off2[p]..+1] (x) code_b for TP pairs: the weight
// gradient's two taps per vector; code2 (B, 16) from DuplicateLanes.
template <int TP>
void AccumulateTapPairs(int64_t nb, const int64_t* off2, const float* base0, int64_t stride,
                        const float* code2, float* dw) {
  __m512 acc[TP];
  for (int t = 0; t < TP; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const float* x = base0 + b * stride;
    const __m512 c = _mm512_loadu_ps(code2 + b * 16);
    for (int t = 0; t < TP; ++t) acc[t] = _mm512_fmadd_ps(BroadcastPair(x + off2[t]), c, acc[t]);
  }
  for (int t = 0; t < TP; ++t) _mm512_storeu_ps(dw + t * 16, _mm512_add_ps(_mm512_loadu_ps(dw + t * 16), Unpair(acc[t])));
}

// The weight gradient two images per vector, for any maps in blocks of 8: lane 2m + p of a vector
// belongs to map m and image 2q + p of image pair q, so one 64-bit broadcast of a tap's pixel in
// images 2q and 2q + 1 (neighbours when laid out batch innermost) times the pair's codes does both
// images' multiply-adds for 8 maps; the two lanes of each map are summed at the end.
// c2 (Q, ldc2): pair q's code, block kv's lane 2m + p = map 8 kv + m of image 2q + p.
inline void InterleaveImagePairs(int64_t nb, const float* code, int64_t ldk, float* c2) {
  const __m512i idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  for (int64_t q = 0; q < (nb + 1) / 2; ++q)
    for (int64_t m0 = 0; m0 < ldk; m0 += 8) {
      const __m512 a = _mm512_maskz_loadu_ps(0x00FF, code + 2 * q * ldk + m0);
      const __m512 b = 2 * q + 1 < nb ? _mm512_maskz_loadu_ps(0x00FF, code + (2 * q + 1) * ldk + m0) : _mm512_setzero_ps();
      _mm512_storeu_ps(c2 + q * 2 * ldk + 2 * m0, _mm512_permutex2var_ps(a, idx, b));
    }
}
// dw (TJ taps, ldw) [maps 8 KV, KV even] += sum_q x[xoff[t] + 2q .. +1] . c2[q] for Q image pairs.
template <int TJ, int KV>
void AccumulateTapsImagePairs(int64_t nq, const int64_t* xoff, const float* x, const float* c2, int64_t ldc2,
                              float* dw, int64_t ldw) {
  __m512 acc[TJ][KV];
  for (int t = 0; t < TJ; ++t)
    for (int kv = 0; kv < KV; ++kv) acc[t][kv] = _mm512_setzero_ps();
  for (int64_t q = 0; q < nq; ++q) {
    __m512 cv[KV];
    for (int kv = 0; kv < KV; ++kv) cv[kv] = _mm512_loadu_ps(c2 + q * ldc2 + kv * 16);
    for (int t = 0; t < TJ; ++t) {
      const __m512 xb = BroadcastPair(x + xoff[t] + 2 * q);
      for (int kv = 0; kv < KV; ++kv) acc[t][kv] = _mm512_fmadd_ps(xb, cv[kv], acc[t][kv]);
    }
  }
  // Lanes 2m and 2m + 1 summed: the even lanes of two accumulators, plus their odd lanes.
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (int t = 0; t < TJ; ++t) {
    float* row = dw + t * ldw;
    for (int kv = 0; kv < KV; kv += 2) {
      const __m512 sum = _mm512_add_ps(_mm512_permutex2var_ps(acc[t][kv], even, acc[t][kv + 1]),
                                       _mm512_permutex2var_ps(acc[t][kv], odd, acc[t][kv + 1]));
      _mm512_storeu_ps(row + kv * 8, _mm512_add_ps(_mm512_loadu_ps(row + kv * 8), sum));
    }
  }
}
#endif

// Field pairs apply (above) to at most 8 maps, fields of even width and even field corners on
// images of even width, so that every tap pair is one of the pixel pairs of TransposeToPixelPairs.
bool UsePairs(const LcGeometry& g) {
#if defined(__AVX512F__)
  return g.k <= 8 && g.f % 2 == 0 && g.w % 2 == 0 && (g.s % 2 == 0 || g.ow == 1);
#else
  (void)g;
  return false;
#endif
}
// off2[p] = off[2p]: the first tap of each pair.
std::vector<int64_t> PairOffsets(const LcGeometry& g) {
  const std::vector<int64_t> off = g.TapOffsets();
  std::vector<int64_t> off2(off.size() / 2);
  for (size_t p = 0; p < off2.size(); ++p) off2[p] = off[2 * p];
  return off2;
}

// xt (CHW, ldb) = img (B, CHW) with the batch innermost, lanes b >= B zero (ldb a multiple of 16):
// so that one vector holds a pixel of kLanes images. Pixels over threads.
void TransposeToBatchInner(const float* img, int64_t nb, int64_t chw, int64_t ldb, float* xt) {
  ParallelFor((chw + 15) / 16, 4, [&](int64_t lo, int64_t hi) {
    for (int64_t i0 = lo * 16; i0 < std::min(chw, hi * 16); i0 += 16)
      for (int64_t b0 = 0; b0 < ldb; b0 += 16) {
        const int nr = static_cast<int>(std::clamp<int64_t>(nb - b0, 0, 16)), nc = static_cast<int>(std::min<int64_t>(16, chw - i0));
        Transpose16(img + b0 * chw + i0, chw, nr, nc, xt + i0 * ldb + b0, ldb, 16);
      }
  });
}

#if defined(__AVX512F__)
// xt2 (CHW / 2, ldb, 2) = img (B, CHW) as pixel pairs (2i, 2i + 1), the batch inside each pair
// (chw even): so that the two taps of a pair in image b are the 8 bytes at (2i ldb + 2b), and
// consecutive images' pairs are neighbours. Lanes b >= B zero. Pairs over threads.
void TransposeToPixelPairs(const float* img, int64_t nb, int64_t chw, int64_t ldb, float* xt2) {
  ParallelFor(chw / 2, 128, [&](int64_t lo, int64_t hi) {
    for (int64_t b0 = 0; b0 < ldb; b0 += 8) {
      const int64_t n = std::clamp<int64_t>(nb - b0, 0, 8);
      if (nb * chw < (int64_t{1} << 31)) {  // 32-bit gather indices
        const __mmask8 m = static_cast<__mmask8>((1u << n) - 1);
        const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(static_cast<int>(chw)));
        const float* src = img + b0 * chw;
        for (int64_t i = lo; i < hi; ++i)
          _mm512_storeu_pd(reinterpret_cast<double*>(xt2 + 2 * (i * ldb + b0)),
                           _mm512_mask_i32gather_pd(_mm512_setzero_pd(), m, idx, src + 2 * i, 4));
      } else {
        for (int64_t i = lo; i < hi; ++i)
          for (int64_t b = b0; b < b0 + 8; ++b)
            for (int t = 0; t < 2; ++t) xt2[2 * (i * ldb + b) + t] = b < nb ? img[b * chw + 2 * i + t] : 0.0f;
      }
    }
  });
}
#endif

// y (8, ldy) [BV vectors of images] = sum_j w[j wj + m wm] x[xoff[j]] for the 8 maps m: one
// location's field (taps at xoff[j] in images laid out batch innermost) times its weights, each
// weight broadcast to BV vectors of images and each pixel vector used by 8 maps.
template <int BV>
void WeightsTimesFields(int64_t cff, const int64_t* xoff, const float* x, const float* w, int64_t wj,
                        int64_t wm, float* y, int64_t ldy) {
  vf acc[8][BV] = {};
  for (int64_t j = 0; j < cff; ++j) {
    const float* xr = x + xoff[j];
    vf xv[BV];
    for (int v = 0; v < BV; ++v) xv[v] = Load(xr + v * kLanes);
    const float* w0 = w + j * wj;
    for (int m = 0; m < 8; ++m)
      for (int v = 0; v < BV; ++v) acc[m][v] += w0[m * wm] * xv[v];
  }
  for (int m = 0; m < 8; ++m)
    for (int v = 0; v < BV; ++v) Store(y + m * ldy + v * kLanes, acc[m][v]);
}

// Locations are taken in tiles of kLocTile, so that the code, laid out (B, K, OH OW), is read and
// written in runs of consecutive locations rather than one float per cache line.
constexpr int64_t kLocTile = 16;

// code (B, K, OH, OW) = P_l(img) W_l (+ bias (K, OH OW) when not null). The images are first laid
// out batch innermost (TransposeToBatchInner), so that every multiply-add is a vector of images and
// every weight feeds 8 maps x 2-3 vectors of them; locations over threads.
void LcImageToCode(const LcGeometry& g, const float* img, const float* w, bool k_inner,
                   const float* bias, float* code) {
  const int64_t locs = g.locs(), cff = g.cff(), chw = g.image(), ldk = RoundUp(g.k, 8);
  const int64_t ldb = RoundUp(g.b, 16), nv = ldb / kLanes;
  float* xt = Scratch(3, chw * ldb);  // the calling thread's; read by all
  TransposeToBatchInner(img, g.b, chw, ldb, xt);
  std::vector<int64_t> xoff = g.TapOffsets();
  for (int64_t& o : xoff) o *= ldb;
  // Vectors of images per kernel call: 1, or 2s with one 3 first when odd (8 maps x 3 vectors
  // are the 24 accumulators AVX-512 can spare; AVX2 has room for 1).
  constexpr int kMaxBV = kLanes == 16 ? 3 : 1;
  // The weights are read in place, K-inner or not, when the maps fill blocks of 8; else from a
  // padded copy per location.
  const bool in_place = g.k == ldk;
  ParallelFor(locs, 1, [&](int64_t lo, int64_t hi) {
    float* yt = Scratch(1, kLocTile * ldk * ldb);  // (tile, ldk, ldb)
    for (int64_t l0 = lo; l0 < hi; l0 += kLocTile) {
      const int64_t nl = std::min(kLocTile, hi - l0);
      for (int64_t i = 0; i < nl; ++i) {
        const int64_t l = l0 + i;
        int64_t wj = k_inner ? g.k : 1, wm = k_inner ? 1 : cff;
        const float* wl = w + l * cff * g.k;
        if (!in_place) {
          wl = PaddedMapsInnerAt(g, w, k_inner, l);
          wj = ldk;
          wm = 1;
        }
        const float* x = xt + g.corner(l) * ldb;
        for (int64_t m0 = 0; m0 < ldk; m0 += 8) {
          float* y = yt + (i * ldk + m0) * ldb;
          const float* wm0 = wl + m0 * wm;
          int64_t v = 0;
          if (kMaxBV == 1 || nv == 1) {
            for (; v < nv; ++v) WeightsTimesFields<1>(cff, xoff.data(), x + v * kLanes, wm0, wj, wm, y + v * kLanes, ldb);
          } else {
            if (nv % 2 == 1) {
              WeightsTimesFields<kMaxBV>(cff, xoff.data(), x, wm0, wj, wm, y, ldb);
              v = 3;
            }
            for (; v < nv; v += 2) WeightsTimesFields<2>(cff, xoff.data(), x + v * kLanes, wm0, wj, wm, y + v * kLanes, ldb);
          }
        }
        if (bias)
          for (int64_t k = 0; k < g.k; ++k) {
            const vf bk = Lanes<kLanes>::v{} + bias[k * locs + l];
            float* y = yt + (i * ldk + k) * ldb;
            for (int64_t v = 0; v < nv; ++v) Store(y + v * kLanes, Load(y + v * kLanes) + bk);
          }
      }
      // yt (tile, ldk, ldb) -> code (B, K, locations), blocks of 16 locations x 16 images.
      for (int64_t k = 0; k < g.k; ++k)
        for (int64_t b0 = 0; b0 < g.b; b0 += 16) {
          const int nc = static_cast<int>(std::min<int64_t>(16, g.b - b0));
          Transpose16(yt + k * ldb + b0, ldk * ldb, static_cast<int>(nl), nc, code + (b0 * g.k + k) * locs + l0, g.k * locs, 0);
        }
    }
  });
}

// code -> image gathers rather than scatters: every image pixel sums, over the locations whose
// fields cover it and their K maps, weight x code, and is written once. Pixels in one s x s cell
// (when s divides f) are covered by the same locations, so a block of them shares each code
// vector it loads. A run is a range of pixel rows (or columns) covered by the same range of
// locations [lo, hi] (empty when lo > hi), at most max_n long.
struct PixelRun {
  int64_t start, n, lo, hi;
};
std::vector<PixelRun> PixelRuns(int64_t size, int64_t f, int64_t s, int64_t outs, int64_t max_n) {
  std::vector<PixelRun> runs;
  for (int64_t p = 0; p < size; ++p) {
    const int64_t lo = p - f + 1 <= 0 ? 0 : (p - f + s) / s, hi = std::min(outs - 1, p / s);
    if (!runs.empty() && runs.back().lo == lo && runs.back().hi == hi && runs.back().n < max_n) {
      ++runs.back().n;
    } else {
      runs.push_back({p, 1, lo, hi});
    }
  }
  return runs;
}

// The block of NR x NC pixels of channel ci at rows rows.start.., columns cols.start.. for BV
// vectors of images from lane b0: out[(r W + c) ldb + b0] [BV vectors] = sum over the locations
// (oy, ox) in the runs' ranges and maps k of W_l[tap][k] ct[(l K + k) ldb + b0], the code laid
// out (locations, K, ldb).
struct GatherArgs {
  const float* ct;
  int64_t ldb;
  const float* w;
  int64_t wj, wk, k, cff, f, s, ow, width;
};
template <int NR, int NC, int BV>
void GatherBlock(const GatherArgs& a, int64_t ci, const PixelRun& rows, const PixelRun& cols, int64_t b0, float* out) {
  vf acc[NR][NC][BV] = {};
  for (int64_t oy = rows.lo; oy <= rows.hi; ++oy)
    for (int64_t ox = cols.lo; ox <= cols.hi; ++ox) {
      const int64_t l = oy * a.ow + ox;
      const int64_t tap0 = (ci * a.f + rows.start - oy * a.s) * a.f + cols.start - ox * a.s;
      const float* wl = a.w + l * a.cff * a.k + tap0 * a.wj;
      const float* cl = a.ct + l * a.k * a.ldb + b0;
      for (int64_t k = 0; k < a.k; ++k) {
        vf cv[BV];
        for (int v = 0; v < BV; ++v) cv[v] = Load(cl + k * a.ldb + v * kLanes);
        const float* wk = wl + k * a.wk;
        for (int r = 0; r < NR; ++r)
          for (int c = 0; c < NC; ++c) {
            const float ws = wk[(r * a.f + c) * a.wj];
            for (int v = 0; v < BV; ++v) acc[r][c][v] += ws * cv[v];
          }
      }
    }
  for (int r = 0; r < NR; ++r)
    for (int c = 0; c < NC; ++c)
      for (int v = 0; v < BV; ++v) Store(out + (r * a.width + c) * a.ldb + b0 + v * kLanes, acc[r][c][v]);
}
template <int NR, int NC>
void GatherBlockBV(int bv, const GatherArgs& a, int64_t ci, const PixelRun& rows, const PixelRun& cols, int64_t b0, float* out) {
  if (bv == 2) return GatherBlock<NR, NC, 2>(a, ci, rows, cols, b0, out);
  GatherBlock<NR, NC, 1>(a, ci, rows, cols, b0, out);
}
template <int NR>
void GatherBlockNC(int bv, const GatherArgs& a, int64_t ci, const PixelRun& rows, const PixelRun& cols, int64_t b0, float* out) {
  switch (cols.n) {
    case 1: return GatherBlockBV<NR, 1>(bv, a, ci, rows, cols, b0, out);
    case 2: return GatherBlockBV<NR, 2>(bv, a, ci, rows, cols, b0, out);
    case 3: return GatherBlockBV<NR, 3>(bv, a, ci, rows, cols, b0, out);
    default: return GatherBlockBV<NR, 4>(bv, a, ci, rows, cols, b0, out);
  }
}
// Blocks of at most 2 rows x 4 columns x 2 vectors of images: 16 accumulators (AVX-512; AVX2's
// 16 registers take 1 vector).
constexpr int64_t kRowRun = 2, kColRun = 4;
constexpr int kMaxGatherBV = kLanes == 16 ? 2 : 1;

// img (B, C, H, W) = sum_l scatter(code_l W_l^T): the transpose of LcImageToCode (overwrites img).
// The code is laid out (locations, K, ldb) and the images (CHW, ldb), batch innermost, by 16x16
// transposes; every pixel is gathered once (above). Blocks of pixel rows over threads.
void LcCodeToImage(const LcGeometry& g, const float* code, const float* w, bool k_inner, float* img) {
  const int64_t locs = g.locs(), k = g.k, chw = g.image(), ldb = RoundUp(g.b, 16);
  float* ct = Scratch(3, locs * k * ldb + chw * ldb);  // the calling thread's; used by all
  float* xt = ct + locs * k * ldb;                     // (CHW, ldb)
  ParallelFor((locs + 15) / 16, 1, [&](int64_t lo, int64_t hi) {  // code (B, K, locations) -> ct
    for (int64_t l0 = lo * 16; l0 < std::min(locs, hi * 16); l0 += 16) {
      const int nl = static_cast<int>(std::min<int64_t>(16, locs - l0));
      for (int64_t m = 0; m < k; ++m)
        for (int64_t b0 = 0; b0 < ldb; b0 += 16) {
          const int nr = static_cast<int>(std::clamp<int64_t>(g.b - b0, 0, 16));
          Transpose16(code + (b0 * k + m) * locs + l0, k * locs, nr, nl, ct + (l0 * k + m) * ldb + b0, k * ldb, 16);
        }
    }
  });
  const std::vector<PixelRun> rows = PixelRuns(g.h, g.f, g.s, g.oh, kRowRun);
  const std::vector<PixelRun> cols = PixelRuns(g.w, g.f, g.s, g.ow, kColRun);
  const GatherArgs a{ct, ldb, w, k_inner ? k : 1, k_inner ? 1 : g.cff(), k, g.cff(), g.f, g.s, g.ow, g.w};
  const int64_t nv = ldb / kLanes, nrows = static_cast<int64_t>(rows.size());
  ParallelFor(g.c * nrows, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t ci = item / nrows;
      const PixelRun& r = rows[item % nrows];
      for (const PixelRun& c : cols) {
        float* out = xt + ((ci * g.h + r.start) * g.w + c.start) * ldb;
        for (int64_t v = 0; v < nv;) {
          const int bv = static_cast<int>(std::min<int64_t>(kMaxGatherBV, nv - v));
          if (r.n == 2) {
            GatherBlockNC<2>(bv, a, ci, r, c, v * kLanes, out);
          } else {
            GatherBlockNC<1>(bv, a, ci, r, c, v * kLanes, out);
          }
          v += bv;
        }
      }
    }
  });
  ParallelFor((chw + 15) / 16, 4, [&](int64_t lo, int64_t hi) {  // (CHW, ldb) -> (B, CHW)
    for (int64_t i0 = lo * 16; i0 < std::min(chw, hi * 16); i0 += 16)
      for (int64_t b0 = 0; b0 < g.b; b0 += 16) {
        const int nr = static_cast<int>(std::min<int64_t>(16, chw - i0)), nc = static_cast<int>(std::min<int64_t>(16, g.b - b0));
        Transpose16(xt + i0 * ldb + b0, ldb, nr, nc, img + b0 * chw + i0, chw, 0);
      }
  });
}

// dW_l += P_l(img)^T code_l (in W's layout); dbias (K, OH OW) += sum_b code_l when not null.
// Locations over threads.
template <int L>
void LcWeightGradL(const LcGeometry& g, const float* img, const float* code, float* dw, bool k_inner,
                   float* dbias) {
  const int64_t locs = g.locs(), cff = g.cff(), k = g.k, ldk = RoundUp(k, L);
  const std::vector<int64_t> off = g.TapOffsets();
  const bool direct = k_inner && k == ldk;
  const bool pairs = L == 8 && UsePairs(g);
  // Image pairs (above) for maps in blocks of 16; at most 8 maps take tap pairs or 8 lanes, which
  // measured faster than image pairs' 8-map vectors (their end-of-call folds dominate).
  const bool image_pairs = kLanes == 16 && ldk % 16 == 0;
  const int64_t ldc = g.b * ldk;
  // The taps are read from the images laid out batch innermost (as pixel pairs with pairs): the
  // taps a kernel call broadcasts then sit in a few rows read for every image, not in B images
  // far apart.
  const int64_t ldb = RoundUp(g.b, 16);
  float* xt = Scratch(3, g.image() * ldb);
  std::vector<int64_t> xoff = pairs ? PairOffsets(g) : off;
  for (int64_t& o : xoff) o *= ldb;
  if (pairs) {
#if defined(__AVX512F__)
    TransposeToPixelPairs(img, g.b, g.image(), ldb, xt);
#endif
  } else {
    TransposeToBatchInner(img, g.b, g.image(), ldb, xt);
  }
  ParallelFor(locs, 1, [&](int64_t lo, int64_t hi) {
    float* ct = Scratch(1, kLocTile * ldc);  // (tile, B, ldk): the tile's code, zero beyond K
    for (int64_t l0 = lo; l0 < hi; l0 += kLocTile) {
      const int64_t nl = std::min(kLocTile, hi - l0);
      if (k == ldk) {  // code (B K, locations) -> ct (tile, B K), blocks of 16 x 16
        for (int64_t q0 = 0; q0 < g.b * k; q0 += 16) {
          const int nr = static_cast<int>(std::min<int64_t>(16, g.b * k - q0));
          Transpose16(code + q0 * locs + l0, locs, nr, static_cast<int>(nl), ct + q0, ldc, 0);
        }
      } else {
        std::memset(ct, 0, nl * ldc * sizeof(float));
        for (int64_t b = 0; b < g.b; ++b)
          for (int64_t m = 0; m < k; ++m) {
            const float* in = code + (b * k + m) * locs + l0;
            float* out = ct + b * ldk + m;
            for (int64_t i = 0; i < nl; ++i) out[i * ldc] = in[i];
          }
      }
      for (int64_t i = 0; i < nl; ++i) {
        const int64_t l = l0 + i;
        const float* cl = ct + i * ldc;  // (B, ldk): this location's code
        float* dwl = dw + l * cff * k;
        float* acc = direct ? dwl : ScratchZeroed(0, cff * ldk);  // (CFF, ldk)
        const float* x = xt + g.corner(l) * ldb;
        if (pairs) {
#if defined(__AVX512F__)
          constexpr int TP = 8;
          const int64_t np = cff / 2;
          float* c2 = Scratch(2, g.b * 16);
          DuplicateLanes(g.b, cl, c2);
          int64_t p = 0;
          for (; p + TP <= np; p += TP)
            AccumulateTapPairs<TP>(g.b, xoff.data() + p, x, 2, c2, acc + p * 16);
          for (; p < np; ++p) AccumulateTapPairs<1>(g.b, xoff.data() + p, x, 2, c2, acc + p * 16);
#endif
        } else if (image_pairs) {
#if defined(__AVX512F__)
          const int64_t nq = (g.b + 1) / 2;
          float* c2 = Scratch(2, nq * 2 * ldk);
          InterleaveImagePairs(g.b, cl, ldk, c2);
          for (int64_t m0 = 0; m0 < ldk; m0 += 16) {
            int64_t j = 0;
            for (; j + 8 <= cff; j += 8)
              AccumulateTapsImagePairs<8, 2>(nq, xoff.data() + j, x, c2 + 2 * m0, 2 * ldk, acc + j * ldk + m0, ldk);
            for (; j < cff; ++j)
              AccumulateTapsImagePairs<1, 2>(nq, xoff.data() + j, x, c2 + 2 * m0, 2 * ldk, acc + j * ldk + m0, ldk);
          }
#endif
        } else {
          ForVectorChunks<L>(ldk, [&]<int KC>(int64_t k0) {
            AccumulateTapsAll<L, KC>(g.b, cff, xoff.data(), x, 1, cl + k0, ldk, acc + k0, ldk);
          });
        }
        if (!k_inner) {  // acc (CFF, ldk) added into dW_l (K, CFF), blocks of 16 x 16
          for (int64_t j0 = 0; j0 < cff; j0 += 16)
            for (int64_t m0 = 0; m0 < k; m0 += 16) {
              const int nr = static_cast<int>(std::min<int64_t>(16, cff - j0)), nc = static_cast<int>(std::min<int64_t>(16, k - m0));
              Transpose16<true>(acc + j0 * ldk + m0, ldk, nr, nc, dwl + m0 * cff + j0, cff, 0);
            }
        } else if (!direct) {
          for (int64_t j = 0; j < cff; ++j)
            for (int64_t m = 0; m < k; ++m) dwl[j * k + m] += acc[j * ldk + m];
        }
        if (dbias)
          for (int64_t m = 0; m < k; ++m) {
            float s = 0.0f;
            for (int64_t b = 0; b < g.b; ++b) s += cl[b * ldk + m];
            dbias[m * locs + l] += s;
          }
      }
    }
  });
}
void LcWeightGrad(const LcGeometry& g, const float* img, const float* code, float* dw, bool k_inner,
                  float* dbias) {
  if (MapLanes(g.k) == 8) return LcWeightGradL<8>(g, img, code, dw, k_inner, dbias);
  LcWeightGradL<kLanes>(g, img, code, dw, k_inner, dbias);
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
      w_(name + ".w", {oh_, ow_, in.c, field, field, maps}),
      b_(name + ".b", {maps, oh_, ow_}) {
  CHECK(field <= in.h && field <= in.w && stride >= 1) << "locally connected: bad geometry";
  const float bound = 1.0f / std::sqrt(static_cast<float>(in.c * field * field));
  for (float& v : w_.value.span()) v = rng->Uniform(-bound, bound);
}

Tensor LocallyConnected2d::Filters() const {
  const int64_t locs = oh_ * ow_, cff = in_.c * f_ * f_;
  Tensor out({oh_, ow_, k_, in_.c, f_, f_});
  for (int64_t l = 0; l < locs; ++l)
    for (int64_t m = 0; m < k_; ++m)
      for (int64_t j = 0; j < cff; ++j) out[(l * k_ + m) * cff + j] = w_.value[(l * cff + j) * k_ + m];
  return out;
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
  LcImageToCode(g, x.data(), w_.value.data(), /*k_inner=*/true, has_bias_ ? b_.value.data() : nullptr,
                y->data());
}

// dW_l += dy_l^T P_l(x); db_l += sum_b dy_l; dx = sum_l scatter(dy_l W_l)
void LocallyConnected2d::Backward(const Tensor& dy, Tensor* dx) {
  const Tensor& x = *x_;
  const LcGeometry g{x.dim(0), in_.c, in_.h, in_.w, k_, f_, s_, oh_, ow_};
  LcWeightGrad(g, x.data(), dy.data(), w_.grad.data(), /*k_inner=*/true,
               has_bias_ ? b_.grad.data() : nullptr);
  if (!dx) return;
  dx->Resize(x.shape());
  LcCodeToImage(g, dy.data(), w_.value.data(), /*k_inner=*/true, dx->data());
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
  LcCodeToImage(g, x.data(), w_.value.data(), /*k_inner=*/false, y->data());
  const int64_t img = out_.c * out_.h * out_.w;
  float* yp = y->data();
  const float* bp = b_.value.data();
  ParallelFor(img, 1024, [&](int64_t lo, int64_t hi) {
    for (int64_t b = 0; b < x.dim(0); ++b)
      for (int64_t i = lo; i < hi; ++i) yp[b * img + i] += bp[i];
  });
}

// dW_l += x_l^T P_l(dy); db += sum_b dy; dx_l = P_l(dy) W_l^T
void LocallyConnectedTranspose2d::Backward(const Tensor& dy, Tensor* dx) {
  const Tensor& x = *x_;
  const LcGeometry g{x.dim(0), out_.c, out_.h, out_.w, k_, f_, s_, oh_, ow_};
  LcWeightGrad(g, dy.data(), x.data(), w_.grad.data(), /*k_inner=*/false, nullptr);
  const int64_t img = out_.c * out_.h * out_.w;
  const float* dyp = dy.data();
  float* gp = b_.grad.data();
  ParallelFor(img, 1024, [&](int64_t lo, int64_t hi) {
    for (int64_t b = 0; b < x.dim(0); ++b)
      for (int64_t i = lo; i < hi; ++i) gp[i] += dyp[b * img + i];
  });
  if (!dx) return;
  dx->Resize(x.shape());
  LcImageToCode(g, dy.data(), w_.value.data(), /*k_inner=*/false, nullptr, dx->data());
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

namespace {

// Which lanes of a vector a load or store touches: lanes [lo, hi). The lanes left out read as 0
// and their addresses are never touched, so a row's first or last block may reach past the row.
#if defined(__AVX512F__)
using LaneMask = __mmask16;
inline LaneMask LaneRange(int lo, int hi) { return static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1)); }
inline vf LoadLanes(const float* p, LaneMask m) { return reinterpret_cast<vf>(_mm512_maskz_loadu_ps(m, p)); }
inline void StoreLanes(float* p, vf v, LaneMask m) { _mm512_mask_storeu_ps(p, m, reinterpret_cast<__m512>(v)); }
#elif defined(__AVX2__)
using LaneMask = __m256i;
inline LaneMask LaneRange(int lo, int hi) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_and_si256(_mm256_cmpgt_epi32(lane, _mm256_set1_epi32(lo - 1)),
                          _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), lane));
}
inline vf LoadLanes(const float* p, LaneMask m) { return reinterpret_cast<vf>(_mm256_maskload_ps(p, m)); }
inline void StoreLanes(float* p, vf v, LaneMask m) { _mm256_maskstore_ps(p, m, reinterpret_cast<__m256>(v)); }
#else
struct LaneMask { int lo, hi; };
inline LaneMask LaneRange(int lo, int hi) { return {lo, hi}; }
inline vf LoadLanes(const float* p, LaneMask m) {
  vf v = {};
  for (int l = m.lo; l < m.hi; ++l) v[l] = p[l];
  return v;
}
inline void StoreLanes(float* p, vf v, LaneMask m) {
  for (int l = m.lo; l < m.hi; ++l) p[l] = v[l];
}
#endif
// Stores lanes [0, n) of v: a plain store for a whole vector (masked stores are slow on some
// cores), else masked.
inline void StoreFirst(float* p, vf v, int n, LaneMask m) {
  if (n == kLanes) return Store(p, v);
  StoreLanes(p, v, m);
}

// Calls f(i, nl, m) for i = 0, kLanes, 2 kLanes, ... < n: nl lanes from i, m their mask (whole
// vectors, then one masked vector for the rest). For passes over an image's maps with the
// per-pixel operands of a block loaded once, the maps innermost.
template <typename F>
void ForPixels(int64_t n, F f) {
  int64_t i = 0;
  const LaneMask whole = LaneRange(0, kLanes);
  for (; i + kLanes <= n; i += kLanes) f(i, kLanes, whole);
  if (i < n) f(i, static_cast<int>(n - i), LaneRange(0, static_cast<int>(n - i)));
}

// The largest window the one-pass pool handles (its last P row sums live in registers).
constexpr int64_t kMaxRing = 8;

// One plane of a stride-1 pool, in one pass: a block of up to kLanes output columns at a time,
// down the rows; each input row's window sums (P masked loads of x, squared) join the last P
// rows', whose sum is the output. Writes y and 1 / y, (OH, OW) each. P > 0 fixes the window at
// compile time (the loops unroll, the rows stay in registers); P = 0 takes it from `p`.
template <int P>
void PoolPlaneForward(const float* xp, int64_t h, int64_t w, int64_t p, float eps, float* yp, float* inv) {
  if (P > 0) p = P;
  const int64_t oh = h - p + 1, ow = w - p + 1;
  vf rows[P > 0 ? P : kMaxRing];
  for (int64_t jb = 0; jb < ow; jb += kLanes) {
    const int nl = static_cast<int>(std::min<int64_t>(kLanes, ow - jb));
    const LaneMask m = LaneRange(0, nl);
    auto row_sum = [&](int64_t k) {
      vf s = {};
      for (int64_t d = 0; d < p; ++d) {
        const vf v = LoadLanes(xp + k * w + jb + d, m);
        s += v * v;
      }
      return s;
    };
    for (int64_t k = 0; k + 1 < p; ++k) rows[k + 1] = row_sum(k);
    for (int64_t oy = 0; oy < oh; ++oy) {
#pragma GCC unroll 16
      for (int64_t k = 0; k + 1 < p; ++k) rows[k] = rows[k + 1];  // unrolled: else a call to memmove
      rows[p - 1] = row_sum(oy + p - 1);
      vf t = vf{} + eps;
      for (int64_t d = 0; d < p; ++d) t += rows[d];
      const vf r = Rsqrt(t);
      StoreFirst(inv + oy * ow + jb, r, nl, m);
      StoreFirst(yp + oy * ow + jb, t * r, nl, m);
    }
  }
}

// Its transpose, also in one pass: a block of input columns at a time, down the rows. Output row
// oy's ratio dy / y spread over each window's columns (P shifted masked loads of dy and 1 / y,
// the lanes outside the row left out) joins the last P rows'; their sum times x is dx.
template <int P>
void PoolPlaneBackward(const float* xp, const float* dyp, const float* inv, int64_t h, int64_t w,
                       int64_t p, float* dxp) {
  if (P > 0) p = P;
  const int64_t oh = h - p + 1, ow = w - p + 1;
  vf rows[P > 0 ? P : kMaxRing];
  LaneMask shifted[P > 0 ? P : kMaxRing];
  for (int64_t jb = 0; jb < w; jb += kLanes) {
    const int nl = static_cast<int>(std::min<int64_t>(kLanes, w - jb));
    const LaneMask m = LaneRange(0, nl);
    // Tap d: lane l is input column jb + l, fed by output column jb + l - d when in [0, OW).
    for (int64_t d = 0; d < p; ++d)
      shifted[d] = LaneRange(static_cast<int>(std::clamp<int64_t>(d - jb, 0, nl)),
                             static_cast<int>(std::clamp<int64_t>(ow - jb + d, 0, nl)));
    for (int64_t d = 0; d < p; ++d) rows[d] = vf{};
    for (int64_t i = 0; i < h; ++i) {
#pragma GCC unroll 16
      for (int64_t k = 0; k + 1 < p; ++k) rows[k] = rows[k + 1];  // unrolled: else a call to memmove
      vf c = {};
      if (i < oh)
        for (int64_t d = 0; d < p; ++d) {
          const int64_t at = i * ow + jb - d;
          c += LoadLanes(dyp + at, shifted[d]) * LoadLanes(inv + at, shifted[d]);
        }
      rows[p - 1] = c;
      vf sum = rows[0];
      for (int64_t d = 1; d < p; ++d) sum += rows[d];
      StoreFirst(dxp + i * w + jb, sum * LoadLanes(xp + i * w + jb, m), nl, m);
    }
  }
}

}  // namespace

// x (B, C, H, W) -> y (B, C, OH, OW) = sqrt(eps + sum_window x^2)
void L2Pool::Forward(const Tensor& x, Tensor* y) {
  CHECK(x.ndim() == 4 && x.dim(2) >= p_ && x.dim(3) >= p_) << "l2 pool: input " << x.ShapeString();
  x_ = &x;
  const int64_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3);
  const int64_t oh = (h - p_) / s_ + 1, ow = (w - p_) / s_ + 1;
  y->Resize({x.dim(0), x.dim(1), oh, ow});
  if (Streamed()) {
    saved_.Resize({planes, oh * ow});
    const auto plane = p_ == 3 ? PoolPlaneForward<3> : p_ == 5 ? PoolPlaneForward<5> : PoolPlaneForward<0>;
    ParallelFor(planes, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t pl = lo; pl < hi; ++pl)
        plane(x.data() + pl * h * w, h, w, p_, eps_, y->data() + pl * oh * ow, saved_.data() + pl * oh * ow);
    });
    return;
  }
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
            for (int64_t ox = 0; ox < ow; ++ox) yr[ox] += xr[ox * s_] * xr[ox * s_];
          }
        for (int64_t ox = 0; ox < ow; ++ox) yr[ox] = std::sqrt(yr[ox]);
      }
    }
  });
  saved_ = *y;
}

// dx[i] = sum over the windows containing i of dy * x[i] / y
void L2Pool::Backward(const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  const Tensor& x = *x_;
  const int64_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3);
  const int64_t oh = (h - p_) / s_ + 1, ow = (w - p_) / s_ + 1;
  dx->Resize(x.shape());
  if (Streamed()) {
    const auto plane = p_ == 3 ? PoolPlaneBackward<3> : p_ == 5 ? PoolPlaneBackward<5> : PoolPlaneBackward<0>;
    ParallelFor(planes, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t pl = lo; pl < hi; ++pl)
        plane(x.data() + pl * h * w, dy.data() + pl * oh * ow, saved_.data() + pl * oh * ow, h, w, p_,
              dx->data() + pl * h * w);
    });
    return;
  }
  ParallelFor(planes, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> ratio(ow);
    for (int64_t pl = lo; pl < hi; ++pl) {
      const float* xp = x.data() + pl * h * w;
      float* dp = dx->data() + pl * h * w;
      const float* dyp = dy.data() + pl * oh * ow;
      std::fill(dp, dp + h * w, 0.0f);
      for (int64_t oy = 0; oy < oh; ++oy) {
        const float* dyr = dyp + oy * ow;
        const float* yr = saved_.data() + pl * oh * ow + oy * ow;
        for (int64_t ox = 0; ox < ow; ++ox) ratio[ox] = dyr[ox] / yr[ox];
        for (int64_t a = 0; a < p_; ++a)
          for (int64_t c = 0; c < p_; ++c) {
            const int64_t row = (oy * s_ + a) * w + c;
            for (int64_t ox = 0; ox < ow; ++ox) dp[row + ox * s_] += ratio[ox] * xp[row + ox * s_];
          }
      }
    }
  });
}

bool L2Pool::Streamed() const { return s_ == 1 && p_ <= kMaxRing; }

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

int64_t LocalContrastNorm::SmoothScratch(int64_t h, int64_t w) const {
  const int64_t r = g_ / 2, wp = w + 2 * r;
  return 2 * (h + 2 * r) * wp + h * wp;
}

void LocalContrastNorm::SmoothPlane(const float* in, int64_t h, int64_t w, float scale, float* scratch,
                                    float* out) const {
  // The Gaussian is separable (g[a][d] = k1[a] k1[d]) and zero padding commutes with that: the
  // plane, into one padded by r zeros on every side, then a horizontal and a vertical pass of G
  // taps, each over the padded rows as one flat row (a window that crosses into the next row lands
  // in a padding column, never read), every loop a vector loop.
  const int64_t r = g_ / 2, wp = w + 2 * r;
  const float* k1 = kernel1_.data();
  float* pad = scratch;                      // (H + 2r, W + 2r): zero borders, never written
  float* rows = pad + (h + 2 * r) * wp;      // (H + 2r, W + 2r): the horizontal pass, zero rows around
  float* cols = rows + (h + 2 * r) * wp;     // (H, W + 2r): the vertical pass
  for (int64_t y = 0; y < h; ++y) CopyRow(in + y * w, nullptr, w, pad + (y + r) * wp + r);
  WeightedSumOfShifted(pad + r * wp, h * wp, g_, 1, k1, 1.0f, rows + r * wp);
  WeightedSumOfShifted(rows, h * wp, g_, wp, k1, scale, cols);
  for (int64_t y = 0; y < h; ++y) CopyRow(cols + y * wp, nullptr, w, out + y * w);
}

// Image by image, two passes over the maps while the image is in cache. The first sums each
// pixel's maps, Sx = sum_c x, and their spread about their own mean, Q = sum_c (x - Sx/C)^2 (the
// block's maps re-read from the first-level cache); then m = Smooth(Sx) / C and, exactly,
//   sum_c (x - m)^2 = Q + C (Sx/C - m)^2,
// so Smooth(v^2) needs no pass of its own; the second pass writes y = (x - m) / den. Keeps m and
// 1 / den (v is recomputed from x).
void LocalContrastNorm::Forward(const Tensor& x, Tensor* y) {
  CHECK(x.ndim() == 4) << "lcn: input " << x.ShapeString();
  x_ = &x;
  const int64_t nb = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3), hw = h * w;
  m_.Resize({nb, h, w});
  den_.Resize({nb, h, w});
  y->Resize(x.shape());
  const float fc = static_cast<float>(c), inv_c = 1.0f / fc;
  ParallelFor(nb, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> scratch(SmoothScratch(h, w), 0.0f), sx(hw), q(hw);
    for (int64_t b = lo; b < hi; ++b) {
      const float* xb = x.data() + b * c * hw;
      float* m = m_.data() + b * hw;
      float* d = den_.data() + b * hw;  // Smooth(v^2), then 1 / den
      ForPixels(hw, [&](int64_t i, int nl, LaneMask mk) {
        vf s = {}, ss = {};
        for (int64_t ci = 0; ci < c; ++ci) s += LoadLanes(xb + ci * hw + i, mk);
        const vf mean = s * inv_c;
        for (int64_t ci = 0; ci < c; ++ci) {
          const vf v = LoadLanes(xb + ci * hw + i, mk) - mean;
          ss += v * v;
        }
        StoreFirst(sx.data() + i, s, nl, mk);
        StoreFirst(q.data() + i, ss, nl, mk);
      });
      SmoothPlane(sx.data(), h, w, inv_c, scratch.data(), m);
      float* v2 = q.data();  // sum_c (x - m)^2
      for (int64_t i = 0; i < hw; ++i) {
        const float e = sx[i] * inv_c - m[i];
        v2[i] += fc * e * e;
      }
      SmoothPlane(v2, h, w, inv_c, scratch.data(), d);
      for (int64_t i = 0; i < hw; ++i) d[i] = 1.0f / std::sqrt(c0_ + d[i]);
      float* yb = y->data() + b * c * hw;
      ForPixels(hw, [&](int64_t i, int nl, LaneMask mk) {
        const vf mv = LoadLanes(m + i, mk), dv = LoadLanes(d + i, mk);
        for (int64_t ci = 0; ci < c; ++ci)
          StoreFirst(yb + ci * hw + i, (LoadLanes(xb + ci * hw + i, mk) - mv) * dv, nl, mk);
      });
    }
  });
}

// With v = x - m, s = Smooth(v^2), den = sqrt(c0 + s):
//   dv  = dy / den + 2 v * Smooth^T(ds),  ds = -sum_c (dy v) / den^2 * 1 / (2 den)
//   dx  = dv - Smooth^T(dv)   (Smooth^T broadcasts over c; g is symmetric)
// Image by image, two passes over the maps like Forward: the first sums, per pixel, dy v, dy and
// v over the maps; sum_c dv = Sdy / den + Sv * 2 Smooth^T(ds) / C follows from them, so the second
// pass writes dx = dv - Smooth^T(dv) at once.
void LocalContrastNorm::Backward(const Tensor& dy, Tensor* dx) {
  if (!dx) return;
  const Tensor& x = *x_;
  const int64_t nb = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3), hw = h * w;
  dx->Resize(x.shape());
  const float inv_c = 1.0f / static_cast<float>(c);
  ParallelFor(nb, 1, [&](int64_t lo, int64_t hi) {
    std::vector<float> scratch(SmoothScratch(h, w), 0.0f), ds(hw), sdy(hw), sv(hw), spread(hw), dm(hw);
    for (int64_t b = lo; b < hi; ++b) {
      const float* xb = x.data() + b * c * hw;
      const float* dyb = dy.data() + b * c * hw;
      float* dxb = dx->data() + b * c * hw;
      const float* m = m_.data() + b * hw;
      const float* inv = den_.data() + b * hw;
      ForPixels(hw, [&](int64_t i, int nl, LaneMask mk) {
        const vf mv = LoadLanes(m + i, mk);
        vf a = {}, g = {}, s = {};
        for (int64_t ci = 0; ci < c; ++ci) {
          const vf gv = LoadLanes(dyb + ci * hw + i, mk), v = LoadLanes(xb + ci * hw + i, mk) - mv;
          a += gv * v;
          g += gv;
          s += v;
        }
        const vf iv = LoadLanes(inv + i, mk);
        StoreFirst(ds.data() + i, -0.5f * a * iv * iv * iv, nl, mk);
        StoreFirst(sdy.data() + i, g, nl, mk);
        StoreFirst(sv.data() + i, s, nl, mk);
      });
      // Smooth of a single map is Smooth^T of ds, broadcast over the maps below.
      SmoothPlane(ds.data(), h, w, 1.0f, scratch.data(), spread.data());
      float* dv_sum = ds.data();  // sum_c dv
      for (int64_t i = 0; i < hw; ++i) dv_sum[i] = sdy[i] * inv[i] + sv[i] * 2.0f * spread[i] * inv_c;
      SmoothPlane(dv_sum, h, w, inv_c, scratch.data(), dm.data());  // (1/C) g * sum_c dv
      const float* sp = spread.data();
      ForPixels(hw, [&](int64_t i, int nl, LaneMask mk) {
        const vf iv = LoadLanes(inv + i, mk), mv = LoadLanes(m + i, mk), dmv = LoadLanes(dm.data() + i, mk);
        const vf svv = 2.0f * LoadLanes(sp + i, mk) * inv_c;
        for (int64_t ci = 0; ci < c; ++ci) {
          const int64_t at = ci * hw + i;
          StoreFirst(dxb + at, LoadLanes(dyb + at, mk) * iv + (LoadLanes(xb + at, mk) - mv) * svv - dmv, nl, mk);
        }
      });
    }
  });
}

}  // namespace distbelief
