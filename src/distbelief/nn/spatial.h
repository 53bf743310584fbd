// Spatial layers on images, layout (B, C, H, W): the cat network's building blocks.
// Legend: B = batch, C = input maps, H x W = input size, K = output maps, F = field (filter) size,
// S = stride, OH x OW = output size = ((H - F) / S + 1) x ((W - F) / S + 1).
#pragma once

#include <string>

#include "distbelief/base/random.h"
#include "distbelief/nn/layer.h"

namespace distbelief {

struct SpatialShape {
  int64_t c = 1, h = 0, w = 0;  // input maps and size
};

// Locally connected layer with untied weights (Le et al. 2012): every output location (oy, ox)
// has its own K filters over its F x F field in all C input maps.
// x (B, C, H, W) -> y (B, K, OH, OW);  W (OH, OW, C, F, F, K) (maps innermost), b (K, OH, OW).
// No field is unfolded: each pass lays the images out batch innermost (a 16 x 16 register
// transpose, into the calling thread's scratch, read by all threads), then per location the
// forward pass is a register-blocked (K x B) = (K x CFF)(CFF x B) product with vectors along the
// batch, each weight broadcast to 8 maps x 2-3 vectors of images; the weight gradient runs its
// vectors along the maps (two taps or two images per vector), and the input gradient gathers
// each pixel once over the locations covering it. Locations (or pixel rows) spread over the
// thread pool. Filters() gives the filters as (OH, OW, K, C, F, F) pictures.
class LocallyConnected2d : public Layer {
 public:
  LocallyConnected2d(const std::string& name, SpatialShape in, int64_t maps, int64_t field,
                     int64_t stride, Random* rng, bool bias = true);
  std::string Kind() const override { return "locally_connected"; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& dy, Tensor* dx) override;
  std::vector<Param*> params() override;
  int64_t out_h() const { return oh_; }
  int64_t out_w() const { return ow_; }
  Param& weight() { return w_; }
  // The weights as one F x F picture per (location, map, input map): (OH, OW, K, C, F, F).
  Tensor Filters() const;

 private:
  SpatialShape in_;
  int64_t k_, f_, s_, oh_, ow_;
  bool has_bias_;
  Param w_, b_;
  const Tensor* x_ = nullptr;
};

// The transpose (adjoint) of a locally connected layer: the cat network's decoder, mapping a code
// back to the image with its own untied weights (Le et al. 2012 learn encoding and decoding
// weights separately). x (B, K, OH, OW) -> y (B, C, H, W);  W (OH, OW, K, C, F, F), b (C, H, W):
// maps outermost, so each map's decoding basis at a location is one contiguous block (the cat
// network's norm bound acts on those blocks). Same kernels as the encoder, reading these weights
// in place (image -> code copies them per location when K is not a multiple of 8).
// The geometry (`out`, field, stride) is that of the encoder it mirrors.
class LocallyConnectedTranspose2d : public Layer {
 public:
  LocallyConnectedTranspose2d(const std::string& name, SpatialShape out, int64_t maps,
                              int64_t field, int64_t stride, Random* rng);
  std::string Kind() const override { return "locally_connected_transpose"; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& dy, Tensor* dx) override;
  std::vector<Param*> params() override { return {&w_, &b_}; }

 private:
  SpatialShape out_;
  int64_t k_, f_, s_, oh_, ow_;
  Param w_, b_;
  const Tensor* x_ = nullptr;
};

// Convolution with tied weights, zero padding `pad`: x (B, C, H, W) -> y (B, K, OH, OW) with
// OH = (H + 2 pad - F) / S + 1.  W (K, C, F, F), b (K). Unfolds each image and calls GEMM.
class Conv2d : public Layer {
 public:
  Conv2d(const std::string& name, SpatialShape in, int64_t maps, int64_t field, int64_t stride,
         int64_t pad, Random* rng);
  std::string Kind() const override { return "conv2d"; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& dy, Tensor* dx) override;
  std::vector<Param*> params() override { return {&w_, &b_}; }

 private:
  SpatialShape in_;
  int64_t k_, f_, s_, pad_, oh_, ow_;
  Param w_, b_;
  const Tensor* x_ = nullptr;
  Tensor cols_;  // (C F F, OH OW) scratch for one image
};

// L2 pooling within each map: y[b,c,oy,ox] = sqrt(eps + sum over the P x P window of x^2),
// windows every S pixels (overlapping when S < P). x (B, C, H, W) -> y (B, C, OH, OW).
// The pooling weights are fixed at 1, as in the cat network.
class L2Pool : public Layer {
 public:
  L2Pool(int64_t window, int64_t stride, float eps = 1e-4f) : p_(window), s_(stride), eps_(eps) {}
  std::string Kind() const override { return "l2_pool"; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& dy, Tensor* dx) override;

 private:
  int64_t p_, s_;
  float eps_;
  const Tensor* x_ = nullptr;
  // Stride 1 (and P <= 8): each plane in one pass down its rows, a block of columns at a time,
  // the last P rows' window sums in registers; 1 / y saved for Backward. Otherwise the direct
  // loops, y saved.
  bool Streamed() const;
  Tensor saved_;  // for Backward: 1 / y (B C, OH OW) when Streamed(), else y (B, C, OH, OW)
};

// Local contrast normalization (Jarrett et al. 2009, as in Le et al. 2012), same size in and out:
//   subtractive: v = x - sum_{c, window} g * x      (g Gaussian over G x G, summing to 1 over all
//                                                    C maps and the window; zero padding)
//   divisive:    y = v / sqrt(c0 + sum_{c, window} g * v^2)
// The smooth denominator sqrt(c0 + sigma^2) replaces Jarrett's max(c, sigma) so the layer is
// differentiable everywhere. x (B, C, H, W) -> y (B, C, H, W).
class LocalContrastNorm : public Layer {
 public:
  LocalContrastNorm(int64_t window, float sigma, float c0 = 1e-2f);
  std::string Kind() const override { return "lcn"; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& dy, Tensor* dx) override;

 private:
  // out[h,w] = scale * sum_{dy,dx} g[dy,dx] * in[h+dy,w+dx] for one plane (zero padding): `in`
  // and `out` (H,W). `scratch` holds SmoothScratch(h, w) floats, zeroed before its first use (the
  // padding stays zero). g is symmetric, so this map is its own adjoint (the layer's sums over the
  // maps, and their broadcast back, happen around it). Const; a thread needs scratch of its own.
  int64_t SmoothScratch(int64_t h, int64_t w) const;
  void SmoothPlane(const float* in, int64_t h, int64_t w, float scale, float* scratch, float* out) const;
  int64_t g_;
  float c0_;
  std::vector<float> kernel1_;  // (G): g = kernel1_ kernel1_^T, which sums to 1
  const Tensor* x_ = nullptr;   // the input of the last Forward; must outlive Backward
  Tensor m_, den_;              // the local mean m (B, H, W), 1 / den (B, H, W)
};

}  // namespace distbelief
