#include "distbelief/models/gan.h"

#include "distbelief/nn/dense.h"

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
  g_.Add(std::make_unique<ActivationLayer>(Activation::kTanh));
  w = o.image;
  for (size_t i = 0; i < o.d_hidden.size(); ++i) {
    d_.Add(std::make_unique<Linear>("d" + std::to_string(i), w, o.d_hidden[i], &init));
    d_.Add(std::make_unique<ActivationLayer>(Activation::kRelu));
    w = o.d_hidden[i];
  }
  d_.Add(std::make_unique<Linear>("d_out", w, 1, &init));
}

void Gan::Update(Sequential* net, std::vector<Tensor>* state, const UpdateRule& rule) {
  auto params = net->params();
  if (state->empty())
    for (Param* p : params) state->emplace_back(Shape{p->value.size() * rule.StatePerParam()});
  for (size_t i = 0; i < params.size(); ++i)
    rule.Apply(params[i]->value.span(), params[i]->grad.span(), (*state)[i].span(), step_);
}

GanLosses Gan::Step(const Tensor& real, const UpdateRule& d_rule, const UpdateRule& g_rule) {
  const int64_t b = real.dim(0);
  ++step_;
  Tensor z({b, o_.noise}), ones({b, 1}), zeros({b, 1}), d_out, dz;
  ones.Fill(1.0f);
  for (float& v : z.span()) v = static_cast<float>(rng_.Normal());
  SigmoidCrossEntropy bce;
  GanLosses losses;
  // Discriminator: real -> 1, fake -> 0.
  const Tensor fake = g_.Forward(z);
  d_.ZeroGrad();
  losses.d_loss = bce.Forward(d_.Forward(real), ones);
  bce.Backward(&d_out);
  d_.Backward(d_out);
  losses.d_loss += bce.Forward(d_.Forward(fake), zeros);
  bce.Backward(&d_out);
  d_.Backward(d_out);
  Update(&d_, &d_state_, d_rule);
  // Generator: make D call the fakes real; D's gradients are computed and thrown away.
  g_.ZeroGrad();
  const Tensor& fake2 = g_.Forward(z);
  losses.g_loss = bce.Forward(d_.Forward(fake2), ones);
  bce.Backward(&d_out);
  Tensor dfake;
  d_.Backward(d_out, &dfake);
  g_.Backward(dfake);
  Update(&g_, &g_state_, g_rule);
  return losses;
}

}  // namespace distbelief
