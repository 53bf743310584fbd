// The cat network, tiny and short: training lowers the objective, and the first stage's learned
// filters are smooth and localized where their initial values were noise.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "distbelief/base/random.h"
#include "distbelief/io/checkpoint.h"
#include "distbelief/mp/cat_partitions.h"
#include "distbelief/workloads/cat/cat.h"
#include "distbelief/workloads/cat/report.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

namespace distbelief {
namespace {

EngineOptions Local() {
  EngineOptions e;
  e.train.run_dir = std::filesystem::temp_directory_path() / "distbelief_cat_test_run";
  e.train.seed = 3;
  return e;
}

EngineOptions Downpour(int replicas, int shards) {
  EngineOptions e = Local();
  e.distributed.mode = Mode::kDownpour;
  e.distributed.downpour.replicas = replicas;
  e.distributed.cluster.shards = shards;
  return e;
}

// Mean over filters of the correlation between horizontally adjacent weights: about 0 for noise,
// clearly positive for the blobs and edges that natural images teach.
double NeighbourCorrelation(const Tensor& w, int64_t field) {
  const int64_t filters = w.size() / (field * field);
  double total = 0.0;
  for (int64_t f = 0; f < filters; ++f) {
    const float* p = w.data() + f * field * field;
    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
    int64_t n = 0;
    for (int64_t y = 0; y < field; ++y)
      for (int64_t x = 0; x + 1 < field; ++x) {
        const double a = p[y * field + x], b = p[y * field + x + 1];
        sa += a; sb += b; saa += a * a; sbb += b * b; sab += a * b;
        ++n;
      }
    const double cov = sab / n - sa / n * sb / n;
    const double va = saa / n - sa / n * sa / n, vb = sbb / n - sb / n * sb / n;
    total += cov / std::sqrt(va * vb + 1e-20);
  }
  return total / filters;
}

// Fraction of each filter's energy in its strongest quarter of weights, averaged over filters.
double EnergyInTopQuarter(const Tensor& w, int64_t field) {
  const int64_t filters = w.size() / (field * field), k = field * field;
  double total = 0.0;
  for (int64_t f = 0; f < filters; ++f) {
    std::vector<double> e(k);
    for (int64_t i = 0; i < k; ++i) e[i] = double(w[f * k + i]) * w[f * k + i];
    std::sort(e.rbegin(), e.rend());
    double top = 0, all = 0;
    for (int64_t i = 0; i < k; ++i) {
      all += e[i];
      if (i < k / 4) top += e[i];
    }
    total += top / all;
  }
  return total / filters;
}

// The largest norm of a stage-1 decoding basis (the shards bound each at 1).
double MaxDecoderBasisNorm(CatNet* net) {
  const KeyBlocks dec = net->DecoderBlocks(0);
  const Param* dec_w = nullptr;
  for (const Param* p : net->StageParams(0))
    if (!dec_w && p->name.find(".dec.") != std::string::npos) dec_w = p;
  EXPECT_NE(dec_w, nullptr);
  if (!dec_w) return 0.0;
  const Tensor& w = dec_w->value;
  double max_norm = 0.0;
  for (int64_t b = 0; b < dec.count; ++b) {
    double sq = 0.0;
    for (int64_t i = 0; i < dec.block; ++i) sq += double(w[b * dec.block + i]) * w[b * dec.block + i];
    max_norm = std::max(max_norm, std::sqrt(sq));
  }
  return max_norm;
}

TEST(CatNet, LearnsLocalizedFiltersAndLowersItsObjective) {
  CatOptions o;
  o.train_dir = "data/cat/train/photos";  // the photos alone: a short load
  o.net.frame = 32;
  o.net.stages = {CatStageOptions{8, 8, 4, 3, 5}};
  o.steps_per_stage = 300;
  o.batch = 32;
  o.learning_rate = 0.2f;
  o.max_side = 128;
  o.net.init_scale = 0.05f;  // as configs/cat.toml ships (a full-size start gives ~0.3 here)
  auto net = CatNet::Create(o.net, 3);
  ASSERT_TRUE(net.ok()) << net.status();
  const Tensor init = (*net)->encoder(0).Filters();
  const double corr0 = NeighbourCorrelation(init, 8), top0 = EnergyInTopQuarter(init, 8);
  auto r = TrainCatNet(net->get(), o, Local());
  ASSERT_TRUE(r.ok()) << r.status() << " (run scripts/setup.sh)";
  const Tensor learned = (*net)->encoder(0).Filters();
  const double corr = NeighbourCorrelation(learned, 8), top = EnergyInTopQuarter(learned, 8);
  // Averaged over the 392 filters, noise gives |correlation| of a few hundredths.
  EXPECT_LT(std::abs(corr0), 0.05) << corr0;
  EXPECT_GT(corr, 0.4) << "learned filters look like noise (neighbour correlation " << corr << ")";
  EXPECT_GT(top, top0 + 0.1) << "energy in the strongest quarter: " << top0 << " at start, " << top << " learned";
  const double first = r->first_loss[0].first + r->first_loss[0].second;
  const double last = r->last_loss[0].first + r->last_loss[0].second;
  EXPECT_LT(last, 0.5 * first);
  // The face test ran on the shipped test set (at least 200 faces and 600 non-faces), one row per
  // baseline and per stage, the top row that of the last stage.
  EXPECT_GE(r->test.faces, 200);
  EXPECT_GE(r->test.nonfaces, 600);
  ASSERT_EQ(r->table.rows.size(), 5u);
  EXPECT_EQ(r->table.top.stage, 0);
  EXPECT_EQ(r->table.selection + r->table.report, r->test.faces + r->test.nonfaces);
  // The report and its pictures.
  const std::string dir = std::filesystem::temp_directory_path() / "distbelief_cat_test_report";
  std::filesystem::remove_all(dir);
  auto report = WriteCatReport(net->get(), o, *r, dir);
  ASSERT_TRUE(report.ok()) << report.status();
  for (const char* png : {"filters.png", "histogram.png", "optimal_stimulus.png", "top_images.png", "mean_test_face.png",
                          "mean_top_images.png", "top_stage_stimuli.png", "invariance_scale.png",
                          "invariance_rotation.png", "invariance_shift.png"}) {
    auto img = DecodeGrey(dir + "/" + png);
    EXPECT_TRUE(img.ok()) << png << ": " << img.status();
  }
}

// The optimal stimulus climbs InputGradient: it must be d unit / d frame through every stage
// below the unit, and through the input LCN when there is one (central differences with a step
// large enough for the float forward pass, within 2% of the largest derivative).
TEST(CatNet, InputGradientMatchesFiniteDifferences) {
  for (int64_t input_lcn : {0, 5}) {
    CatNetOptions o;
    o.frame = 20;
    o.stages = {CatStageOptions{4, 6, 2, 3, 3}, CatStageOptions{4, 3, 1, 2, 3}};
    o.input_lcn = input_lcn;
    o.init_scale = 1.0f;
    auto net = CatNet::Create(o, 7);
    ASSERT_TRUE(net.ok()) << net.status();
    Random rng(11);
    Tensor x({1, 1, 20, 20});
    for (float& v : x.span()) v = rng.Uniform(-1.0f, 1.0f);
    const int s = 1;
    const int64_t unit = 5;
    const Tensor g = (*net)->InputGradient(s, unit, x);
    ASSERT_EQ(g.size(), x.size());
    double worst = 0.0, norm = 0.0;
    for (int64_t i = 0; i < x.size(); i += 7) {
      const float keep = x[i], h = 1e-2f;
      x[i] = keep + h;
      const double up = (*net)->Features(x)[s][unit];
      x[i] = keep - h;
      const double down = (*net)->Features(x)[s][unit];
      x[i] = keep;
      const double fd = (up - down) / (2.0 * h);
      worst = std::max(worst, std::abs(fd - g[i]));
      norm = std::max(norm, std::abs(fd));
    }
    EXPECT_GT(norm, 1e-3) << "the unit does not depend on its input (input_lcn " << input_lcn << ")";
    EXPECT_LT(worst, 0.02 * norm + 1e-4) << "input_lcn " << input_lcn;
  }
  CatNetOptions even;
  even.frame = 20;
  even.stages = {CatStageOptions{4, 6, 2, 3, 3}};
  even.input_lcn = 4;
  EXPECT_EQ(CatNet::Create(even, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

// The face test can read a stage's neurons before pooling, pooled, or after its LCN: the code has
// the encoder's shape, the pooled responses the pooling's, and the normalized ones are exactly what
// the next stage takes in. A readout the test does not know is an error naming it.
TEST(CatNet, FeaturesReadTheCodeThePooledOrTheNormalizedResponses) {
  CatNetOptions o;
  o.frame = 20;
  o.stages = {CatStageOptions{4, 6, 2, 3, 3}, CatStageOptions{4, 3, 1, 2, 3}};
  auto net = CatNet::Create(o, 7);
  ASSERT_TRUE(net.ok()) << net.status();
  Random rng(5);
  Tensor x({3, 1, 20, 20});
  for (float& v : x.span()) v = rng.Uniform(-1.0f, 1.0f);
  const std::vector<Tensor> code = (*net)->Features(x, CatNet::Readout::kCode);
  const std::vector<Tensor> pooled = (*net)->Features(x);
  const std::vector<Tensor> normalized = (*net)->Features(x, CatNet::Readout::kNormalized);
  ASSERT_EQ(code.size(), 2u);
  EXPECT_EQ(code[0].shape(), (Shape{3, 4, 8, 8}));    // (20 - 6) / 2 + 1
  EXPECT_EQ(pooled[0].shape(), (Shape{3, 4, 6, 6}));  // pooled 3 x 3, stride 1
  EXPECT_EQ(normalized[0].shape(), pooled[0].shape());
  const Tensor next_input = (*net)->StageInput(1, x);
  ASSERT_EQ(next_input.size(), normalized[0].size());
  double diff = 0.0, moved = 0.0;
  for (int64_t i = 0; i < next_input.size(); ++i) {
    diff = std::max(diff, double(std::abs(next_input[i] - normalized[0][i])));
    moved = std::max(moved, double(std::abs(pooled[0][i] - normalized[0][i])));
  }
  EXPECT_EQ(diff, 0.0);
  EXPECT_GT(moved, 1e-3);  // the LCN changed the pooled responses
  EXPECT_TRUE(ParseReadout("code").ok());
  const auto bad = ParseReadout("lcn");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(bad.status().message()).find("lcn"), std::string::npos);
}

TEST(CatReport, TransformFrameMovesScalesAndRotatesAboutTheCentre) {
  const int64_t s = 16;
  std::vector<float> in(s * s), out(s * s), again(s * s);
  Random rng(3);
  for (float& v : in) v = static_cast<float>(rng.Normal());
  TransformFrame(in.data(), s, 1.0, 0.0, 0.0, out.data());
  EXPECT_GT(Correlation(in.data(), out.data(), s * s), 0.9999);  // identity (renormalized)
  // A shift of 3 pixels right: out(x, y) = in(x - 3, y) inside.
  TransformFrame(in.data(), s, 1.0, 0.0, 3.0, out.data());
  std::vector<float> a, b;
  for (int64_t y = 0; y < s; ++y)
    for (int64_t x = 3; x < s; ++x) a.push_back(in[y * s + x - 3]), b.push_back(out[y * s + x]);
  EXPECT_GT(Correlation(a.data(), b.data(), int64_t(a.size())), 0.999);
  // Four quarter turns give the frame back; one does not.
  std::copy(in.begin(), in.end(), again.begin());
  for (int k = 0; k < 4; ++k) {
    TransformFrame(again.data(), s, 1.0, 90.0, 0.0, out.data());
    again = out;
    if (k == 0) {
      EXPECT_LT(std::abs(Correlation(in.data(), out.data(), s * s)), 0.3);
    }
  }
  EXPECT_GT(Correlation(in.data(), again.data(), s * s), 0.999);
  // Scaled up by 2: the centre pixels spread, the corners leave the frame.
  TransformFrame(in.data(), s, 2.0, 0.0, 0.0, out.data());
  EXPECT_LT(Correlation(in.data(), out.data(), s * s), 0.5);
}

// The same tiny network trained by Downpour: 2 replica threads, 3 in-process shards whose cuts fall
// inside the decoder (so each shard bounds its own whole bases). Filters still become localized,
// the objective falls, and every decoding basis respects the shard-side norm bound.
TEST(CatNet, TrainsWithDownpourOnTheParameterServer) {
  CatOptions o;
  o.train_dir = "data/cat/train/photos";  // the photos alone: a short load
  o.net.frame = 32;
  o.net.stages = {CatStageOptions{8, 8, 4, 3, 5}};
  o.steps_per_stage = 1200;  // both replicas together: 600 steps each
  o.batch = 32;
  o.learning_rate = 0.2f;
  o.max_side = 128;
  auto net = CatNet::Create(o.net, 3);
  ASSERT_TRUE(net.ok());
  const Tensor init = (*net)->encoder(0).Filters();
  const double top0 = EnergyInTopQuarter(init, 8);
  auto r = TrainCatNet(net->get(), o, Downpour(2, 3));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->replicas_failed, 0);
  const Tensor learned = (*net)->encoder(0).Filters();
  EXPECT_GT(NeighbourCorrelation(learned, 8), 0.15);
  // Asynchronous runs differ: in six runs 0.68-0.72 against 0.58 at the start.
  EXPECT_GT(EnergyInTopQuarter(learned, 8), top0 + 0.05) << "at start " << top0;
  const double first = r->first_loss[0].first + r->first_loss[0].second;
  const double last = r->last_loss[0].first + r->last_loss[0].second;
  EXPECT_LT(last, 0.5 * first);
  // Shard cuts land on basis boundaries, and the bound held on every shard.
  const KeyBlocks dec = (*net)->DecoderBlocks(0);
  const ShardMap map = ShardMap::Aligned(dec.offset + dec.block * dec.count + 1, 3, {dec});
  for (int s = 1; s < 3; ++s)
    if (map.begin(s) > dec.offset) {
      EXPECT_EQ((map.begin(s) - dec.offset) % dec.block, 0) << s;
    }
  const double max_norm = MaxDecoderBasisNorm(net->get());
  EXPECT_LE(max_norm, 1.0 + 1e-5);
  EXPECT_GT(max_norm, 0.5);  // the bound is active, not everything shrunk to nothing
}

double RelErr(const Tensor& a, const Tensor& b) {
  double diff = 0, scale = 1e-30;
  for (int64_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, double(std::abs(a[i] - b[i])));
    scale = std::max(scale, double(std::abs(b[i])));
  }
  return diff / scale;
}

// Split by maps over 1-4 partitions, in process and over gRPC, a stage step gives the whole
// network's objective and gradients (stage 2 also gathers stage 1's pooled maps for its LCN).
TEST(CatNet, ModelParallelStageEqualsTheWholeNetwork) {
  CatNetOptions o;
  o.frame = 32;
  o.stages = {CatStageOptions{4, 6, 2, 3, 5}, CatStageOptions{4, 6, 2, 3, 5}};
  Tensor x({3, 1, 32, 32});
  Random rng(5);
  for (float& v : x.span()) v = rng.Uniform(-1.0f, 1.0f);
  for (bool grpc : {false, true})
    for (int P = 1; P <= 4; ++P)
      for (int s = 0; s < 2; ++s) {
        SCOPED_TRACE(std::to_string(P) + " partitions, stage " + std::to_string(s + 1) + (grpc ? ", gRPC" : ""));
        auto whole = CatNet::Create(o, 9);
        ASSERT_TRUE(whole.ok());
        for (Param* q : (*whole)->StageParams(s)) q->grad.Fill(0.0f);
        const Tensor& in = (*whole)->StageInput(s, x);
        const auto ref = (*whole)->StageLossAndGradient(s, in);
        auto transport = grpc ? MakeGrpcTransport({}) : MakeInprocTransport({});
        auto mp = CatPartitions::Create(whole->get(), o, P, transport.get());
        ASSERT_TRUE(mp.ok()) << mp.status();
        auto got = (*mp)->StageLossAndGradient(s, x);
        ASSERT_TRUE(got.ok()) << got.status();
        EXPECT_NEAR(got->first, ref.first, 1e-5 * std::abs(ref.first));
        EXPECT_NEAR(got->second, ref.second, 1e-5 * std::abs(ref.second));
        auto check = CatNet::Create(o, 1);
        (*mp)->CopyGradsTo(check->get(), s);
        const auto want = (*whole)->StageParams(s), have = (*check)->StageParams(s);
        for (size_t i = 0; i < want.size(); ++i) EXPECT_LE(RelErr(have[i]->grad, want[i]->grad), 1e-5) << "param " << i;
        // Only partial reconstructions (and, for stage 2, stage-1 pooled maps) crossed.
        if (P == 1) {
          EXPECT_EQ((*mp)->TotalStats().floats_sent, 0);
        }
      }
  auto whole = CatNet::Create(o, 9);
  auto t = MakeInprocTransport({});
  EXPECT_EQ(CatPartitions::Create(whole->get(), o, 5, t.get()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Downpour with every replica split into 2 model partitions (by maps), each partition's weights on
// its own shards: the objective falls, filters become smooth, and the shard-side norm bound holds
// for the whole network assembled from the partitions.
TEST(CatNet, TrainsWithModelPartitionsUnderDownpour) {
  CatOptions o;
  o.train_dir = "data/cat/train/photos";  // the photos alone: a short load
  o.net.frame = 32;
  o.net.stages = {CatStageOptions{8, 8, 4, 3, 5}};
  o.steps_per_stage = 1200;
  o.batch = 32;
  o.learning_rate = 0.2f;
  o.max_side = 128;
  o.partitions = 2;
  auto net = CatNet::Create(o.net, 3);
  ASSERT_TRUE(net.ok());
  auto r = TrainCatNet(net->get(), o, Downpour(2, 2));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LT(r->last_loss[0].first + r->last_loss[0].second, 0.5 * (r->first_loss[0].first + r->first_loss[0].second));
  EXPECT_GT(NeighbourCorrelation((*net)->encoder(0).Filters(), 8), 0.15);
  const double max_norm = MaxDecoderBasisNorm(net->get());
  EXPECT_LE(max_norm, 1.0 + 1e-5);
  EXPECT_GT(max_norm, 0.5);
}

// The paper-size config parses (it is far too big to build in a test: 2.1 billion parameters).
// top_maps and top_stride change the top stage alone; 0 means the stages' values.
TEST(CatConfig, TopStageMayBeWiderAndDenser) {
  auto file = ConfigFile::Load("configs/cat.toml", {"cat.top_maps=32", "cat.top_stride=1"});
  ASSERT_TRUE(file.ok()) << file.status();
  auto c = ParseCatOptions(&*file);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->net.stages.size(), 3u);
  EXPECT_EQ(c->net.stages[0].maps, 16);
  EXPECT_EQ(c->net.stages[0].stride, 2);
  EXPECT_EQ(c->net.stages[2].maps, 32);
  EXPECT_EQ(c->net.stages[2].stride, 1);
  auto net = CatNet::Create(c->net, 1);
  ASSERT_TRUE(net.ok()) << net.status();
  // 64 -> 30 -> 28 (pool) -> 12 -> 10 -> 5 locations at stride 1 -> 3 x 3 pooled, 32 maps.
  EXPECT_EQ((*net)->encoder(2).out_h(), 5);
  auto plain = ConfigFile::Load("configs/cat.toml");
  ASSERT_TRUE(plain.ok());
  auto p = ParseCatOptions(&*plain);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->net.stages[2].maps, 16);
  EXPECT_EQ(p->net.stages[2].stride, 2);
  EXPECT_FLOAT_EQ(p->min_scale, 0.25f);
  // The crops' smallest scale is read, and out of range is an error naming it.
  auto big = ConfigFile::Load("configs/cat.toml", {"cat.min_scale=0.5"});
  ASSERT_TRUE(big.ok());
  auto b = ParseCatOptions(&*big);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_FLOAT_EQ(b->min_scale, 0.5f);
  auto bad = ConfigFile::Load("configs/cat.toml", {"cat.min_scale=0"});
  ASSERT_TRUE(bad.ok());
  auto e = ParseCatOptions(&*bad);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("min_scale"), std::string::npos) << e.status();
}

TEST(CatConfig, PaperConfigHasThePapersShape) {
  auto file = ConfigFile::Load("configs/cat_paper.toml");
  ASSERT_TRUE(file.ok()) << file.status();
  auto c = ParseCatOptions(&*file);
  ASSERT_TRUE(c.ok()) << c.status();
  auto e = ParseEngineOptions(&*file);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE(file->CheckAllRead().ok());
  EXPECT_EQ(c->net.frame, 200);
  ASSERT_EQ(c->net.stages.size(), 3u);
  EXPECT_EQ(c->net.stages[0].field, 18);
  EXPECT_EQ(c->net.stages[0].pool, 5);
  EXPECT_EQ(e->distributed.mode, Mode::kDownpour);
  // Encoder connections: sum over stages of locations^2 x maps x field^2 x input maps.
  int64_t in = 200, maps_in = 1, connections = 0;
  for (const CatStageOptions& s : c->net.stages) {
    const int64_t o = (in - s.field) / s.stride + 1;
    connections += o * o * s.maps * s.field * s.field * maps_in;
    in = o - s.pool + 1;
    maps_in = s.maps;
  }
  EXPECT_NEAR(connections / 1e9, 1.0, 0.1);
}

// Every [distributed] option is honoured by the cat network or refused by name.
TEST(CatConfig, OptionsItCannotHonourAreRefusedByName) {
  CatOptions o;
  o.train_dir = "data/cat/train/photos";  // the photos alone: a short load
  o.net.frame = 32;
  o.net.stages = {CatStageOptions{4, 8, 4, 3, 5}};
  auto net = CatNet::Create(o.net, 1);
  ASSERT_TRUE(net.ok());
  EngineOptions sb = Downpour(2, 2);
  sb.distributed.mode = Mode::kSandblaster;
  auto r = TrainCatNet(net->get(), o, sb);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("distributed.mode"), std::string::npos) << r.status();
  EngineOptions external = Downpour(2, 2);
  external.distributed.cluster.shard_addresses = {"127.0.0.1:1"};
  r = TrainCatNet(net->get(), o, external);
  EXPECT_NE(r.status().message().find("distributed.shard_addresses"), std::string::npos) << r.status();
  auto file = ConfigFile::Parse("[cat]\nmaps = 4\npartitions = 8\n", "t.toml");
  ASSERT_TRUE(file.ok());
  auto parsed = ParseCatOptions(&*file);
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("cat.partitions"), std::string::npos) << parsed.status();
}

TEST(CatNet, BadGeometryAndMissingDataAreClearErrors) {
  CatNetOptions bad;
  bad.frame = 16;
  bad.stages = {CatStageOptions{8, 20, 2, 3, 5}};
  auto net = CatNet::Create(bad, 1);
  ASSERT_FALSE(net.ok());
  EXPECT_NE(net.status().message().find("does not fit"), std::string::npos) << net.status();
  CatOptions o;
  o.train_dir = "data/cat/train/photos";  // the photos alone: a short load
  o.net.frame = 32;
  o.net.stages = {CatStageOptions{4, 8, 4, 3, 5}};
  o.train_dir = "/nonexistent/photos";
  auto ok = CatNet::Create(o.net, 1);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(TrainCatNet(ok->get(), o, Local()).status().code(), absl::StatusCode::kNotFound);
}

// A checkpoint round-trips; one written before the encoder's layout changed (format
// distbelief-cat-1), or of another network, is refused with the reason, the network untouched.
TEST(CatNet, CheckpointsRoundTripAndOldLayoutsAreRefused) {
  CatNetOptions n;
  n.frame = 16;
  n.stages = {CatStageOptions{4, 4, 2, 3, 5}};
  auto a = CatNet::Create(n, 1), b = CatNet::Create(n, 2);
  ASSERT_TRUE(a.ok() && b.ok());
  const std::string path = ::testing::TempDir() + "/cat_format.safetensors";
  ASSERT_TRUE(SaveCatNet(a->get(), path, "").ok());
  ASSERT_TRUE(LoadCatNet(b->get(), path).ok());
  for (size_t i = 0; i < (*a)->AllParams().size(); ++i) {
    const Tensor& x = (*a)->AllParams()[i]->value;
    const Tensor& y = (*b)->AllParams()[i]->value;
    ASSERT_EQ(x.size(), y.size());
    for (int64_t j = 0; j < x.size(); ++j) ASSERT_EQ(x[j], y[j]);
  }
  auto old = ReadCheckpoint(path);
  ASSERT_TRUE(old.ok());
  old->metadata["format"] = "distbelief-cat-1";
  ASSERT_TRUE(WriteCheckpoint(path, *old).ok());
  auto c = CatNet::Create(n, 3);
  ASSERT_TRUE(c.ok());
  const Tensor before = (*c)->AllParams()[0]->value;
  const Status st = LoadCatNet(c->get(), path);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("distbelief-cat-1"), std::string::npos) << st;
  EXPECT_NE(st.message().find("train again"), std::string::npos) << st;
  for (int64_t j = 0; j < before.size(); ++j) ASSERT_EQ((*c)->AllParams()[0]->value[j], before[j]);
  std::remove(path.c_str());
}

TEST(FaceTest, CutsAndAucOnKnownScores) {
  const std::vector<int> labels = {0, 0, 1, 1, 0, 1};
  const std::vector<float> scores = {1, 2, 3, 4, 2.5f, 1.5f};
  std::vector<int64_t> all = {0, 1, 2, 3, 4, 5};
  double acc = 0.0;
  ScoreCut cut = BestCut(scores.data(), 1, labels, all, &acc);
  EXPECT_NEAR(acc, 5.0 / 6, 1e-12);  // faces above 2.75 (only 1.5 wrong)
  EXPECT_TRUE(cut.faces_above);
  EXPECT_NEAR(CutAccuracy(scores.data(), 1, labels, all, cut), acc, 1e-12);
  // AUC: of the 9 face/non-face pairs, the face scores higher in 7.
  EXPECT_NEAR(RocAuc(scores.data(), 1, labels, all, true), 7.0 / 9, 1e-12);
  EXPECT_NEAR(RocAuc(scores.data(), 1, labels, all, false), 2.0 / 9, 1e-12);
  // Faces below: the direction is found, and ties count half.
  const std::vector<float> low = {4, 3, 1, 1, 3, 1};
  cut = BestCut(low.data(), 1, labels, all, &acc);
  EXPECT_DOUBLE_EQ(acc, 1.0);
  EXPECT_FALSE(cut.faces_above);
  const std::vector<float> flat(6, 1.0f);
  EXPECT_DOUBLE_EQ(RocAuc(flat.data(), 1, labels, all, true), 0.5);
  // A stride reads one column of a matrix.
  const std::vector<float> two = {0, 1, 0, 2, 1, 3, 1, 4, 0, 5, 1, 6};  // column 0 is the label
  BestCut(two.data(), 2, labels, all, &acc);
  EXPECT_DOUBLE_EQ(acc, 1.0);
}

TEST(FaceTest, HalvesAreStratifiedDisjointAndSeeded) {
  std::vector<int> labels(31, 0);
  for (int i = 0; i < 11; ++i) labels[i * 2] = 1;
  const FaceHalves h = SplitFaceSet(labels, 5);
  EXPECT_EQ(h.selection.size() + h.report.size(), labels.size());
  std::vector<int64_t> both = h.selection;
  both.insert(both.end(), h.report.begin(), h.report.end());
  std::sort(both.begin(), both.end());
  for (size_t i = 0; i < both.size(); ++i) EXPECT_EQ(both[i], int64_t(i));
  int faces = 0;
  for (int64_t i : h.selection) faces += labels[i];
  EXPECT_EQ(faces, 6);  // 11 faces: 6 to selection, 5 to report
  EXPECT_EQ(SplitFaceSet(labels, 5).selection, h.selection);
  EXPECT_NE(SplitFaceSet(labels, 6).selection, h.selection);
}

// The reason for the halves: among 4,000 units of pure noise on 80 images, the best one looks
// good where it was chosen and is at chance where it was not (20 draws of the noise).
TEST(FaceTest, ChoosingOnOneHalfAndReportingOnTheOtherUnmasksNoise) {
  const int64_t n = 80, units = 4000, draws = 20;
  std::vector<int> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = i < n / 2;
  std::vector<float> noise(n * units);
  Random rng(9);
  double mean_selected = 0.0, mean_held_out = 0.0, mean_auc = 0.0;
  for (int64_t d = 0; d < draws; ++d) {
    for (float& v : noise) v = static_cast<float>(rng.Normal());
    const FaceRow r = BestUnitRow("noise", noise.data(), units, labels, SplitFaceSet(labels, d));
    mean_selected += r.selection_accuracy / draws;
    mean_held_out += r.accuracy / draws;
    mean_auc += r.auc / draws;
  }
  EXPECT_GT(mean_selected, 0.75) << "the best of 4,000 noise units on 40 images";
  EXPECT_NEAR(mean_held_out, 0.5, 0.05);
  EXPECT_NEAR(mean_auc, 0.5, 0.06);
  // A unit that does carry the label is found and holds up on the other half.
  for (int64_t i = 0; i < n; ++i) noise[i * units + 1234] = labels[i] + 0.3f * static_cast<float>(rng.Normal());
  const FaceRow r = BestUnitRow("signal", noise.data(), units, labels, SplitFaceSet(labels, 1));
  EXPECT_EQ(r.unit, 1234);
  EXPECT_GT(r.accuracy, 0.85);
  EXPECT_GT(r.auc, 0.9);
}

// The linear filter finds a pattern no single pixel shows: faces have pixel 0 above pixel 1.
TEST(FaceTest, TheLinearFilterLearnsWhatNoPixelShows) {
  FaceSet set;
  const int64_t n = 120, s = 4;
  set.frames = Tensor({n, 1, s, s});
  Random rng(4);
  for (int64_t i = 0; i < n; ++i) {
    set.labels.push_back(i % 2);
    float* x = set.frames.data() + i * s * s;
    for (int64_t j = 0; j < s * s; ++j) x[j] = static_cast<float>(rng.Normal());
    const float common = static_cast<float>(3 * rng.Normal()), gap = (i % 2) ? 0.6f : -0.6f;
    x[0] = common + gap;
    x[1] = common - gap;
  }
  set.faces = set.nonfaces = n / 2;
  const FaceHalves h = SplitFaceSet(set.labels, 1);
  const FaceRow pixel = BestUnitRow("pixel", set.frames.data(), s * s, set.labels, h);
  const FaceRow linear = LinearFilterRow(set, h);
  EXPECT_LT(pixel.accuracy, 0.75);
  EXPECT_GT(linear.accuracy, 0.9);
  EXPECT_GT(linear.auc, 0.95);
}

TEST(FaceTest, FoldersThatCannotMakeATestAreErrorsNamingThem) {
  const std::string dir = std::filesystem::temp_directory_path() / "distbelief_face_test_folders";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/few");
  std::filesystem::create_directories(dir + "/many");
  std::filesystem::create_directories(dir + "/empty");
  GreyImage img;
  img.w = img.h = 20;
  Random rng(2);
  for (int i = 0; i < 12; ++i) {
    img.pixels.assign(400, 0.0f);
    for (float& p : img.pixels) p = static_cast<float>(rng.Uniform());
    ASSERT_TRUE(WritePng(dir + "/many/" + std::to_string(i) + ".png", img).ok());
    if (i < 3) {
      ASSERT_TRUE(WritePng(dir + "/few/" + std::to_string(i) + ".png", img).ok());
    }
  }
  std::ofstream(dir + "/many/broken.png") << "not a png";
  auto ok = LoadFaceSet({dir + "/many"}, {dir + "/many"}, 16);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->faces, 12);  // the broken file skipped
  auto few = LoadFaceSet({dir + "/few"}, {dir + "/many"}, 16);
  ASSERT_FALSE(few.ok());
  EXPECT_NE(few.status().message().find(dir + "/few"), std::string::npos) << few.status();
  EXPECT_NE(few.status().message().find("at least 10"), std::string::npos) << few.status();
  auto empty = LoadFaceSet({dir + "/many"}, {dir + "/empty"}, 16);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find(dir + "/empty"), std::string::npos) << empty.status();
  auto one_class = LoadFaceSet({dir + "/many"}, {}, 16);
  ASSERT_FALSE(one_class.ok());
  EXPECT_NE(one_class.status().message().find("non-faces"), std::string::npos) << one_class.status();
  std::filesystem::remove_all(dir);
}

// SHA-256 of every file under `dir` (by sha256sum, which setup's checksums use too): path -> hex.
std::map<std::string, std::string> Sha256Under(const std::string& dir) {
  std::map<std::string, std::string> out;
  const std::string cmd = "find '" + dir + "' -type f -print0 | xargs -0 -r sha256sum";
  std::FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char line[4096];
  while (std::fgets(line, sizeof(line), p)) {
    std::string l(line);
    if (l.size() > 66) out[l.substr(66, l.find_last_not_of('\n') - 65)] = l.substr(0, 64);
  }
  pclose(p);
  return out;
}

// No test image, and no photo a test image was cut from, is in the training stream.
TEST(FaceTest, NoTestImageNorItsSourceIsInTheTrainingStream) {
  const std::string sums = "data/cat/test/sources.sha256";
  std::ifstream in(sums);
  ASSERT_TRUE(in) << sums << " missing (run scripts/setup.sh)";
  std::set<std::string> banned;
  for (std::string line; std::getline(in, line);) banned.insert(line.substr(0, 64));
  EXPECT_GT(banned.size(), 100u);
  int64_t test_files = 0;
  for (const auto& [path, hash] : Sha256Under("data/cat/test")) {
    if (path.ends_with("sources.sha256")) continue;
    banned.insert(hash);
    ++test_files;
  }
  EXPECT_GE(test_files, 800);
  const auto train = Sha256Under("data/cat/train");
  for (const auto& [path, hash] : train)
    EXPECT_EQ(banned.count(hash), 0u) << path << " is a test image or the source of one";
  EXPECT_GT(train.size(), 100u);
}

}  // namespace
}  // namespace distbelief
