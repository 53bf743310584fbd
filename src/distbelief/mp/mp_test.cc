// Model parallelism: for every layer kind, a model split 1, 2, 3 and 4 ways computes the same
// forward output, input gradient and parameter gradients as the unpartitioned model (relative
// error <= 1e-5), in process and over gRPC; only the plan's boundary slices cross, once per
// destination; a dead partition stops its replica cleanly and a rebuilt replica works.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include <gtest/gtest.h>

#include "distbelief/base/random.h"
#include "distbelief/mp/lstm_pipeline.h"
#include "distbelief/mp/seq2seq_partitions.h"
#include "distbelief/train/downpour.h"
#include "distbelief/transport/fault_injection.h"
#include "distbelief/workloads/teacher/teacher.h"
#include "distbelief/mp/replica.h"

namespace distbelief {
namespace {

double RelErr(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = 1e-30;
  for (int64_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    diff = std::max(diff, double(std::abs(a[i] - b[i])));
    scale = std::max(scale, double(std::abs(b[i])));
  }
  return diff / scale;
}

Tensor RandomTensor(Shape shape, uint64_t seed) {
  Tensor t(shape);
  Random rng(seed);
  for (float& v : t.span()) v = rng.Uniform(-1.0f, 1.0f);
  return t;
}

MpLayerSpec Lc(int64_t maps, int64_t field, int64_t stride) { return {MpLayerKind::kLocallyConnected, maps, field, stride}; }
MpLayerSpec Conv(int64_t maps, int64_t field, int64_t pad) { return {MpLayerKind::kConv, maps, field, 1, pad}; }
MpLayerSpec Pool(int64_t w, int64_t s) { return {MpLayerKind::kL2Pool, 0, w, s}; }
MpLayerSpec Lcn(int64_t w) { return {MpLayerKind::kLcn, 0, w}; }
MpLayerSpec Fc(int64_t units) { return {MpLayerKind::kFullyConnected, 0, 0, 1, 0, units}; }

struct Reference {
  std::vector<std::unique_ptr<Layer>> layers;
  Tensor y, dx;
  std::vector<std::vector<Tensor>> grads;  // per layer, per param
};

// Runs the unpartitioned model forward and backward.
Reference RunReference(const MpModelSpec& spec, const Tensor& x, const Tensor& dy, uint64_t seed) {
  Reference r;
  r.layers = BuildMpReference(spec, seed);
  std::vector<Tensor> acts(spec.layers.size() + 1);
  acts[0] = x;
  for (size_t l = 0; l < spec.layers.size(); ++l) {
    if (spec.layers[l].kind == MpLayerKind::kFullyConnected && acts[l].ndim() == 4)
      acts[l].Reshape({acts[l].dim(0), acts[l].size() / acts[l].dim(0)});
    r.layers[l]->Forward(acts[l], &acts[l + 1]);
  }
  r.y = acts.back();
  Tensor g = dy, d;
  for (int l = static_cast<int>(spec.layers.size()) - 1; l >= 0; --l) {
    r.layers[l]->Backward(g, &d);
    g = d;
  }
  g.Reshape(x.shape());
  r.dx = g;
  for (auto& l : r.layers) {
    r.grads.emplace_back();
    for (Param* p : l->params()) r.grads.back().push_back(p->grad);
  }
  return r;
}

std::vector<Layer*> Raw(const std::vector<std::unique_ptr<Layer>>& v) {
  std::vector<Layer*> out;
  for (auto& l : v) out.push_back(l.get());
  return out;
}

// Every partition's parameter gradients against the reference's, sliced (untied) or summed (tied).
void CheckParamGrads(const MpModelSpec& spec, const Reference& ref, MpReplica* rep) {
  const PartitionPlan& plan = rep->plan();
  for (size_t l = 0; l < spec.layers.size(); ++l) {
    const MpLayerPlan& lp = plan.layers[l];
    const auto kind = spec.layers[l].kind;
    if (kind == MpLayerKind::kL2Pool || kind == MpLayerKind::kLcn) continue;
    std::vector<Tensor> assembled;
    for (const Tensor& g : ref.grads[l]) {
      assembled.emplace_back(g.shape());
      assembled.back().Fill(0.0f);
    }
    for (int p = 0; p < rep->partitions(); ++p) {
      const auto params = rep->partition(p).layer_params()[l];
      const MpRange own = lp.owned[p];
      if (kind == MpLayerKind::kConv) {
        for (size_t i = 0; i < params.size(); ++i)
          for (int64_t k = 0; k < params[i]->grad.size(); ++k) assembled[i][k] += params[i]->grad[k];
      } else if (kind == MpLayerKind::kLocallyConnected) {
        const int64_t per_row = assembled[0].size() / lp.out.h;
        std::memcpy(assembled[0].data() + own.begin * per_row, params[0]->grad.data(), own.size() * per_row * 4);
        for (int64_t k = 0; k < lp.out.c; ++k)
          std::memcpy(assembled[1].data() + (k * lp.out.h + own.begin) * lp.out.w,
                      params[1]->grad.data() + k * own.size() * lp.out.w, own.size() * lp.out.w * 4);
      } else {
        const int64_t in = lp.in.size();
        std::memcpy(assembled[0].data() + own.begin * in, params[0]->grad.data(), own.size() * in * 4);
        std::memcpy(assembled[1].data() + own.begin, params[1]->grad.data(), own.size() * 4);
      }
    }
    for (size_t i = 0; i < assembled.size(); ++i)
      EXPECT_LE(RelErr(assembled[i], ref.grads[l][i]), 1e-5) << "layer " << l << " param " << i;
  }
}

void CheckModel(const MpModelSpec& spec, bool grpc) {
  const int64_t B = 3;
  const Tensor x = RandomTensor({B, spec.channels, spec.height, spec.width}, 7);
  auto plan1 = MakePartitionPlan(spec, 1);
  ASSERT_TRUE(plan1.ok()) << plan1.status();
  const MpLayerPlan& last = plan1->layers.back();
  const Tensor dy = RandomTensor(last.rows ? Shape{B, last.out.c, last.out.h, last.out.w} : Shape{B, last.out.c}, 9);
  const Reference ref = RunReference(spec, x, dy, 5);
  for (int P = 1; P <= 4; ++P) {
    SCOPED_TRACE(spec.Describe() + ", " + std::to_string(P) + " partitions, " + (grpc ? "gRPC" : "in process"));
    auto fresh = BuildMpReference(spec, 5);  // same seed: same weights, zero gradients
    auto transport = grpc ? MakeGrpcTransport({}) : MakeInprocTransport({});
    auto rep = MpReplica::Create(spec, P, Raw(fresh), transport.get());
    ASSERT_TRUE(rep.ok()) << rep.status();
    Tensor y, dx;
    Status st = (*rep)->Step(x, dy, &y, &dx);
    ASSERT_TRUE(st.ok()) << st;
    EXPECT_LE(RelErr(y, ref.y), 1e-5);
    EXPECT_LE(RelErr(dx, ref.dx), 1e-5);
    CheckParamGrads(spec, ref, rep->get());
    // Exactly the plan's boundary slices crossed, forward and backward, once per destination.
    const MpStats s = (*rep)->TotalStats();
    EXPECT_EQ(s.floats_sent, 2 * B * (*rep)->plan().CrossingFloatsPerExample());
    EXPECT_EQ(s.messages_sent, 2 * (*rep)->plan().MessagesPerPass());
    if (P == 1) {
      EXPECT_EQ(s.floats_sent, 0);
    } else if (spec.layers.size() > 1) {
      EXPECT_GT(s.floats_sent, 0);
    }
  }
}

MpModelSpec Model(std::vector<MpLayerSpec> layers) {
  MpModelSpec m;
  m.channels = 2;
  m.height = 16;
  m.width = 10;
  m.layers = std::move(layers);
  return m;
}

class MpTest : public ::testing::TestWithParam<bool> {};

TEST_P(MpTest, LocallyConnected) { CheckModel(Model({Lc(3, 3, 1), Lc(2, 4, 2)}), GetParam()); }
TEST_P(MpTest, Convolution) { CheckModel(Model({Lc(3, 3, 1), Conv(2, 3, 1)}), GetParam()); }
TEST_P(MpTest, L2Pooling) { CheckModel(Model({Lc(3, 3, 1), Pool(3, 1)}), GetParam()); }
TEST_P(MpTest, LocalContrastNormalization) { CheckModel(Model({Lc(3, 3, 1), Lcn(5)}), GetParam()); }
TEST_P(MpTest, FullyConnected) { CheckModel(Model({Lc(2, 3, 1), Fc(9), Fc(5)}), GetParam()); }
TEST_P(MpTest, CatLikeStack) {
  CheckModel(Model({Lc(4, 3, 1), Pool(3, 1), Lcn(3), Conv(3, 3, 1), Pool(2, 2), Fc(10), Fc(7)}), GetParam());
}
INSTANTIATE_TEST_SUITE_P(Transports, MpTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Grpc" : "InProcess"; });

TEST(MpPlan, HalosAreTheReceptiveFieldsAndBadSplitsAreErrors) {
  auto plan = MakePartitionPlan(Model({Lc(3, 4, 2)}), 2);
  ASSERT_TRUE(plan.ok());
  // 7 output rows: 3 and 4. Rows [0, 3) read input rows [0, 8); rows [3, 7) read [6, 16).
  EXPECT_EQ(plan->layers[0].owned[0].end, 3);
  EXPECT_EQ(plan->layers[0].needed[0].end, 8);
  EXPECT_EQ(plan->layers[0].needed[1].begin, 6);
  auto two = MakePartitionPlan(Model({Lc(3, 3, 1), Lcn(5)}), 2);
  ASSERT_TRUE(two.ok());
  // The LCN reads 2 x 2 rows beyond its block (mean, then variance): 4 rows of 3 maps x 8 columns
  // each way.
  EXPECT_EQ(two->CrossingFloatsPerExample(), 2 * 4 * 3 * 8);
  auto bad = MakePartitionPlan(Model({Lc(2, 3, 1), Fc(3)}), 4);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("cannot be split 4 ways"), std::string::npos) << bad.status();
  EXPECT_FALSE(MakePartitionPlan(Model({Fc(4), Lc(1, 2, 1)}), 1).ok());
}

TEST(MpReplica, ADeadPartitionStopsItsReplicaCleanlyAndARebuiltReplicaWorks) {
  const MpModelSpec spec = Model({Lc(3, 3, 1), Pool(3, 1), Fc(6)});
  auto layers = BuildMpReference(spec, 5);
  auto transport = MakeGrpcTransport({});
  auto rep = MpReplica::Create(spec, 3, Raw(layers), transport.get());
  ASSERT_TRUE(rep.ok());
  (*rep)->SetTimeout(Millis(1500));
  const Tensor x = RandomTensor({2, 2, 16, 10}, 1), dy = RandomTensor({2, 6}, 2);
  Tensor y, dx;
  ASSERT_TRUE((*rep)->Step(x, dy, &y, &dx).ok());
  (*rep)->KillPartition(1);
  const auto t0 = std::chrono::steady_clock::now();
  Status st = (*rep)->Step(x, dy, &y, &dx);
  EXPECT_FALSE(st.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_NE(std::string(st.message()).find("partition"), std::string::npos) << st;
  // Restart: a new replica from the same weights.
  auto again = MpReplica::Create(spec, 3, Raw(layers), transport.get());
  ASSERT_TRUE(again.ok());
  Tensor y2, dx2;
  ASSERT_TRUE((*again)->Step(x, dy, &y2, &dx2).ok());
  EXPECT_LE(RelErr(y2, y), 1e-5);
}

// A 4-layer LSTM stack split 1-4 ways, one or more layers per partition, pipelined over 4 time
// chunks: the same output, input gradient and weight gradients as the whole stack.
class LstmPipelineTest : public ::testing::TestWithParam<bool> {};

TEST_P(LstmPipelineTest, EqualsTheWholeStack) {
  const bool grpc = GetParam();
  LstmStackSpec spec;
  spec.input = 6;
  spec.hidden = 5;
  spec.layers = 4;
  const int64_t B = 3, T = 8;
  const Tensor x = RandomTensor({B, T, spec.input}, 3), dy = RandomTensor({B, T, spec.hidden}, 4);
  auto ref = BuildLstmStack(spec, 11);
  std::vector<Tensor> acts(spec.layers + 1);
  acts[0] = x;
  for (int64_t i = 0; i < spec.layers; ++i) ref[i]->Forward(acts[i], &acts[i + 1]);
  Tensor g = dy, d;
  for (int64_t i = spec.layers - 1; i >= 0; --i) {
    ref[i]->Backward(g, &d);
    g = d;
  }
  std::vector<Lstm*> raw;
  for (auto& l : ref) raw.push_back(l.get());
  for (int P = 1; P <= 4; ++P)
    for (int chunks : {1, 4}) {
      SCOPED_TRACE(std::to_string(P) + " partitions, " + std::to_string(chunks) + " chunks");
      auto transport = grpc ? MakeGrpcTransport({}) : MakeInprocTransport({});
      auto pl = LstmPipeline::Create(spec, P, chunks, raw, transport.get());
      ASSERT_TRUE(pl.ok()) << pl.status();
      Tensor y, dx;
      ASSERT_TRUE((*pl)->Step(x, dy, &y, &dx).ok());
      EXPECT_LE(RelErr(y, acts.back()), 1e-5);
      EXPECT_LE(RelErr(dx, g), 1e-5);
      for (int64_t i = 0; i < spec.layers; ++i) {
        const auto grads = (*pl)->LayerGrads(i);
        const auto params = ref[i]->params();
        ASSERT_EQ(grads.size(), params.size());
        for (size_t k = 0; k < grads.size(); ++k) EXPECT_LE(RelErr(grads[k], params[k]->grad), 1e-5) << "layer " << i;
      }
      // Only boundary outputs cross: (P - 1) boundaries x B T H floats, forward and backward.
      EXPECT_EQ((*pl)->TotalStats().floats_sent, 2 * (P - 1) * B * T * spec.hidden);
    }
  EXPECT_FALSE(LstmPipeline::Create(spec, 5, 1, raw, MakeInprocTransport({}).get()).ok());
}
INSTANTIATE_TEST_SUITE_P(Transports, LstmPipelineTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Grpc" : "InProcess"; });

// Seq2Seq split by depth 1-3 ways and pipelined over 1-3 time chunks (uneven, and more chunks than
// a 2-token target has): the same loss and gradients as the whole model, only boundary outputs
// crossing. A dead partition fails the step with a clear error instead of hanging.
class Seq2SeqPartitionsTest : public ::testing::TestWithParam<bool> {};

TEST_P(Seq2SeqPartitionsTest, EqualsTheWholeModel) {
  const bool grpc = GetParam();
  Seq2SeqOptions o;
  o.src_vocab = 13;
  o.tgt_vocab = 11;
  o.embedding = 6;
  o.hidden = 5;
  o.layers = 3;
  const int64_t B = 3;
  Random rng(5);
  for (int64_t T : {7, 2}) {
    const int64_t S = 5;
    Tensor src({B, S}), tgt_in({B, T}), tgt_out({B, T});
    for (int64_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(rng.UniformInt(13));
    for (int64_t i = 0; i < tgt_in.size(); ++i) tgt_in[i] = static_cast<float>(rng.UniformInt(11));
    for (int64_t i = 0; i < tgt_out.size(); ++i) tgt_out[i] = i % 4 == 3 ? -1.0f : static_cast<float>(rng.UniformInt(11));
    Seq2Seq whole(o, 21);
    whole.ZeroGrad();
    const double loss = whole.Forward(src, tgt_in, tgt_out);
    whole.Backward();
    std::map<std::string, Param*> ref;
    for (Param* q : whole.params()) ref[q->name] = q;
    for (int P = 1; P <= 3; ++P)
      for (int chunks : {1, 3}) {
        SCOPED_TRACE("T " + std::to_string(T) + ", " + std::to_string(P) + " partitions, " + std::to_string(chunks) +
                     " chunks");
        auto transport = grpc ? MakeGrpcTransport({}) : MakeInprocTransport({});
        auto parts = Seq2SeqPartitions::Create(&whole, P, chunks, transport.get());
        ASSERT_TRUE(parts.ok()) << parts.status();
        for (int rep = 0; rep < 2; ++rep) {  // a second step must not carry anything over
          auto l = (*parts)->LossAndGradient(src, tgt_in, tgt_out);
          ASSERT_TRUE(l.ok()) << l.status();
          EXPECT_NEAR(*l, loss, 1e-5 * std::abs(loss));
          size_t seen = 0;
          for (int p = 0; p < P; ++p)
            for (Param* q : (*parts)->params(p)) {
              ASSERT_TRUE(ref.count(q->name)) << q->name;
              EXPECT_LE(RelErr(q->grad, ref[q->name]->grad), 1e-5) << q->name;
              ++seen;
            }
          EXPECT_EQ(seen, ref.size());
        }
        // Only boundary outputs cross, once each way: (P - 1) boundaries x B (S + T) H floats.
        EXPECT_EQ((*parts)->TotalStats().floats_sent, 2 * 2 * (P - 1) * B * (S + T) * o.hidden);
      }
  }
  auto t = MakeInprocTransport({});
  Seq2Seq whole(o, 1);
  EXPECT_EQ(Seq2SeqPartitions::Create(&whole, 4, 1, t.get()).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Seq2SeqPartitions::Create(&whole, 2, 0, t.get()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(Seq2SeqPartitionsTest, ADeadPartitionFailsTheStepAndCopyToGivesAWholeModel) {
  Seq2SeqOptions o;
  o.src_vocab = o.tgt_vocab = 9;
  o.embedding = o.hidden = 4;
  o.layers = 2;
  Seq2Seq whole(o, 3), copy(o, 4);
  auto transport = GetParam() ? MakeGrpcTransport({}) : MakeInprocTransport({});
  auto parts = Seq2SeqPartitions::Create(&whole, 2, 2, transport.get());
  ASSERT_TRUE(parts.ok()) << parts.status();
  (*parts)->CopyTo(&copy);
  const std::vector<Param*> a = whole.params(), b = copy.params();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(RelErr(a[i]->value, b[i]->value), 0.0) << a[i]->name;
  Tensor src({2, 3}), tgt({2, 4});
  src.Fill(1.0f);
  tgt.Fill(2.0f);
  (*parts)->SetTimeout(Millis(300));
  (*parts)->KillPartition(1);
  auto l = (*parts)->LossAndGradient(src, tgt, tgt);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("Seq2Seq partition"), std::string::npos) << l.status();
  Tensor bad({2});
  EXPECT_EQ((*parts)->LossAndGradient(bad, tgt, tgt).status().code(), absl::StatusCode::kInvalidArgument);
}
INSTANTIATE_TEST_SUITE_P(Transports, Seq2SeqPartitionsTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Grpc" : "InProcess"; });

// Model parallelism composed with Downpour on the one engine (Dean et al. 2012, figure 2): each
// replica is 2 partitions, each partition's parameters a group on its own 2 shards (Adagrad
// there). The student learns the teacher; every shard of a partition took exactly that
// partition's pushes; and a replica whose partition loses a boundary message mid-run (a fault
// injected on one Deliver call) is rebuilt by the driver while the other goes on.
TEST(MpDownpour, ComposesWithTheParameterServerAndSurvivesALostMessage) {
  FaultInjectingTransport transport(MakeGrpcTransport({}));
  TeacherOptions o;
  o.spec = Model({Lc(3, 3, 1), Pool(3, 1), Fc(6)});
  o.partitions = 2;
  o.steps = 300;  // 150 per replica
  o.partition_timeout = Millis(1500);
  auto job = TeacherJob(o, &transport);
  ASSERT_TRUE(job.ok()) << job.status();
  EngineOptions e;
  e.train.run_dir = (std::filesystem::temp_directory_path() / "distbelief_mp_test_downpour").string();
  e.train.schedule = {};
  e.optimizer.name = Optimizer::kAdagrad;
  e.optimizer.learning_rate = 0.03f;
  e.distributed.mode = Mode::kDownpour;
  e.distributed.downpour.replicas = 2;
  e.distributed.downpour.replica_restarts = 1;
  e.distributed.cluster.shards = 2;
  e.distributed.cluster.injected_transport = &transport;
  Fault lost;  // one boundary message, about a quarter into the run, never arrives
  lost.call = CallKind::kDeliver;
  lost.after = 100;
  lost.times = 1;
  transport.Inject(lost);
  auto r = RunDownpour(e, *job);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(transport.faults_injected(), 1);
  EXPECT_LT(r->last_loss.total, 0.5 * r->first_loss.total) << r->first_loss.total << " -> " << r->last_loss.total;
  EXPECT_EQ(r->replicas_failed, 0);
  EXPECT_EQ(r->replica_restarts, 1);
  ASSERT_EQ(r->shard_versions.size(), 2u);
  // 2 replicas x 150 steps, less the failed step: every shard of every partition saw each push.
  for (const auto& part : r->shard_versions)
    for (uint64_t v : part) EXPECT_EQ(v, 2u * 150u - 1u);
  // Convolution's tied kernel cannot be split this way: a clear error.
  o.spec = Model({Conv(2, 3, 1), Fc(3)});
  EXPECT_EQ(TeacherJob(o, &transport).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace distbelief
