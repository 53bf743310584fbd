#include "distbelief/models/sequential.h"

namespace distbelief {

const Tensor& Sequential::Forward(const Tensor& x) {
  acts_.resize(layers_.size());
  const Tensor* in = &x;
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->Forward(*in, &acts_[i]);
    in = &acts_[i];
  }
  return *in;
}

void Sequential::Backward(const Tensor& dout, Tensor* dx) {
  grads_.resize(2);
  const Tensor* g = &dout;
  for (size_t i = layers_.size(); i-- > 0;) {
    Tensor* out = i == 0 ? dx : &grads_[i % 2];
    layers_[i]->Backward(*g, out);
    g = out;
  }
}

void Sequential::SetTraining(bool training) {
  for (auto& l : layers_) l->SetTraining(training);
}

void Sequential::SetParamGrads(bool enabled) {
  for (auto& l : layers_) l->SetParamGrads(enabled);
}

std::vector<Param*> Sequential::params() {
  std::vector<Param*> out;
  for (auto& l : layers_)
    for (Param* p : l->params()) out.push_back(p);
  return out;
}

void Sequential::ZeroGrad() {
  for (Param* p : params()) p->grad.Zero();
}

int64_t Sequential::NumParameters() {
  int64_t n = 0;
  for (Param* p : params()) n += p->value.size();
  return n;
}

}  // namespace distbelief
