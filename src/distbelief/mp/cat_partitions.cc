#include "distbelief/mp/cat_partitions.h"

#include <cstring>
#include <thread>

#include "distbelief/base/parallel.h"
#include "distbelief/base/random.h"
#include "distbelief/nn/loss.h"

namespace distbelief {
namespace {

// Copies maps [k0, k0 + kp) between a whole (L, outer, K, inner) weight and a partition's
// (L, outer, kp, inner) slice; `to_part` gives the direction. The encoder's weights are
// (OH OW, C F F, K, 1), the decoder's (OH OW, 1, K, C F F).
void CopyMaps(float* whole, float* part, int64_t locations, int64_t outer, int64_t k, int64_t k0, int64_t kp,
              int64_t inner, bool to_part) {
  for (int64_t r = 0; r < locations * outer; ++r) {
    float* w = whole + (r * k + k0) * inner;
    float* p = part + r * kp * inner;
    if (to_part) std::memcpy(p, w, kp * inner * sizeof(float));
    else std::memcpy(w, p, kp * inner * sizeof(float));
  }
}

// Copies maps [k0, k0 + kp) between a whole (B, K, H, W) tensor and a (B, kp, H, W) one.
void CopyActivationMaps(const Tensor& part, int64_t k, int64_t k0, Tensor* whole) {
  const int64_t b = part.dim(0), kp = part.dim(1), hw = part.dim(2) * part.dim(3);
  for (int64_t i = 0; i < b; ++i)
    std::memcpy(whole->data() + (i * k + k0) * hw, part.data() + i * kp * hw, kp * hw * sizeof(float));
}

}  // namespace

struct CatPartitions::Part {
  struct Stage {
    std::unique_ptr<LocallyConnected2d> enc;
    std::unique_ptr<LocallyConnectedTranspose2d> dec;
    std::unique_ptr<L2Pool> pool;
    std::unique_ptr<LocalContrastNorm> lcn;
    int64_t k0 = 0, kp = 0, k = 0;
    Tensor h, rec, p, full_p, n;
    StageWorkspace ws;
  };
  std::vector<Stage> stages;
  MpStats stats;
};

StatusOr<std::unique_ptr<CatPartitions>> CatPartitions::Create(CatNet* reference, const CatNetOptions& o,
                                                               int partitions, Transport* transport) {
  if (partitions < 1) return absl::InvalidArgumentError("partitions must be at least 1");
  for (const auto& st : o.stages)
    if (st.maps < partitions)
      return absl::InvalidArgumentError("a cat stage of " + std::to_string(st.maps) + " maps cannot be split " +
                                        std::to_string(partitions) + " ways by maps");
  std::unique_ptr<CatPartitions> mp(new CatPartitions());
  mp->o_ = o;
  DB_ASSIGN_OR_RETURN(mp->links_, PartitionLinks::Create(transport, partitions));
  Random unused(0);
  for (int p = 0; p < partitions; ++p) {
    auto part = std::make_unique<Part>();
    SpatialShape in{1, o.frame, o.frame};
    for (size_t s = 0; s < o.stages.size(); ++s) {
      const CatStageOptions& so = o.stages[s];
      Part::Stage st;
      st.k = so.maps;
      st.k0 = so.maps * p / partitions;
      st.kp = so.maps * (p + 1) / partitions - st.k0;
      const std::string name = "p" + std::to_string(p) + ".stage" + std::to_string(s + 1);
      st.enc = std::make_unique<LocallyConnected2d>(name + ".enc", in, st.kp, so.field, so.stride, &unused, false);
      st.dec = std::make_unique<LocallyConnectedTranspose2d>(name + ".dec", in, st.kp, so.field, so.stride, &unused);
      st.pool = std::make_unique<L2Pool>(so.pool, 1, o.eps);
      st.lcn = std::make_unique<LocalContrastNorm>(so.lcn_window, so.lcn_window / 3.0f);
      in = {so.maps, st.enc->out_h() - so.pool + 1, st.enc->out_w() - so.pool + 1};
      part->stages.push_back(std::move(st));
    }
    mp->parts_.push_back(std::move(part));
  }
  for (size_t s = 0; s < o.stages.size(); ++s) mp->CopyFrom(reference, static_cast<int>(s));
  return mp;
}

CatPartitions::~CatPartitions() = default;

void CatPartitions::SetTimeout(Millis t) { timeout_ = t; }

std::vector<Param*> CatPartitions::StageParams(int p, int s) {
  Part::Stage& st = parts_[p]->stages[s];
  std::vector<Param*> out = st.enc->params();
  std::vector<Param*> dec = st.dec->params();  // {w, b}
  out.push_back(dec[0]);
  if (p == 0) out.push_back(dec[1]);
  return out;
}

KeyBlocks CatPartitions::DecoderBlocks(int p, int s) {
  Part::Stage& st = parts_[p]->stages[s];
  const Tensor& w = st.dec->params()[0]->value;  // (OH, OW, kp, C, F, F)
  KeyBlocks b;
  b.offset = st.enc->params()[0]->value.size();
  b.block = w.dim(3) * w.dim(4) * w.dim(5);
  b.count = w.size() / b.block;
  return b;
}

void CatPartitions::CopyFrom(CatNet* net, int s) {
  std::vector<Param*> whole = net->StageParams(s);  // enc w, dec w, dec b
  for (size_t p = 0; p < parts_.size(); ++p) {
    Part::Stage& st = parts_[p]->stages[s];
    Tensor& ew = st.enc->params()[0]->value;
    Tensor& dw = st.dec->params()[0]->value;
    const int64_t locations = ew.dim(0) * ew.dim(1), per = ew.size() / (locations * st.kp);
    CopyMaps(whole[0]->value.data(), ew.data(), locations, per, st.k, st.k0, st.kp, 1, true);
    CopyMaps(whole[1]->value.data(), dw.data(), locations, 1, st.k, st.k0, st.kp, per, true);
    Tensor& db = st.dec->params()[1]->value;
    if (p == 0) std::memcpy(db.data(), whole[2]->value.data(), db.size() * sizeof(float));
    else db.Fill(0.0f);  // the bias is partition 0's; the others add none
  }
}

void CatPartitions::CopyTo(CatNet* net, int s) { CopyOut(net, s, false); }
void CatPartitions::CopyGradsTo(CatNet* net, int s) { CopyOut(net, s, true); }

void CatPartitions::CopyOut(CatNet* net, int s, bool grads) {
  std::vector<Param*> whole = net->StageParams(s);
  auto of = [&](Param* q) -> Tensor& { return grads ? q->grad : q->value; };
  for (size_t p = 0; p < parts_.size(); ++p) {
    Part::Stage& st = parts_[p]->stages[s];
    Tensor& ew = of(st.enc->params()[0]);
    Tensor& dw = of(st.dec->params()[0]);
    const int64_t locations = ew.dim(0) * ew.dim(1), per = ew.size() / (locations * st.kp);
    CopyMaps(of(whole[0]).data(), ew.data(), locations, per, st.k, st.k0, st.kp, 1, false);
    CopyMaps(of(whole[1]).data(), dw.data(), locations, 1, st.k, st.k0, st.kp, per, false);
    if (p == 0) std::memcpy(of(whole[2]).data(), of(st.dec->params()[1]).data(), of(whole[2]).size() * sizeof(float));
  }
}

MpStats CatPartitions::TotalStats() const {
  MpStats s;
  for (const auto& p : parts_) s.floats_sent += p->stats.floats_sent, s.messages_sent += p->stats.messages_sent;
  return s;
}

Status CatPartitions::RunPart(int p, int s, int64_t step, const Tensor& x, std::pair<double, double>* loss) {
  Part& part = *parts_[p];
  const int P = partitions();
  // Sends `t` to every other partition and returns theirs (in partition order) for tag `tag`.
  auto exchange = [&](int tag, const Tensor& t, std::vector<Tensor>* all) -> Status {
    for (int q = 0; q < P; ++q) {
      if (q == p) continue;
      part.stats.floats_sent += t.size();
      part.stats.messages_sent += 1;
      DB_RETURN_IF_ERROR(links_->Send(p, q, step, tag, false, std::vector<float>(t.data(), t.data() + t.size()), 0, 0,
                                      timeout_));
    }
    all->assign(P, Tensor());
    for (int q = 0; q < P; ++q) {
      if (q == p) continue;
      DB_ASSIGN_OR_RETURN(const std::vector<float> v, links_->Receive(p, q, step, tag, false, -1, timeout_));
      (*all)[q].Resize({static_cast<int64_t>(v.size())});
      std::memcpy((*all)[q].data(), v.data(), v.size() * sizeof(float));
    }
    return absl::OkStatus();
  };
  // The stage's input: lower stages' encoders on this partition's maps, pooled maps gathered,
  // LCN over all maps (the same on every partition).
  const Tensor* in = &x;
  for (int i = 0; i < s; ++i) {
    Part::Stage& st = part.stages[i];
    st.enc->Forward(*in, &st.h);
    st.pool->Forward(st.h, &st.p);
    std::vector<Tensor> others;
    DB_RETURN_IF_ERROR(exchange(100 * s + i, st.p, &others));
    const int64_t b = st.p.dim(0), ph = st.p.dim(2), pw = st.p.dim(3);
    st.full_p.Resize({b, st.k, ph, pw});
    CopyActivationMaps(st.p, st.k, st.k0, &st.full_p);
    for (int q = 0; q < P; ++q) {
      if (q == p) continue;
      const Part::Stage& qs = parts_[q]->stages[i];  // geometry only: the map range of q
      others[q].Reshape({b, qs.kp, ph, pw});
      CopyActivationMaps(others[q], st.k, qs.k0, &st.full_p);
    }
    st.lcn->Forward(st.full_p, &st.n);
    in = &st.n;
  }
  Part::Stage& st = part.stages[s];
  for (Param* q : st.enc->params()) q->grad.Fill(0.0f);
  for (Param* q : st.dec->params()) q->grad.Fill(0.0f);
  st.enc->Forward(*in, &st.h);
  st.dec->Forward(st.h, &st.rec);
  // The reconstruction: the sum of every partition's part, added in partition order so that all
  // partitions hold the same bits.
  std::vector<Tensor> others;
  DB_RETURN_IF_ERROR(exchange(100 * s + 99, st.rec, &others));
  Tensor rec(st.rec.shape());
  rec.Fill(0.0f);
  for (int q = 0; q < P; ++q) {
    const Tensor& r = q == p ? st.rec : others[q];
    for (int64_t i = 0; i < rec.size(); ++i) rec[i] += r[i];
  }
  st.pool->Forward(st.h, &st.p);
  *loss = StageObjectiveBackward(o_.lambda, o_.eps, *in, rec, st.p, st.enc.get(), st.dec.get(), st.pool.get(), &st.ws);
  return absl::OkStatus();
}

StatusOr<std::pair<double, double>> CatPartitions::StageLossAndGradient(int s, const Tensor& x) {
  const int P = partitions();
  const int64_t step = ++step_;
  std::vector<Status> status(P);
  std::vector<std::pair<double, double>> loss(P);
  std::vector<std::thread> threads;
  const int threads_each = std::max(1, NumThreads() / P);
  for (int p = 0; p < P; ++p)
    threads.emplace_back([&, p] {
      SetNumThreads(threads_each);
      status[p] = RunPart(p, s, step, x, &loss[p]);
    });
  for (auto& t : threads) t.join();
  for (int p = 0; p < P; ++p)
    if (!status[p].ok())
      return Status(status[p].code(), "cat partition " + std::to_string(p) + ": " + std::string(status[p].message()));
  // Every partition saw the same reconstruction error; the sparsity terms add up.
  std::pair<double, double> total{loss[0].first, 0.0};
  for (const auto& l : loss) total.second += l.second;
  return total;
}

}  // namespace distbelief
