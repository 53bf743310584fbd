#include "distbelief/mp/lstm_pipeline.h"

#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"
#include "distbelief/base/random.h"

namespace distbelief {
// Copies time steps [t0, t0 + n) of a (B, T, F) tensor into (B, n, F), or back.
void SliceTime(const Tensor& src, int64_t t0, int64_t n, Tensor* dst) {
  const int64_t B = src.dim(0), T = src.dim(1), F = src.dim(2);
  dst->Resize({B, n, F});
  for (int64_t b = 0; b < B; ++b) std::memcpy(dst->data() + b * n * F, src.data() + (b * T + t0) * F, n * F * sizeof(float));
}
void PutTime(const Tensor& chunk, int64_t t0, Tensor* dst) {
  const int64_t B = chunk.dim(0), n = chunk.dim(1), F = chunk.dim(2), T = dst->dim(1);
  for (int64_t b = 0; b < B; ++b) std::memcpy(dst->data() + (b * T + t0) * F, chunk.data() + b * n * F, n * F * sizeof(float));
}
namespace {

// The last time step (B, H) of a (B, T, H) tensor.
Tensor LastStep(const Tensor& y) {
  const int64_t B = y.dim(0), T = y.dim(1), H = y.dim(2);
  Tensor h({B, H});
  for (int64_t b = 0; b < B; ++b) std::memcpy(h.data() + b * H, y.data() + (b * T + T - 1) * H, H * sizeof(float));
  return h;
}

}  // namespace

ChunkedLstm::ChunkedLstm(const std::string& name, int64_t in, int64_t hidden, int chunks) {
  Random unused(0);  // the weights come from a reference (BeginStep copies instance 0's)
  for (int k = 0; k < std::max(1, chunks); ++k) insts_.push_back(std::make_unique<Lstm>(name, in, hidden, &unused));
  outs_.resize(insts_.size());
}

void ChunkedLstm::BeginStep() {
  const std::vector<Param*> w = insts_[0]->params();
  for (auto& l : insts_) {
    std::vector<Param*> mine = l->params();
    for (size_t i = 0; i < mine.size(); ++i) {
      if (l != insts_[0]) std::memcpy(mine[i]->value.data(), w[i]->value.data(), w[i]->value.size() * sizeof(float));
      mine[i]->grad.Zero();
    }
  }
}

void ChunkedLstm::Forward(int k, const Tensor& x, const Tensor* h0, const Tensor* c0) {
  Lstm* l = insts_[k].get();
  if (k > 0) l->SetInitialState(FinalH(k - 1), FinalC(k - 1));
  else if (h0 && c0) l->SetInitialState(*h0, *c0);
  else l->ClearInitialState();
  l->Forward(x, &outs_[k]);
}

Tensor ChunkedLstm::FinalH(int k) const { return LastStep(outs_[k]); }

void ChunkedLstm::Backward(int k, int last, Tensor dy, Tensor* dx, const Tensor* dh_last, const Tensor* dc_last) {
  const Tensor* dh = dh_last;
  const Tensor* dc = dc_last;
  if (k + 1 < last) dh = &insts_[k + 1]->dh0(), dc = &insts_[k + 1]->dc0();
  Lstm* l = insts_[k].get();
  if (dh) {  // into the chunk's last output
    const int64_t B = dy.dim(0), n = dy.dim(1), H = dy.dim(2);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) dy[(b * n + n - 1) * H + h] += (*dh)[b * H + h];
  }
  if (dc) l->SetFinalCellGrad(*dc);
  l->Backward(dy, dx);
}

void ChunkedLstm::EndStep() {
  const std::vector<Param*> sum = insts_[0]->params();
  for (size_t k = 1; k < insts_.size(); ++k) {
    const std::vector<Param*> ps = insts_[k]->params();
    for (size_t i = 0; i < ps.size(); ++i)
      for (int64_t e = 0; e < sum[i]->grad.size(); ++e) sum[i]->grad[e] += ps[i]->grad[e];
  }
}

std::vector<std::unique_ptr<Lstm>> BuildLstmStack(const LstmStackSpec& spec, uint64_t seed) {
  Random rng(seed);
  std::vector<std::unique_ptr<Lstm>> out;
  for (int64_t i = 0; i < spec.layers; ++i)
    out.push_back(std::make_unique<Lstm>("lstm" + std::to_string(i), i == 0 ? spec.input : spec.hidden, spec.hidden, &rng));
  return out;
}

struct LstmPipeline::Part {
  int64_t first_layer = 0, last_layer = 0;  // [first, last)
  std::vector<std::unique_ptr<ChunkedLstm>> layers;  // the owned layers, in order
  std::vector<Tensor> inputs;                        // [k]: chunk k's input to the first owned layer
  MpStats stats;
};

StatusOr<std::unique_ptr<LstmPipeline>> LstmPipeline::Create(const LstmStackSpec& spec, int partitions, int chunks,
                                                             const std::vector<Lstm*>& reference, Transport* transport) {
  if (partitions < 1 || partitions > spec.layers)
    return absl::InvalidArgumentError("an LSTM stack of " + std::to_string(spec.layers) + " layers cannot be split " +
                                      std::to_string(partitions) + " ways (at most one partition per layer)");
  if (chunks < 1) return absl::InvalidArgumentError("chunks must be at least 1");
  std::unique_ptr<LstmPipeline> pl(new LstmPipeline());
  pl->spec_ = spec;
  pl->partitions_ = partitions;
  pl->chunks_ = chunks;
  DB_ASSIGN_OR_RETURN(pl->links_, PartitionLinks::Create(transport, partitions));
  for (int p = 0; p < partitions; ++p) {
    auto part = std::make_unique<Part>();
    part->first_layer = spec.layers * p / partitions;
    part->last_layer = spec.layers * (p + 1) / partitions;
    for (int64_t j = part->first_layer; j < part->last_layer; ++j) {
      auto l = std::make_unique<ChunkedLstm>(absl::StrCat("p", p, ".lstm", j), j == 0 ? spec.input : spec.hidden,
                                             spec.hidden, chunks);
      std::vector<Param*> mine = l->params(), ref = reference[j]->params();
      for (size_t i = 0; i < mine.size(); ++i)
        std::memcpy(mine[i]->value.data(), ref[i]->value.data(), ref[i]->value.size() * sizeof(float));
      part->layers.push_back(std::move(l));
    }
    part->inputs.resize(chunks);
    pl->parts_.push_back(std::move(part));
  }
  return pl;
}

LstmPipeline::~LstmPipeline() = default;

MpStats LstmPipeline::TotalStats() const {
  MpStats s;
  for (const auto& p : parts_) s.floats_sent += p->stats.floats_sent, s.messages_sent += p->stats.messages_sent;
  return s;
}

std::vector<Tensor> LstmPipeline::LayerGrads(int64_t layer) {
  for (auto& part : parts_) {
    if (layer < part->first_layer || layer >= part->last_layer) continue;
    std::vector<Tensor> grads;
    for (Param* q : part->layers[layer - part->first_layer]->params()) grads.push_back(q->grad);
    return grads;
  }
  return {};
}

Status LstmPipeline::RunPart(int p, int64_t step, const Tensor& x, const Tensor& dy, Tensor* y, Tensor* dx) {
  Part& part = *parts_[p];
  const int64_t T = x.dim(1), tc = T / chunks_;
  const int P = partitions_;
  const Millis timeout(10000);
  auto send = [&](int to, int64_t k, bool backward, const Tensor& t) -> Status {
    part.stats.floats_sent += t.size();
    part.stats.messages_sent += 1;
    return links_->Send(p, to, step, static_cast<int>(k), backward, std::vector<float>(t.data(), t.data() + t.size()), 0,
                        0, timeout);
  };
  auto receive = [&](int from, int64_t k, bool backward, Shape shape, Tensor* t) -> Status {
    DB_ASSIGN_OR_RETURN(const std::vector<float> v,
                        links_->Receive(p, from, step, static_cast<int>(k), backward, NumElements(shape), timeout));
    t->Resize(shape);
    std::memcpy(t->data(), v.data(), v.size() * sizeof(float));
    return absl::OkStatus();
  };
  const int64_t B = x.dim(0), H = spec_.hidden, D0 = spec_.input;
  const int64_t owned = part.last_layer - part.first_layer;
  for (auto& l : part.layers) l->BeginStep();
  // Forward, chunk by chunk.
  for (int k = 0; k < chunks_; ++k) {
    if (p == 0) SliceTime(x, k * tc, tc, &part.inputs[k]);
    else DB_RETURN_IF_ERROR(receive(p - 1, k, false, {B, tc, part.first_layer == 0 ? D0 : H}, &part.inputs[k]));
    const Tensor* in = &part.inputs[k];
    for (auto& l : part.layers) {
      l->Forward(k, *in);
      in = &l->out(k);
    }
    if (p + 1 < P) DB_RETURN_IF_ERROR(send(p + 1, k, false, *in));
    else PutTime(*in, k * tc, y);
  }
  // Backward, chunks in reverse.
  for (int k = chunks_ - 1; k >= 0; --k) {
    Tensor g;
    if (p + 1 == P) SliceTime(dy, k * tc, tc, &g);
    else DB_RETURN_IF_ERROR(receive(p + 1, k, true, {B, tc, H}, &g));
    for (int64_t j = owned - 1; j >= 0; --j) {
      Tensor d;
      part.layers[j]->Backward(k, chunks_, std::move(g), &d);
      g = std::move(d);
    }
    if (p > 0) DB_RETURN_IF_ERROR(send(p - 1, k, true, g));
    else PutTime(g, k * tc, dx);
  }
  for (auto& l : part.layers) l->EndStep();
  return absl::OkStatus();
}

Status LstmPipeline::Step(const Tensor& x, const Tensor& dy, Tensor* y, Tensor* dx) {
  if (x.ndim() != 3 || x.dim(1) % chunks_ != 0)
    return absl::InvalidArgumentError("the sequence length must be divisible by the " + std::to_string(chunks_) + " chunks");
  const int64_t step = ++step_;
  y->Resize({x.dim(0), x.dim(1), spec_.hidden});
  dx->Resize(x.shape());
  std::vector<Status> status(partitions_);
  std::vector<std::thread> threads;
  const int threads_each = std::max(1, NumThreads() / partitions_);
  for (int p = 0; p < partitions_; ++p)
    threads.emplace_back([&, p] {
      SetNumThreads(threads_each);
      status[p] = RunPart(p, step, x, dy, y, dx);
    });
  for (auto& t : threads) t.join();
  for (int p = 0; p < partitions_; ++p)
    if (!status[p].ok()) return Status(status[p].code(), "LSTM partition " + std::to_string(p) + ": " + std::string(status[p].message()));
  return absl::OkStatus();
}

}  // namespace distbelief
