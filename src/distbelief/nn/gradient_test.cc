// Every layer's gradient against central finite differences, for several shapes including odd
// sizes and batch 1.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "distbelief/nn/dense.h"
#include "distbelief/nn/loss.h"
#include "distbelief/nn/sequence.h"
#include "distbelief/nn/spatial.h"
#include "testing/gradient_check.h"

namespace distbelief {
namespace {

constexpr double kTolerance = 2e-2;  // measured worst case 8e-3 (LSTM), a 10% error fails

Tensor RandomTensor(const Shape& s, uint64_t seed, float scale = 1.0f) {
  Random rng(seed);
  Tensor t(s);
  for (float& v : t.span()) v = scale * static_cast<float>(rng.Normal());
  return t;
}

void ExpectGradientsMatch(Layer* layer, Tensor x, bool skip_input = false) {
  const auto r = testing::CheckLayerGradients(layer, &x, skip_input);
  EXPECT_LT(r.max_rel_error, kTolerance) << layer->Kind() << " " << x.ShapeString() << ": " << r.worst;
}

class BatchTest : public ::testing::TestWithParam<int> {};
INSTANTIATE_TEST_SUITE_P(Batches, BatchTest, ::testing::Values(1, 3, 8));

TEST_P(BatchTest, Linear) {
  Random rng(1);
  Linear l("fc", 7, 5, &rng);
  ExpectGradientsMatch(&l, RandomTensor({GetParam(), 7}, 2));
  Linear l3("fc3", 4, 6, &rng, /*bias=*/false);
  ExpectGradientsMatch(&l3, RandomTensor({GetParam(), 3, 4}, 3));
}

// With parameter gradients off, Linear still gives the same dx and leaves its grads alone.
TEST(Linear, ParamGradsOffGivesOnlyTheInputGradient) {
  Random rng(4);
  Linear l("fc", 6, 3, &rng);
  const Tensor x = RandomTensor({5, 6}, 5), dy = RandomTensor({5, 3}, 6);
  Tensor y, dx_on, dx_off;
  l.Forward(x, &y);
  l.Backward(dy, &dx_on);
  const std::vector<float> grad(l.weight().grad.data(), l.weight().grad.data() + 18);
  EXPECT_NE(grad, std::vector<float>(18, 0.0f));
  l.SetParamGrads(false);
  l.Forward(x, &y);
  l.Backward(dy, &dx_off);
  EXPECT_EQ(std::vector<float>(l.weight().grad.data(), l.weight().grad.data() + 18), grad);
  EXPECT_EQ(std::vector<float>(dx_on.data(), dx_on.data() + 30), std::vector<float>(dx_off.data(), dx_off.data() + 30));
}

TEST_P(BatchTest, Activations) {
  for (Activation f : {Activation::kSigmoid, Activation::kTanh, Activation::kRelu, Activation::kGelu}) {
    ActivationLayer a(f);
    ExpectGradientsMatch(&a, RandomTensor({GetParam(), 9}, 4));
  }
}

TEST_P(BatchTest, Maxout) {
  Maxout m(3);
  ExpectGradientsMatch(&m, RandomTensor({GetParam(), 12}, 5));
}

TEST_P(BatchTest, LayerNorm) {
  LayerNorm ln("ln", 11);
  Random rng(6);
  for (Param* p : ln.params())
    for (float& v : p->value.span()) v += rng.Uniform(-0.5f, 0.5f);
  ExpectGradientsMatch(&ln, RandomTensor({GetParam(), 2, 11}, 7));
}

TEST_P(BatchTest, Embedding) {
  Random rng(8);
  Embedding e("emb", 13, 6, 5, &rng);
  Tensor ids({GetParam(), 5});
  for (float& v : ids.span()) v = static_cast<float>(rng.UniformInt(13));
  ExpectGradientsMatch(&e, ids, /*skip_input=*/true);
}

TEST_P(BatchTest, LocallyConnected) {
  Random rng(9);
  // Odd sizes: 2 maps in, 3 out, 11x9 input, 4x4 fields (CFF = 32), stride 3.
  LocallyConnected2d lc("lc", {2, 11, 9}, 3, 4, 3, &rng);
  ExpectGradientsMatch(&lc, RandomTensor({GetParam(), 2, 11, 9}, 10));
  // More maps than one register block and a field whose size is not a multiple of 16.
  LocallyConnected2d lc2("lc2", {1, 8, 8}, 10, 5, 3, &rng);
  ExpectGradientsMatch(&lc2, RandomTensor({GetParam(), 1, 8, 8}, 11));
  // Maps filling whole vectors (read in place), and more maps than one chunk of vectors.
  LocallyConnected2d lc3("lc3", {2, 6, 6}, 16, 3, 2, &rng);
  ExpectGradientsMatch(&lc3, RandomTensor({GetParam(), 2, 6, 6}, 12));
  LocallyConnected2d lc4("lc4", {1, 5, 5}, 72, 3, 2, &rng);
  ExpectGradientsMatch(&lc4, RandomTensor({GetParam(), 1, 5, 5}, 13));
  // At most 8 maps, even fields, stride and width: the weight gradient's tap pairs (AVX-512).
  LocallyConnected2d lc5("lc5", {2, 7, 8}, 5, 4, 2, &rng);
  ExpectGradientsMatch(&lc5, RandomTensor({GetParam(), 2, 7, 8}, 14));
}

// Batches of more than one vector of images, the last one partly padding: the images are laid
// out batch innermost (or as pixel pairs) for the forward pass and the weight gradient.
TEST(LocallyConnected, GradientsAtBatchesOfSeveralVectors) {
  for (int64_t b : {20, 37}) {
    Random rng(50 + b);
    LocallyConnected2d pairs("pairs", {2, 7, 8}, 5, 4, 2, &rng);
    ExpectGradientsMatch(&pairs, RandomTensor({b, 2, 7, 8}, 51));
    LocallyConnected2d maps("maps", {2, 7, 8}, 16, 3, 2, &rng);
    ExpectGradientsMatch(&maps, RandomTensor({b, 2, 7, 8}, 52));
    LocallyConnectedTranspose2d lct("lct", {2, 7, 8}, 5, 4, 2, &rng);
    ExpectGradientsMatch(&lct, RandomTensor({b, 5, 2, 3}, 53));
  }
}

TEST_P(BatchTest, LocallyConnectedTranspose) {
  Random rng(34);
  LocallyConnectedTranspose2d lct("lct", {2, 11, 9}, 3, 4, 3, &rng);
  ExpectGradientsMatch(&lct, RandomTensor({GetParam(), 3, 3, 2}, 35));
  LocallyConnectedTranspose2d lct2("lct2", {2, 6, 6}, 16, 3, 2, &rng);
  ExpectGradientsMatch(&lct2, RandomTensor({GetParam(), 16, 2, 2}, 39));
}

// Both layers' forward passes against the definitions, written the slow way, for map counts
// below, at and above a vector, batches below and above a register block, and fields of odd and
// even width (even widths with at most 8 maps take the kernels of tap pairs).
TEST(LocallyConnected, ForwardIsTheDefinition) {
  const int64_t c = 2, h = 9, w = 8, s = 2;
  for (int64_t f : {3, 4})
    for (int64_t k : {5, 8, 16, 40})
    for (int64_t b : {3, 37}) {
      const int64_t oh = (h - f) / s + 1, ow = (w - f) / s + 1;
      Random rng(40 + k);
      LocallyConnected2d lc("lc", {c, h, w}, k, f, s, &rng);
      for (float& v : lc.params()[1]->value.span()) v = rng.Uniform(-1.0f, 1.0f);
      LocallyConnectedTranspose2d lct("lct", {c, h, w}, k, f, s, &rng);
      const Tensor x = RandomTensor({b, c, h, w}, 41), z = RandomTensor({b, k, oh, ow}, 42);
      Tensor y, xt;
      lc.Forward(x, &y);
      lct.Forward(z, &xt);
      const Tensor filters = lc.Filters();  // (OH, OW, K, C, F, F)
      const Tensor& wd = lct.params()[0]->value, &bd = lct.params()[1]->value;
      std::vector<double> expect_xt(b * c * h * w);
      for (int64_t i = 0; i < b; ++i)
        for (int64_t l = 0; l < oh * ow; ++l)
          for (int64_t m = 0; m < k; ++m) {
            const int64_t oy = l / ow, ox = l % ow;
            double acc = lc.params()[1]->value[m * oh * ow + l];
            for (int64_t ci = 0; ci < c; ++ci)
              for (int64_t fy = 0; fy < f; ++fy)
                for (int64_t fx = 0; fx < f; ++fx) {
                  const int64_t j = (ci * f + fy) * f + fx;
                  const int64_t at = ((i * c + ci) * h + oy * s + fy) * w + ox * s + fx;
                  acc += double(filters[(l * k + m) * c * f * f + j]) * x[at];
                  expect_xt[at] += double(wd[(l * k + m) * c * f * f + j]) * z[((i * k + m) * oh + oy) * ow + ox];
                }
            ASSERT_NEAR(y[((i * k + m) * oh + oy) * ow + ox], acc, 1e-4) << "f " << f << " k " << k << " b " << b;
          }
      for (int64_t i = 0; i < b * c * h * w; ++i)
        ASSERT_NEAR(xt[i], expect_xt[i] + bd[i % (c * h * w)], 1e-4) << "f " << f << " k " << k << " b " << b;
    }
}

TEST(LocallyConnected, TransposeIsTheAdjoint) {
  // <LC(x), z> = <x, LC^T(z)> when both share weights and have no bias.
  Random rng(36);
  LocallyConnected2d lc("lc", {2, 10, 10}, 5, 4, 2, &rng, /*bias=*/false);
  LocallyConnectedTranspose2d lct("lct", {2, 10, 10}, 5, 4, 2, &rng);
  lct.params()[0]->value = lc.Filters();  // the same weights in the decoder's layout
  Tensor x = RandomTensor({3, 2, 10, 10}, 37), z = RandomTensor({3, 5, 4, 4}, 38), y, xt;
  lc.Forward(x, &y);
  lct.Forward(z, &xt);
  double a = 0, b = 0;
  for (int64_t i = 0; i < y.size(); ++i) a += double(y[i]) * z[i];
  for (int64_t i = 0; i < x.size(); ++i) b += double(x[i]) * xt[i];
  EXPECT_NEAR(a, b, 1e-3 * std::abs(a));
}

TEST_P(BatchTest, Conv2d) {
  Random rng(12);
  Conv2d conv("conv", {2, 7, 6}, 3, 3, 2, 1, &rng);
  ExpectGradientsMatch(&conv, RandomTensor({GetParam(), 2, 7, 6}, 13));
}

TEST_P(BatchTest, L2Pool) {
  L2Pool pool(3, 2);
  ExpectGradientsMatch(&pool, RandomTensor({GetParam(), 2, 7, 8}, 14));
  L2Pool overlap(2, 1);
  ExpectGradientsMatch(&overlap, RandomTensor({GetParam(), 1, 5, 5}, 15));
  // Stride 1 runs in one pass down the rows, a block of 16 (or 8) columns at a time, windows 3
  // and 5 compiled apart: rows wider than two blocks (a partial last block), each window size,
  // and a window too large for the one pass (the direct loops).
  for (int64_t p : {3, 4, 5}) {
    L2Pool wide(p, 1);
    ExpectGradientsMatch(&wide, RandomTensor({GetParam(), 2, 7, 37}, 16 + p));
  }
  L2Pool large(9, 1);
  ExpectGradientsMatch(&large, RandomTensor({GetParam(), 1, 10, 12}, 23));
}

TEST_P(BatchTest, LocalContrastNorm) {
  LocalContrastNorm lcn(5, 1.5f);
  ExpectGradientsMatch(&lcn, RandomTensor({GetParam(), 2, 6, 7}, 16));
}

TEST(L2Pool, ForwardIsTheDefinition) {
  // (window, stride, width): the direct loops (stride 2, window 9) and the one-pass kernel for
  // windows 3 and 5 (compiled apart) and 4, over one block of columns and over three.
  const int64_t cases[][3] = {{3, 1, 9}, {3, 2, 9}, {3, 1, 37}, {5, 1, 37}, {4, 1, 21}, {9, 1, 19}};
  for (const auto& c : cases) {
    const int64_t p = c[0], stride = c[1], h = 18, w = c[2];
    L2Pool pool(p, stride, 1e-4f);
    const Tensor x = RandomTensor({2, 3, h, w}, 22);
    Tensor y;
    pool.Forward(x, &y);
    const int64_t oh = (h - p) / stride + 1, ow = (w - p) / stride + 1;
    ASSERT_EQ(y.dim(2), oh);
    ASSERT_EQ(y.dim(3), ow);
    for (int64_t pl = 0; pl < 6; ++pl)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          double s = 1e-4;
          for (int64_t a = 0; a < p; ++a)
            for (int64_t b = 0; b < p; ++b) {
              const double v = x[(pl * h + oy * stride + a) * w + ox * stride + b];
              s += v * v;
            }
          ASSERT_NEAR(y[(pl * oh + oy) * ow + ox], std::sqrt(s), 1e-5 * std::sqrt(s))
              << "window " << p << " stride " << stride << " width " << w << " at " << pl << "," << oy << "," << ox;
        }
  }
}

// The forward pass against its definition, written the slow way: a 2-D Gaussian over all maps,
// zero padding, subtract, divide.
TEST(LocalContrastNorm, ForwardIsTheDefinition) {
  const int64_t b = 2, c = 3, h = 7, w = 9, g = 5, r = 2;
  const float sigma = 1.5f, c0 = 1e-2f;
  LocalContrastNorm lcn(g, sigma, c0);
  const Tensor x = RandomTensor({b, c, h, w}, 21);
  Tensor y;
  lcn.Forward(x, &y);
  std::vector<double> k(g * g);
  double total = 0.0;
  for (int64_t i = 0; i < g * g; ++i)
    total += k[i] = std::exp(-double((i / g - r) * (i / g - r) + (i % g - r) * (i % g - r)) / (2.0 * sigma * sigma));
  auto smooth = [&](const std::vector<double>& in, int64_t bi, int64_t yy, int64_t xx) {
    double s = 0.0;
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t a = -r; a <= r; ++a)
        for (int64_t d = -r; d <= r; ++d) {
          const int64_t py = yy + a, px = xx + d;
          if (py >= 0 && py < h && px >= 0 && px < w)
            s += k[(a + r) * g + d + r] / total / c * in[((bi * c + ci) * h + py) * w + px];
        }
    return s;
  };
  std::vector<double> xs(x.data(), x.data() + x.size()), v(x.size()), v2(x.size());
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t i = 0; i < h * w; ++i) {
      const double m = smooth(xs, bi, i / w, i % w);
      for (int64_t ci = 0; ci < c; ++ci) {
        const int64_t j = (bi * c + ci) * h * w + i;
        v[j] = xs[j] - m;
        v2[j] = v[j] * v[j];
      }
    }
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t i = 0; i < h * w; ++i) {
      const double den = std::sqrt(c0 + smooth(v2, bi, i / w, i % w));
      for (int64_t ci = 0; ci < c; ++ci) {
        const int64_t j = (bi * c + ci) * h * w + i;
        EXPECT_NEAR(y[j], v[j] / den, 1e-4) << j;
      }
    }
}

TEST_P(BatchTest, Lstm) {
  Random rng(17);
  Lstm lstm("lstm", 5, 7, &rng);
  ExpectGradientsMatch(&lstm, RandomTensor({GetParam(), 4, 5}, 18));
}

TEST_P(BatchTest, LstmInitialState) {
  Random rng(19);
  Lstm lstm("lstm", 3, 4, &rng);
  Tensor h0 = RandomTensor({GetParam(), 4}, 20, 0.5f), c0 = RandomTensor({GetParam(), 4}, 21, 0.5f);
  lstm.SetInitialState(h0, c0);
  ExpectGradientsMatch(&lstm, RandomTensor({GetParam(), 3, 3}, 22));
  // dh0 from Backward against a finite difference on h0[0].
  Tensor x = RandomTensor({GetParam(), 3, 3}, 22), y, dy;
  lstm.Forward(x, &y);
  dy = RandomTensor(y.shape(), 23);
  lstm.Backward(dy, nullptr);
  const float analytic = lstm.dh0()[0];
  auto probe = [&](float delta) {
    Tensor h = h0;
    h[0] += delta;
    lstm.SetInitialState(h, c0);
    lstm.Forward(x, &y);
    double s = 0;
    for (int64_t i = 0; i < y.size(); ++i) s += double(dy[i]) * y[i];
    return s;
  };
  const double numeric = (probe(1e-2f) - probe(-1e-2f)) / 2e-2;
  EXPECT_NEAR(analytic, numeric, 1e-2 * std::max(1.0, std::abs(numeric)));
}

TEST_P(BatchTest, CausalSelfAttention) {
  Random rng(24);
  CausalSelfAttention att("att", 8, 2, &rng);
  ExpectGradientsMatch(&att, RandomTensor({GetParam(), 5, 8}, 25));
}

// The forward and backward go by blocks of 64 query rows (keys up to the block's last row only):
// 150 positions are three blocks, the last partial.
TEST(CausalSelfAttention, GradientsOverSeveralBlocksOfRows) {
  Random rng(27);
  CausalSelfAttention att("att", 8, 2, &rng);
  ExpectGradientsMatch(&att, RandomTensor({2, 150, 8}, 28));
}

// Every row of the blocked forward equals the cached step's direct softmax over all earlier keys.
TEST(CausalSelfAttention, ForwardEqualsTheCachedStepsPastOneBlock) {
  Random rng(29);
  CausalSelfAttention att("att", 8, 2, &rng);
  const int64_t nb = 2, nt = 150, c = 8;
  const Tensor x = RandomTensor({nb, nt, c}, 30);
  Tensor y;
  att.Forward(x, &y);
  CausalSelfAttention::KvCache cache{Tensor({nb, nt, c}), Tensor({nb, nt, c})};
  Tensor xt({nb, c}), yt;
  double worst = 0;
  for (int64_t t = 0; t < nt; ++t) {
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t e = 0; e < c; ++e) xt[b * c + e] = x[(b * nt + t) * c + e];
    att.Step(xt, t, &cache, &yt);
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t e = 0; e < c; ++e)
        worst = std::max(worst, std::abs(double(yt[b * c + e]) - y[(b * nt + t) * c + e]));
  }
  EXPECT_LT(worst, 1e-4);
}

// A layer wrapping a loss so the same checker covers it: y = [loss].
class LossAsLayer : public Layer {
 public:
  LossAsLayer(Loss* loss, const Tensor* target) : loss_(loss), target_(target) {}
  std::string Kind() const override { return "loss"; }
  void Forward(const Tensor& x, Tensor* y) override {
    y->Resize({1});
    (*y)[0] = static_cast<float>(loss_->Forward(x, *target_));
  }
  void Backward(const Tensor& dy, Tensor* dx) override {
    loss_->Backward(dx);
    for (float& v : dx->span()) v *= dy[0];
  }

 private:
  Loss* loss_;
  const Tensor* target_;
};

TEST_P(BatchTest, SoftmaxCrossEntropy) {
  SoftmaxCrossEntropy ce;
  Tensor target({GetParam()});
  for (int64_t i = 0; i < target.size(); ++i) target[i] = static_cast<float>(i % 6);
  LossAsLayer l(&ce, &target);
  ExpectGradientsMatch(&l, RandomTensor({GetParam(), 6}, 26));
}

// Row weights: the gradient of the weighted mean matches finite differences, and the value is
// sum w_i l_i / sum w_i over counted rows (an ignored row's weight counts for nothing).
TEST_P(BatchTest, WeightedSoftmaxCrossEntropy) {
  class Weighted : public Layer {
   public:
    Weighted(const Tensor* target, const Tensor* weight) : target_(target), weight_(weight) {}
    std::string Kind() const override { return "weighted_ce"; }
    void Forward(const Tensor& x, Tensor* y) override {
      y->Resize({1});
      (*y)[0] = static_cast<float>(ce.Forward(x, *target_, weight_));
    }
    void Backward(const Tensor& dy, Tensor* dx) override {
      ce.Backward(dx);
      for (float& v : dx->span()) v *= dy[0];
    }
    SoftmaxCrossEntropy ce;

   private:
    const Tensor* target_;
    const Tensor* weight_;
  };
  const int64_t n = GetParam();
  Tensor target({n}), weight({n});
  for (int64_t i = 0; i < n; ++i) {
    target[i] = i % 5 == 4 ? -1.0f : static_cast<float>(i % 6);
    weight[i] = 0.5f + static_cast<float>(i % 3) * 2.0f;
  }
  Weighted l(&target, &weight);
  const Tensor x = RandomTensor({n, 6}, 29);
  ExpectGradientsMatch(&l, x);

  // The value, against the plain cross entropy of each row alone.
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (target[i] < 0) continue;
    Tensor row({1, 6}), t({1});
    for (int64_t j = 0; j < 6; ++j) row[j] = x[i * 6 + j];
    t[0] = target[i];
    SoftmaxCrossEntropy one;
    num += weight[i] * one.Forward(row, t);
    den += weight[i];
  }
  Tensor y;
  l.Forward(x, &y);
  EXPECT_NEAR(y[0], den > 0 ? num / den : 0.0, 1e-5);
}

TEST_P(BatchTest, SigmoidCrossEntropy) {
  SigmoidCrossEntropy bce;
  Tensor target({GetParam(), 3});
  for (int64_t i = 0; i < target.size(); ++i) target[i] = i % 2 ? 1.0f : 0.0f;
  LossAsLayer l(&bce, &target);
  ExpectGradientsMatch(&l, RandomTensor({GetParam(), 3}, 39, 3.0f));
}

TEST_P(BatchTest, MeanSquaredError) {
  MeanSquaredError mse;
  Tensor target = RandomTensor({GetParam(), 5}, 27);
  LossAsLayer l(&mse, &target);
  ExpectGradientsMatch(&l, RandomTensor({GetParam(), 5}, 28));
}

TEST_P(BatchTest, IcaSparsity) {
  class IcaLayer : public Layer {
   public:
    std::string Kind() const override { return "ica"; }
    void Forward(const Tensor& x, Tensor* y) override {
      y->Resize({1});
      (*y)[0] = static_cast<float>(ica.Forward(x));
    }
    void Backward(const Tensor& dy, Tensor* dx) override {
      ica.Backward(dx);
      for (float& v : dx->span()) v *= dy[0];
    }
    IcaSparsity ica{0.1f, 1e-2f};
  } l;
  ExpectGradientsMatch(&l, RandomTensor({GetParam(), 7}, 29));
}

TEST(Dropout, MasksAndScalesInTrainingOnly) {
  Dropout d(0.25f, 30);
  Tensor x = RandomTensor({64, 64}, 31), y, dx;
  d.Forward(x, &y);
  int64_t zeros = 0;
  for (int64_t i = 0; i < y.size(); ++i) {
    if (y[i] == 0.0f) {
      ++zeros;
    } else {
      EXPECT_FLOAT_EQ(y[i], x[i] / 0.75f);
    }
  }
  EXPECT_NEAR(double(zeros) / y.size(), 0.25, 0.03);
  Tensor dy = RandomTensor(y.shape(), 32);
  d.Backward(dy, &dx);
  for (int64_t i = 0; i < y.size(); ++i) EXPECT_FLOAT_EQ(dx[i], y[i] == 0.0f ? 0.0f : dy[i] / 0.75f);
  d.SetTraining(false);
  d.Forward(x, &y);
  for (int64_t i = 0; i < y.size(); ++i) EXPECT_EQ(y[i], x[i]);
}

// The gradient checker itself must catch a wrong gradient.
TEST(GradientCheck, DetectsAWrongBackward) {
  class Broken : public ActivationLayer {
   public:
    Broken() : ActivationLayer(Activation::kTanh) {}
    void Backward(const Tensor& dy, Tensor* dx) override {
      ActivationLayer::Backward(dy, dx);
      (*dx)[1] *= 1.1f;
    }
  } b;
  Tensor x = RandomTensor({2, 4}, 33);
  EXPECT_GT(testing::CheckLayerGradients(&b, &x).max_rel_error, 0.05);
}

}  // namespace
}  // namespace distbelief
