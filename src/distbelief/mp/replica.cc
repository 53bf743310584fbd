#include "distbelief/mp/replica.h"

#include <cstring>
#include <thread>

#include "distbelief/base/logging.h"
#include "distbelief/base/parallel.h"

namespace distbelief {

StatusOr<std::unique_ptr<MpReplica>> MpReplica::Create(const MpModelSpec& spec, int partitions,
                                                       const std::vector<Layer*>& reference, Transport* transport,
                                                       int replica) {
  auto r = std::unique_ptr<MpReplica>(new MpReplica());
  r->spec_ = spec;
  DB_ASSIGN_OR_RETURN(r->plan_, MakePartitionPlan(spec, partitions));
  DB_ASSIGN_OR_RETURN(r->links_, PartitionLinks::Create(transport, partitions, replica));
  for (int p = 0; p < partitions; ++p) {
    DB_ASSIGN_OR_RETURN(auto part, Partition::Create(spec, r->plan_, p, reference));
    part->Connect(r->links_.get());
    r->parts_.push_back(std::move(part));
  }
  r->dead_.assign(partitions, false);
  return r;
}

MpReplica::~MpReplica() = default;

void MpReplica::KillPartition(int p) {
  dead_[p] = true;
  links_->Kill(p);
}

void MpReplica::SetTimeout(Millis t) {
  for (auto& p : parts_) p->timeout = t;
}

MpStats MpReplica::TotalStats() const {
  MpStats s;
  for (const auto& p : parts_) {
    const MpStats q = p->stats();
    s.floats_sent += q.floats_sent;
    s.messages_sent += q.messages_sent;
    s.compute_seconds += q.compute_seconds;
    s.wait_seconds += q.wait_seconds;
  }
  return s;
}

Status MpReplica::Forward(const Tensor& x, Tensor* y) { return Run(&x, nullptr, y, nullptr); }

Status MpReplica::Backward(const Tensor& dy, Tensor* dx) { return Run(nullptr, &dy, nullptr, dx); }

Status MpReplica::Step(const Tensor& x, const Tensor& dy, Tensor* y, Tensor* dx) {
  DB_RETURN_IF_ERROR(Run(&x, nullptr, y, nullptr));
  return Run(nullptr, &dy, nullptr, dx);
}

// Runs the forward half (x given) or the backward half (dy given) on every partition's thread.
Status MpReplica::Run(const Tensor* x, const Tensor* dy, Tensor* y, Tensor* dx) {
  const int P = partitions();
  if (x) batch_ = x->dim(0);
  const int64_t B = batch_, C = spec_.channels, H = spec_.height, W = spec_.width;
  if (x) {
    CHECK(x->size() == B * C * H * W) << "input shape";
  }
  const MpLayerPlan& first = plan_.layers.front();
  const MpLayerPlan& last = plan_.layers.back();
  const int64_t step = x ? ++step_ : step_;
  std::vector<Status> status(P);
  std::vector<Tensor> outs(P), dxs(P);
  const int threads_each = std::max(1, NumThreads() / P);
  auto run = [&](int p) -> Status {
    SetNumThreads(threads_each);
    if (x) {
      // The input rows this partition reads (the data itself, not a crossing).
      const MpRange need = first.needed[p];
      Tensor xw({B, C, need.size(), W});
      for (int64_t o = 0; o < B * C; ++o)
        std::memcpy(xw.data() + o * need.size() * W, x->data() + (o * H + need.begin) * W, need.size() * W * sizeof(float));
      return parts_[p]->Forward(step, xw, &outs[p]);
    }
    // Its block of the output gradient.
    const MpRange own = last.owned[p];
    Tensor g(last.rows ? Shape{B, last.out.c, own.size(), last.out.w} : Shape{B, own.size()});
    if (last.rows) {
      const int64_t oc = last.out.c, oh = last.out.h, ow = last.out.w;
      for (int64_t o = 0; o < B * oc; ++o)
        std::memcpy(g.data() + o * own.size() * ow, dy->data() + (o * oh + own.begin) * ow, own.size() * ow * sizeof(float));
    } else {
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(g.data() + b * own.size(), dy->data() + b * last.out.c + own.begin, own.size() * sizeof(float));
    }
    return parts_[p]->Backward(step, g, dx ? &dxs[p] : nullptr);
  };
  std::vector<std::thread> threads;
  for (int p = 0; p < P; ++p) {
    if (dead_[p]) {
      status[p] = absl::UnavailableError("partition " + std::to_string(p) + " is dead");
      continue;
    }
    threads.emplace_back([&, p] { status[p] = run(p); });
  }
  for (auto& t : threads) t.join();
  for (int p = 0; p < P; ++p)
    if (!status[p].ok())
      return Status(status[p].code(), "model-parallel step " + std::to_string(step) + ", partition " + std::to_string(p) +
                                          ": " + std::string(status[p].message()));
  // Assemble the full output or input gradient.
  if (x && last.rows) {
    y->Resize({B, last.out.c, last.out.h, last.out.w});
    for (int p = 0; p < P; ++p) {
      const MpRange own = last.owned[p];
      for (int64_t o = 0; o < B * last.out.c; ++o)
        std::memcpy(y->data() + (o * last.out.h + own.begin) * last.out.w, outs[p].data() + o * own.size() * last.out.w,
                    own.size() * last.out.w * sizeof(float));
    }
  } else if (x) {
    y->Resize({B, last.out.c});
    for (int p = 0; p < P; ++p) {
      const MpRange own = last.owned[p];
      for (int64_t b = 0; b < B; ++b)
        std::memcpy(y->data() + b * last.out.c + own.begin, outs[p].data() + b * own.size(), own.size() * sizeof(float));
    }
  }
  if (dy && dx) {
    dx->Resize({B, C, H, W});
    dx->Fill(0.0f);
    for (int p = 0; p < P; ++p) {
      const MpRange need = first.needed[p];
      for (int64_t o = 0; o < B * C; ++o)
        for (int64_t i = 0; i < need.size() * W; ++i)
          (*dx)[(o * H + need.begin) * W + i] += dxs[p][o * need.size() * W + i];
    }
  }
  return absl::OkStatus();
}

}  // namespace distbelief
