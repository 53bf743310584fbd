#include "distbelief/workloads/teacher/teacher.h"

#include "distbelief/base/random.h"
#include "distbelief/mp/replica.h"

namespace distbelief {
namespace {

std::vector<Layer*> Raw(const std::vector<std::unique_ptr<Layer>>& v) {
  std::vector<Layer*> out;
  for (auto& l : v) out.push_back(l.get());
  return out;
}

class TeacherReplica : public ReplicaModel {
 public:
  static StatusOr<std::unique_ptr<TeacherReplica>> Create(const TeacherOptions& o, Transport* t, int replica) {
    std::unique_ptr<TeacherReplica> m(new TeacherReplica(o, replica));
    // The student starts from the same weights in every replica; the teacher is another seed.
    const auto student = BuildMpReference(o.spec, o.seed);
    DB_ASSIGN_OR_RETURN(m->rep_, MpReplica::Create(o.spec, o.partitions, Raw(student), t, replica));
    m->rep_->SetTimeout(o.partition_timeout);
    m->teacher_ = BuildMpReference(o.spec, o.seed + 1000);
    return m;
  }
  int num_groups() const override { return rep_->partitions(); }
  std::vector<Param*> params(int g) override { return rep_->partition(g).params(); }
  StatusOr<StepLoss> ComputeGradient(int64_t) override {
    const MpModelSpec& spec = o_.spec;
    Tensor x({o_.batch, spec.channels, spec.height, spec.width});
    for (float& v : x.span()) v = rng_.Uniform(-1.0f, 1.0f);
    Tensor a = x, b;  // the target: the teacher's output
    for (size_t l = 0; l < teacher_.size(); ++l) {
      if (spec.layers[l].kind == MpLayerKind::kFullyConnected && a.ndim() == 4) a.Reshape({o_.batch, a.size() / o_.batch});
      teacher_[l]->Forward(a, &b);
      a = b;
    }
    for (int g = 0; g < num_groups(); ++g)
      for (Param* p : params(g)) p->grad.Fill(0.0f);
    Tensor y;
    DB_RETURN_IF_ERROR(rep_->Forward(x, &y));
    Tensor dy(y.shape());
    StepLoss loss;
    for (int64_t i = 0; i < y.size(); ++i) {
      const double d = y[i] - a[i];
      loss.total += d * d;
      dy[i] = static_cast<float>(2.0 * d / y.size());
    }
    loss.total /= y.size();
    DB_RETURN_IF_ERROR(rep_->Backward(dy, nullptr));
    return loss;
  }

 private:
  TeacherReplica(const TeacherOptions& o, int replica) : o_(o), rng_(o.seed * 7919 + replica) {}
  TeacherOptions o_;
  Random rng_;
  std::unique_ptr<MpReplica> rep_;
  std::vector<std::unique_ptr<Layer>> teacher_;  // this replica's copy: layers keep activations
};

}  // namespace

StatusOr<Job> TeacherJob(const TeacherOptions& o, Transport* transport) {
  for (const auto& l : o.spec.layers)
    if (l.kind == MpLayerKind::kConv)
      return absl::InvalidArgumentError(
          "a model-parallel replica under Downpour needs untied weights: a convolution kernel would be held by every "
          "partition; use locally connected layers (as DistBelief's image models did)");
  DB_RETURN_IF_ERROR(MakePartitionPlan(o.spec, o.partitions).status());
  Job job;
  job.name = "teacher";
  job.steps = o.steps;
  job.examples_per_step = o.batch;
  job.write_checkpoint = false;
  job.make_replica = [o, transport](int r, int) -> StatusOr<std::unique_ptr<ReplicaModel>> {
    DB_ASSIGN_OR_RETURN(auto m, TeacherReplica::Create(o, transport, r));
    return std::unique_ptr<ReplicaModel>(std::move(m));
  };
  return job;
}

}  // namespace distbelief
