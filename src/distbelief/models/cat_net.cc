#include "distbelief/models/cat_net.h"

#include <cmath>

#include "distbelief/base/parallel.h"

namespace distbelief {

StatusOr<std::unique_ptr<CatNet>> CatNet::Create(const CatNetOptions& o, uint64_t seed) {
  std::unique_ptr<CatNet> net(new CatNet());
  net->o_ = o;
  if (o.input_lcn < 0 || (o.input_lcn > 0 && (o.input_lcn % 2 == 0 || o.input_lcn > o.frame)))
    return absl::InvalidArgumentError("cat input LCN window " + std::to_string(o.input_lcn) +
                                      ": must be 0 (none) or odd and at most the frame");
  if (o.input_lcn > 0) net->input_lcn_ = std::make_unique<LocalContrastNorm>(o.input_lcn, o.input_lcn / 3.0f);
  Random rng(seed);
  SpatialShape in{1, o.frame, o.frame};
  for (size_t s = 0; s < o.stages.size(); ++s) {
    const CatStageOptions& so = o.stages[s];
    const std::string where = "cat stage " + std::to_string(s + 1) + ": ";
    if (so.field > in.h || so.field > in.w || so.stride < 1 || so.maps < 1)
      return absl::InvalidArgumentError(where + "field " + std::to_string(so.field) + " does not fit its " +
                                        std::to_string(in.h) + "x" + std::to_string(in.w) + " input");
    const int64_t oh = (in.h - so.field) / so.stride + 1, ow = (in.w - so.field) / so.stride + 1;
    if (so.pool > oh || so.pool > ow || so.lcn_window % 2 == 0)
      return absl::InvalidArgumentError(where + "pool " + std::to_string(so.pool) + " does not fit the " +
                                        std::to_string(oh) + "x" + std::to_string(ow) + " code, or the LCN window is even");
    Stage st;
    const std::string name = "stage" + std::to_string(s + 1);
    st.enc = std::make_unique<LocallyConnected2d>(name + ".enc", in, so.maps, so.field, so.stride, &rng, /*bias=*/false);
    st.dec = std::make_unique<LocallyConnectedTranspose2d>(name + ".dec", in, so.maps, so.field, so.stride, &rng);
    for (float& v : st.enc->params()[0]->value.span()) v *= o.init_scale;
    st.pool = std::make_unique<L2Pool>(so.pool, 1, o.eps);
    st.lcn = std::make_unique<LocalContrastNorm>(so.lcn_window, so.lcn_window / 3.0f);
    net->stages_.push_back(std::move(st));
    in = {so.maps, oh - so.pool + 1, ow - so.pool + 1};
  }
  return net;
}

Tensor CatNet::InputGradient(int s, int64_t unit, const Tensor& x) {
  std::vector<Tensor> f = Features(x);  // leaves every stage's activations in place
  Tensor g(f[s].shape()), dh, dn;
  g[unit] = 1.0f;
  for (int i = s; i >= 0; --i) {
    Stage& st = stages_[i];
    st.pool->Backward(g, &dh);
    st.enc->Backward(dh, &dn);  // also adds into the encoder's grad, which nobody reads here
    if (i > 0) stages_[i - 1].lcn->Backward(dn, &g);
  }
  if (!input_lcn_) return dn;
  input_lcn_->Backward(dn, &g);
  return g;
}

void CatNet::ConstrainDecoder(int s) {
  Tensor& w = stages_[s].dec->params()[0]->value;  // (OH, OW, K, C, F, F)
  const int64_t basis = w.dim(3) * w.dim(4) * w.dim(5);
  ProjectBlockNormsOnPool(w.span(), {{0, basis, w.size() / basis}, 1.0f});
}

KeyBlocks CatNet::DecoderBlocks(int s) {
  const Tensor& w = stages_[s].dec->params()[0]->value;  // (OH, OW, K, C, F, F)
  KeyBlocks b;
  for (Param* p : stages_[s].enc->params()) b.offset += p->value.size();
  b.block = w.dim(3) * w.dim(4) * w.dim(5);
  b.count = w.size() / b.block;
  return b;
}

std::vector<Param*> CatNet::AllParams() {
  std::vector<Param*> all;
  for (int s = 0; s < num_stages(); ++s)
    for (Param* p : StageParams(s)) all.push_back(p);
  return all;
}

std::vector<Param*> CatNet::StageParams(int s) {
  std::vector<Param*> p = stages_[s].enc->params();
  for (Param* q : stages_[s].dec->params()) p.push_back(q);
  return p;
}

const Tensor& CatNet::Input(const Tensor& x) {
  if (!input_lcn_) return x;
  input_lcn_->Forward(x, &xn_);
  return xn_;
}

const Tensor& CatNet::StageInput(int s, const Tensor& x) {
  const Tensor* in = &Input(x);
  for (int i = 0; i < s; ++i) {
    Stage& st = stages_[i];
    st.enc->Forward(*in, &st.h);
    st.pool->Forward(st.h, &st.p);
    st.lcn->Forward(st.p, &st.n);
    in = &st.n;
  }
  return *in;
}

// d rec = 2 (rec - in) / B;  d h = W2^T d rec + H'(h) d sparsity.
std::pair<double, double> StageObjectiveBackward(float lambda, float eps, const Tensor& in, const Tensor& rec,
                                                 const Tensor& pooled, LocallyConnected2d* enc,
                                                 LocallyConnectedTranspose2d* dec, L2Pool* pool,
                                                 StageWorkspace* ws) {
  const int64_t per_example = in.size() / in.dim(0);
  MeanSquaredError mse;
  // The paper's sum over pixels, averaged over the batch: MSE (a mean over every element) times
  // the pixels per example.
  const double reconstruction = mse.Forward(rec, in) * per_example;
  IcaSparsity ica(lambda, eps);
  const double sparsity = ica.Forward(pooled);
  Tensor &drec = ws->drec, &dh = ws->dh, &dp = ws->dp, &dh_pool = ws->dh_pool;
  mse.Backward(&drec);
  float* dr = drec.data();
  const float scale = static_cast<float>(per_example);
  ParallelFor(drec.size(), 16384, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) dr[i] *= scale;
  });
  dec->Backward(drec, &dh);
  ica.Backward(&dp);
  pool->Backward(dp, &dh_pool);
  float* d = dh.data();
  const float* dpool = dh_pool.data();
  ParallelFor(dh.size(), 16384, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) d[i] += dpool[i];
  });
  enc->Backward(dh, nullptr);
  return {reconstruction, sparsity};
}

// h = W1 x; rec = W2 h; p = H(h).
std::pair<double, double> CatNet::StageLossAndGradient(int s, const Tensor& in) {
  Stage& st = stages_[s];
  st.enc->Forward(in, &st.h);
  st.dec->Forward(st.h, &st.rec);
  st.pool->Forward(st.h, &st.p);
  return StageObjectiveBackward(o_.lambda, o_.eps, in, st.rec, st.p, st.enc.get(), st.dec.get(), st.pool.get(), &st.ws);
}

std::vector<Tensor> CatNet::Features(const Tensor& x, Readout r) {
  std::vector<Tensor> out;
  const Tensor* in = &Input(x);
  for (Stage& st : stages_) {
    st.enc->Forward(*in, &st.h);
    st.pool->Forward(st.h, &st.p);
    st.lcn->Forward(st.p, &st.n);
    out.push_back(r == Readout::kCode ? st.h : (r == Readout::kNormalized ? st.n : st.p));
    in = &st.n;
  }
  return out;
}

}  // namespace distbelief
