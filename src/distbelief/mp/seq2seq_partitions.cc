#include "distbelief/mp/seq2seq_partitions.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <thread>

#include "distbelief/base/parallel.h"
#include "distbelief/nn/dense.h"
#include "distbelief/nn/loss.h"

namespace distbelief {
namespace {

// Chunk k of n over a length L: [L k / n, L (k + 1) / n).
int64_t ChunkBegin(int k, int n, int64_t L) { return L * k / n; }

// Message tags: encoder chunks k, decoder chunks kDecoderTag + k.
constexpr int kDecoderTag = 1 << 20;

}  // namespace

struct Seq2SeqPartitions::Part {
  int64_t first = 0, last = 0;  // depth [first, last)
  std::unique_ptr<Embedding> src_emb, tgt_emb;                 // partition 0
  std::unique_ptr<Linear> proj;                                // the last partition
  SoftmaxCrossEntropy loss;                                    // the last partition
  std::vector<std::unique_ptr<ChunkedLstm>> enc, dec;          // owned layers
  std::vector<Tensor> enc_in, dec_in;                          // [k]: input of the first owned layer
  Tensor src_x, tgt_x, dsrc_x, dtgt_x;                         // partition 0: embeddings, their gradients
  std::vector<Tensor> top_grad;                                // last partition: d(top output) per chunk
  double loss_sum = 0.0;                                       // last partition: sum of token losses
  MpStats stats;
  std::vector<Param*> params() {
    std::vector<Param*> out;
    auto add = [&](std::vector<Param*> ps) { out.insert(out.end(), ps.begin(), ps.end()); };
    if (src_emb) add(src_emb->params()), add(tgt_emb->params());
    for (auto& l : enc) add(l->params());
    for (auto& l : dec) add(l->params());
    if (proj) add(proj->params());
    return out;
  }
};

StatusOr<std::unique_ptr<Seq2SeqPartitions>> Seq2SeqPartitions::Create(Seq2Seq* reference, int partitions, int chunks,
                                                                       Transport* transport) {
  const Seq2SeqOptions& o = reference->options();
  if (partitions < 1 || partitions > o.layers)
    return absl::InvalidArgumentError("a Seq2Seq of " + std::to_string(o.layers) + " layers cannot be split " +
                                      std::to_string(partitions) + " ways (each partition holds at least one layer)");
  if (chunks < 1 || chunks > 1024) return absl::InvalidArgumentError("time chunks must be in [1, 1024]");
  std::unique_ptr<Seq2SeqPartitions> s(new Seq2SeqPartitions());
  s->o_ = o;
  s->chunks_ = chunks;
  DB_ASSIGN_OR_RETURN(s->links_, PartitionLinks::Create(transport, partitions));
  Random unused(0);  // every weight is copied from the reference below
  for (int p = 0; p < partitions; ++p) {
    auto part = std::make_unique<Part>();
    part->first = o.layers * p / partitions;
    part->last = o.layers * (p + 1) / partitions;
    if (p == 0) {
      part->src_emb = std::make_unique<Embedding>("src_emb", o.src_vocab, o.embedding, 0, &unused);
      part->tgt_emb = std::make_unique<Embedding>("tgt_emb", o.tgt_vocab, o.embedding, 0, &unused);
    }
    for (int64_t j = part->first; j < part->last; ++j) {
      const int64_t in = j == 0 ? o.embedding : o.hidden;
      part->enc.push_back(std::make_unique<ChunkedLstm>("enc" + std::to_string(j), in, o.hidden, chunks));
      part->dec.push_back(std::make_unique<ChunkedLstm>("dec" + std::to_string(j), in, o.hidden, chunks));
    }
    if (p + 1 == partitions) part->proj = std::make_unique<Linear>("proj", o.hidden, o.tgt_vocab, &unused);
    part->enc_in.resize(chunks);
    part->dec_in.resize(chunks);
    part->top_grad.resize(chunks);
    s->parts_.push_back(std::move(part));
  }
  // Weights by name from the reference.
  std::map<std::string, Param*> by_name;
  for (Param* q : reference->params()) by_name[q->name] = q;
  size_t copied = 0;
  for (auto& part : s->parts_)
    for (Param* q : part->params()) {
      auto it = by_name.find(q->name);
      if (it == by_name.end() || it->second->value.shape() != q->value.shape())
        return absl::InternalError("Seq2Seq partition parameter " + q->name + " has no match in the whole model");
      std::memcpy(q->value.data(), it->second->value.data(), q->value.size() * sizeof(float));
      ++copied;
    }
  if (copied != by_name.size())
    return absl::InternalError("the Seq2Seq partitions hold " + std::to_string(copied) + " of the model's " +
                               std::to_string(by_name.size()) + " parameters");
  return s;
}

Seq2SeqPartitions::~Seq2SeqPartitions() = default;

std::vector<Param*> Seq2SeqPartitions::params(int p) { return parts_[p]->params(); }

void Seq2SeqPartitions::CopyTo(Seq2Seq* net) {
  std::map<std::string, Param*> by_name;
  for (Param* q : net->params()) by_name[q->name] = q;
  for (auto& part : parts_)
    for (Param* q : part->params()) {
      Param* dst = by_name.at(q->name);
      std::memcpy(dst->value.data(), q->value.data(), q->value.size() * sizeof(float));
    }
}

MpStats Seq2SeqPartitions::TotalStats() const {
  MpStats s;
  for (const auto& p : parts_) s.floats_sent += p->stats.floats_sent, s.messages_sent += p->stats.messages_sent;
  return s;
}

StatusOr<double> Seq2SeqPartitions::LossAndGradient(const Tensor& src, const Tensor& tgt_in, const Tensor& tgt_out) {
  if (src.ndim() != 2 || tgt_in.ndim() != 2 || tgt_out.shape() != tgt_in.shape() || src.dim(0) != tgt_in.dim(0) ||
      src.dim(1) < 1 || tgt_in.dim(1) < 1)
    return absl::InvalidArgumentError("Seq2Seq partitions take src (B, S) and tgt_in, tgt_out (B, T), got " +
                                      src.ShapeString() + ", " + tgt_in.ShapeString() + ", " + tgt_out.ShapeString());
  int64_t counted = 0;
  for (int64_t i = 0; i < tgt_out.size(); ++i) counted += tgt_out[i] >= 0.0f;
  const int64_t step = ++step_;
  const int P = partitions();
  std::vector<Status> status(P);
  std::vector<std::thread> threads;
  const int threads_each = std::max(1, NumThreads() / P);
  for (int p = 0; p < P; ++p)
    threads.emplace_back([&, p] {
      SetNumThreads(threads_each);
      status[p] = RunPart(p, step, src, tgt_in, tgt_out, counted);
    });
  for (auto& t : threads) t.join();
  for (int p = 0; p < P; ++p)
    if (!status[p].ok())
      return Status(status[p].code(), "Seq2Seq partition " + std::to_string(p) + ": " + std::string(status[p].message()));
  return counted > 0 ? parts_.back()->loss_sum / static_cast<double>(counted) : 0.0;
}

Status Seq2SeqPartitions::RunPart(int p, int64_t step, const Tensor& src, const Tensor& tgt_in, const Tensor& tgt_out,
                                  int64_t counted) {
  Part& a = *parts_[p];
  const int P = partitions();
  const int64_t B = src.dim(0), S = src.dim(1), T = tgt_in.dim(1), H = o_.hidden;
  const int cs = static_cast<int>(std::min<int64_t>(chunks_, S)), ct = static_cast<int>(std::min<int64_t>(chunks_, T));
  const int64_t owned = a.last - a.first;
  auto send = [&](int to, int tag, bool backward, const Tensor& t) -> Status {
    a.stats.floats_sent += t.size();
    a.stats.messages_sent += 1;
    return links_->Send(p, to, step, tag, backward, std::vector<float>(t.data(), t.data() + t.size()), 0, 0, timeout_);
  };
  auto receive = [&](int from, int tag, bool backward, Shape shape, Tensor* t) -> Status {
    DB_ASSIGN_OR_RETURN(const std::vector<float> v,
                        links_->Receive(p, from, step, tag, backward, NumElements(shape), timeout_));
    t->Resize(shape);
    std::memcpy(t->data(), v.data(), v.size() * sizeof(float));
    return absl::OkStatus();
  };
  for (auto& l : a.enc) l->BeginStep();
  for (auto& l : a.dec) l->BeginStep();
  if (a.src_emb) {
    for (Param* q : a.src_emb->params()) q->grad.Zero();
    for (Param* q : a.tgt_emb->params()) q->grad.Zero();
    a.src_emb->Forward(src, &a.src_x);
    a.tgt_emb->Forward(tgt_in, &a.tgt_x);
  }
  if (a.proj)
    for (Param* q : a.proj->params()) q->grad.Zero();
  a.loss_sum = 0.0;

  // Encoder, chunk by chunk.
  for (int k = 0; k < cs; ++k) {
    const int64_t t0 = ChunkBegin(k, cs, S), n = ChunkBegin(k + 1, cs, S) - t0;
    if (p == 0) SliceTime(a.src_x, t0, n, &a.enc_in[k]);
    else DB_RETURN_IF_ERROR(receive(p - 1, k, false, {B, n, H}, &a.enc_in[k]));
    const Tensor* in = &a.enc_in[k];
    for (auto& l : a.enc) {
      l->Forward(k, *in);
      in = &l->out(k);
    }
    if (p + 1 < P) DB_RETURN_IF_ERROR(send(p + 1, k, false, *in));
  }
  // Decoder: each layer starts from its encoder layer's final state; the last partition scores
  // each chunk as it arrives.
  std::vector<Tensor> enc_h(owned);
  for (int64_t j = 0; j < owned; ++j) enc_h[j] = a.enc[j]->FinalH(cs - 1);
  for (int k = 0; k < ct; ++k) {
    const int64_t t0 = ChunkBegin(k, ct, T), n = ChunkBegin(k + 1, ct, T) - t0;
    if (p == 0) SliceTime(a.tgt_x, t0, n, &a.dec_in[k]);
    else DB_RETURN_IF_ERROR(receive(p - 1, kDecoderTag + k, false, {B, n, H}, &a.dec_in[k]));
    const Tensor* in = &a.dec_in[k];
    for (int64_t j = 0; j < owned; ++j) {
      a.dec[j]->Forward(k, *in, &enc_h[j], &a.enc[j]->FinalC(cs - 1));
      in = &a.dec[j]->out(k);
    }
    if (p + 1 < P) {
      DB_RETURN_IF_ERROR(send(p + 1, kDecoderTag + k, false, *in));
      continue;
    }
    Tensor target({B, n}), logits, dlogits;
    int64_t count = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < n; ++t) count += (target[b * n + t] = tgt_out[b * T + t0 + t]) >= 0.0f;
    a.proj->Forward(*in, &logits);
    if (count > 0) {
      a.loss_sum += a.loss.Forward(logits, target) * static_cast<double>(count);
      a.loss.Backward(&dlogits);
      const float scale = static_cast<float>(count) / static_cast<float>(counted);  // chunk mean -> batch mean
      for (int64_t i = 0; i < dlogits.size(); ++i) dlogits[i] *= scale;
    } else {
      dlogits.Resize(logits.shape());
      dlogits.Zero();
    }
    a.proj->Backward(dlogits, &a.top_grad[k]);
  }

  // Decoder backward, chunks in reverse; chunk 0 leaves d(h0, c0) for the encoder.
  if (p == 0) a.dtgt_x.Resize(a.tgt_x.shape());
  for (int k = ct - 1; k >= 0; --k) {
    const int64_t t0 = ChunkBegin(k, ct, T), n = ChunkBegin(k + 1, ct, T) - t0;
    Tensor g;
    if (p + 1 == P) g = std::move(a.top_grad[k]);
    else DB_RETURN_IF_ERROR(receive(p + 1, kDecoderTag + k, true, {B, n, H}, &g));
    for (int64_t j = owned - 1; j >= 0; --j) {
      Tensor d;
      a.dec[j]->Backward(k, ct, std::move(g), &d);
      g = std::move(d);
    }
    if (p > 0) DB_RETURN_IF_ERROR(send(p - 1, kDecoderTag + k, true, g));
    else PutTime(g, t0, &a.dtgt_x);
  }
  if (p == 0) a.tgt_emb->Backward(a.dtgt_x, nullptr);

  // Encoder backward: the last chunk takes the decoder's d(h0, c0) of its layer.
  if (p == 0) a.dsrc_x.Resize(a.src_x.shape());
  for (int k = cs - 1; k >= 0; --k) {
    const int64_t t0 = ChunkBegin(k, cs, S), n = ChunkBegin(k + 1, cs, S) - t0;
    Tensor g;
    if (p + 1 == P) {
      g.Resize({B, n, H});
      g.Zero();
    } else {
      DB_RETURN_IF_ERROR(receive(p + 1, k, true, {B, n, H}, &g));
    }
    for (int64_t j = owned - 1; j >= 0; --j) {
      Tensor d;
      a.enc[j]->Backward(k, cs, std::move(g), &d, &a.dec[j]->dh0(), &a.dec[j]->dc0());
      g = std::move(d);
    }
    if (p > 0) DB_RETURN_IF_ERROR(send(p - 1, k, true, g));
    else PutTime(g, t0, &a.dsrc_x);
  }
  if (p == 0) a.src_emb->Backward(a.dsrc_x, nullptr);
  for (auto& l : a.enc) l->EndStep();
  for (auto& l : a.dec) l->EndStep();
  return absl::OkStatus();
}

}  // namespace distbelief
