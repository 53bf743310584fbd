// Whole-model gradients against finite differences of the loss: the transformer block, the GPT
// and the seq2seq model (whose decoder hands gradients back into the encoder's final states).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "distbelief/models/gan.h"
#include "distbelief/models/gpt.h"
#include "distbelief/models/seq2seq.h"
#include "testing/gradient_check.h"

namespace distbelief {
namespace {

Tensor Ids(const Shape& s, int64_t vocab, uint64_t seed) {
  Random rng(seed);
  Tensor t(s);
  for (float& v : t.span()) v = static_cast<float>(rng.UniformInt(vocab));
  return t;
}

// Compares analytic gradients (already in p->grad) with central differences of `loss` on a few
// coordinates of every parameter. Returns the worst relative error.
// Perturbations of h = 1e-3: the embeddings start near 0.02 in size and pass through layer norm,
// so larger steps leave the linear regime. With float forward passes, (L+ - L-) / 2h carries
// about 5e-5 of rounding noise, so smaller differences are not held against the gradient.
double WorstModelGradError(const std::vector<Param*>& params, const std::function<double()>& loss,
                           std::string* worst) {
  Random rng(5);
  double max_err = 0.0;
  for (Param* p : params) {
    double scale = 1e-4;
    for (float g : p->grad.span()) scale = std::max(scale, double(std::abs(g)));
    for (int s = 0; s < 6; ++s) {
      const int64_t i = rng.UniformInt(p->value.size());
      const float saved = p->value[i];
      const double h = 1e-3;
      p->value[i] = saved + h;
      const double lp = loss();
      p->value[i] = saved - h;
      const double lm = loss();
      p->value[i] = saved;
      const double num = (lp - lm) / (2 * h), a = p->grad[i];
      const double err = std::abs(num - a) / std::max({1e-2 * scale, 5e-5 / 3e-2, std::abs(a), std::abs(num)});
      if (err > max_err) {
        max_err = err;
        *worst = p->name + "[" + std::to_string(i) + "] analytic " + std::to_string(a) +
                 " numeric " + std::to_string(num);
      }
    }
  }
  return max_err;
}

TEST(TransformerBlock, GradientsMatchFiniteDifferences) {
  Random rng(1);
  TransformerBlock block("h0", 8, 2, &rng);
  Tensor x({2, 5, 8});
  for (float& v : x.span()) v = static_cast<float>(rng.Normal());
  const auto r = testing::CheckLayerGradients(&block, &x);
  EXPECT_LT(r.max_rel_error, 2e-2) << r.worst;
}

class GptTest : public ::testing::TestWithParam<int> {};
INSTANTIATE_TEST_SUITE_P(Layers, GptTest, ::testing::Values(0, 1, 2));

TEST_P(GptTest, LossGradientsMatchFiniteDifferences) {
  GptOptions o;
  o.vocab = 11;
  o.context = 6;
  o.width = 8;
  o.layers = GetParam();
  o.heads = 2;
  Gpt gpt(o, 3);
  const Tensor tokens = Ids({3, 6}, 11, 4), targets = Ids({3, 6}, 11, 5);
  gpt.ZeroGrad();
  const double loss0 = gpt.Forward(tokens, targets);
  EXPECT_NEAR(loss0, std::log(11.0), 0.5);  // a fresh model is near uniform
  gpt.Backward();
  std::string worst;
  const double err = WorstModelGradError(gpt.params(), [&] { return gpt.Forward(tokens, targets); }, &worst);
  EXPECT_LT(err, 3e-2) << worst;
  EXPECT_GT(gpt.NumNonEmbeddingParams(), 0);
}

// Decoding with the key/value cache gives, position by position, the logits of a full forward
// pass, for several sequences at once; a gathered cache continues the rows it took.
TEST_P(GptTest, CachedStepsEqualTheFullForward) {
  GptOptions o;
  o.vocab = 13;
  o.context = 9;
  o.width = 12;
  o.layers = GetParam();
  o.heads = 3;
  Gpt gpt(o, 4);
  const int64_t B = 3, T = 9;
  const Tensor tokens = Ids({B, T}, 13, 6);
  gpt.Forward(tokens, tokens);
  const Tensor full = gpt.logits();  // (B, T, V)
  Gpt::Cache cache = gpt.NewCache(B);
  Tensor tok({B}), logits;
  double worst = 0.0;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t b = 0; b < B; ++b) tok[b] = tokens[b * T + t];
    gpt.Step(tok, &cache, &logits);
    ASSERT_EQ(logits.dim(0), B);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t v = 0; v < o.vocab; ++v)
        worst = std::max(worst, std::abs(double(logits[b * o.vocab + v]) - full[(b * T + t) * o.vocab + v]));
    if (t == 4) {  // continue rows 2 and 0 only, from their caches
      Gpt::Cache g = Gpt::Gather(cache, {2, 0});
      Tensor two({2}), lg;
      two[0] = tokens[2 * T + 5];
      two[1] = tokens[0 * T + 5];
      gpt.Step(two, &g, &lg);
      for (int64_t v = 0; v < o.vocab; ++v) {
        worst = std::max(worst, std::abs(double(lg[v]) - full[(2 * T + 5) * o.vocab + v]));
        worst = std::max(worst, std::abs(double(lg[o.vocab + v]) - full[(0 * T + 5) * o.vocab + v]));
      }
    }
  }
  EXPECT_LT(worst, 1e-4);
}

TEST(Seq2Seq, GradientsReachTheEncoderThroughItsFinalState) {
  Seq2SeqOptions o;
  o.src_vocab = 7;
  o.tgt_vocab = 9;
  o.embedding = 5;
  o.hidden = 6;
  o.layers = 2;
  Seq2Seq model(o, 6);
  const Tensor src = Ids({2, 4}, 7, 7), tin = Ids({2, 3}, 9, 8), tout = Ids({2, 3}, 9, 9);
  model.ZeroGrad();
  model.Forward(src, tin, tout);
  model.Backward();
  std::string worst;
  const double err = WorstModelGradError(model.params(), [&] { return model.Forward(src, tin, tout); }, &worst);
  EXPECT_LT(err, 3e-2) << worst;
  // The encoder's only route to the loss is the final state: its gradient must not be zero.
  double enc = 0.0;
  for (Param* p : model.params())
    if (p->name.rfind("enc0", 0) == 0)
      for (float g : p->grad.span()) enc += std::abs(g);
  EXPECT_GT(enc, 0.0);
}

TEST(Gan, DiscriminatorLearnsToTellRealFromNoise) {
  GanOptions o;
  o.noise = 8;
  o.g_hidden = {16};
  o.d_hidden = {16};
  o.image = 10;
  Gan gan(o, 10);
  OptimizerOptions opt;
  opt.learning_rate = 0.05f;
  Sgd d_rule(opt);
  OptimizerOptions frozen = opt;
  frozen.learning_rate = 1e-9f;  // hold G nearly still: D alone should win
  Sgd g_rule(frozen);
  Tensor real({32, 10});
  for (int64_t i = 0; i < real.size(); ++i) real[i] = (i % 10) < 5 ? 0.9f : -0.9f;
  GanLosses first = gan.Step(real, d_rule, g_rule), last;
  for (int i = 0; i < 200; ++i) last = gan.Step(real, d_rule, g_rule);
  EXPECT_TRUE(std::isfinite(last.g_loss));
  EXPECT_LT(last.d_loss, 0.5 * first.d_loss);
}

}  // namespace
}  // namespace distbelief
