#include "distbelief/models/gan.h"

#include <cstring>

namespace distbelief {

Gan::Gan(const GanOptions& o, uint64_t seed) : o_(o), rng_(seed ^ 0x9e3779b97f4a7c15ULL) {
  Random init(seed);
  int64_t w = o.noise;
  for (size_t i = 0; i < o.g_hidden.size(); ++i) {
    g_.Add(std::make_unique<Linear>("g" + std::to_string(i), w, o.g_hidden[i], &init));
    g_.Add(std::make_unique<ActivationLayer>(Activation::kRelu));
    w = o.g_hidden[i];
  }
  g_.Add(std::make_unique<Linear>("g_out", w, o.image, &init));
  g_.Add(std::make_unique<ActivationLayer>(o.g_output));
  w = o.image;
  if (o.d_input_dropout > 0) d_.Add(std::make_unique<Dropout>(o.d_input_dropout, seed * 31 + 7));
  for (size_t i = 0; i < o.d_hidden.size(); ++i) {
    if (o.d_pieces > 1) {
      d_.Add(std::make_unique<Linear>("d" + std::to_string(i), w, o.d_hidden[i] * o.d_pieces, &init));
      d_.Add(std::make_unique<Maxout>(o.d_pieces));
    } else {
      d_.Add(std::make_unique<Linear>("d" + std::to_string(i), w, o.d_hidden[i], &init));
      d_.Add(std::make_unique<ActivationLayer>(Activation::kRelu));
    }
    if (o.d_dropout > 0) d_.Add(std::make_unique<Dropout>(o.d_dropout, seed * 31 + 8 + i));
    w = o.d_hidden[i];
  }
  d_.Add(std::make_unique<Linear>("d_out", w, 1, &init));
}

void Gan::DrawNoise(Tensor* z, Random* rng) const {
  for (float& v : z->span()) v = static_cast<float>(rng->Normal());
}

void Gan::Update(Sequential* net, std::vector<Tensor>* state, const UpdateRule& rule) {
  auto params = net->params();
  if (state->empty())
    for (Param* p : params) state->emplace_back(Shape{p->value.size() * rule.StatePerParam()});
  for (size_t i = 0; i < params.size(); ++i)
    rule.Apply(params[i]->value.span(), params[i]->grad.span(), (*state)[i].span(), step_);
}

GanLosses Gan::Gradients(const Tensor& real, bool generator_step) {
  const int64_t b = real.dim(0);
  Tensor z({b, o_.noise}), ones({b, 1}), zeros({b, 1}), d_out;
  ones.Fill(1.0f);
  DrawNoise(&z, &rng_);
  SigmoidCrossEntropy bce;
  GanLosses losses;
  const Tensor& fake = g_.Forward(z);  // held by g_ until its next Forward
  g_.ZeroGrad();
  if (generator_step) {
    // G: make D call the fakes real. The gradient only passes through D (its own parameter
    // gradients are not needed, and whatever a layer adds is zeroed below).
    losses.g_loss = bce.Forward(d_.Forward(fake), ones);
    bce.Backward(&d_out);
    Tensor dfake;
    d_.SetParamGrads(false);
    d_.Backward(d_out, &dfake);
    d_.SetParamGrads(true);
    g_.Backward(dfake);
  }
  // D: real -> 1, fake -> 0.
  d_.ZeroGrad();
  losses.d_loss = bce.Forward(d_.Forward(real), ones);
  bce.Backward(&d_out);
  d_.Backward(d_out);
  losses.d_loss += bce.Forward(d_.Forward(fake), zeros);
  bce.Backward(&d_out);
  d_.Backward(d_out);
  return losses;
}

GanLosses Gan::Step(const Tensor& real, const UpdateRule& d_rule, const UpdateRule& g_rule) {
  ++step_;
  const GanLosses losses = Gradients(real, true);
  Update(&d_, &d_state_, d_rule);
  Update(&g_, &g_state_, g_rule);
  return losses;
}

Tensor Gan::Sample(int64_t n, Random* rng) {
  Tensor z({n, o_.noise});
  DrawNoise(&z, rng);
  g_.SetTraining(false);
  Tensor out = g_.Forward(z);
  g_.SetTraining(true);
  return out;
}

Tensor Gan::Discriminate(const Tensor& x) {
  d_.SetTraining(false);
  Tensor out = d_.Forward(x);
  d_.SetTraining(true);
  return out;
}

}  // namespace distbelief
