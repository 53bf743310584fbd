// The GAN workload: the Parzen estimator against densities known in closed form, its bad input,
// the two players' gradients, and training (local and Downpour) on synthetic digits that raises
// the Parzen log-likelihood of held-out digits far above the untrained generator's; a short run
// on real MNIST (label "data").
#include "distbelief/workloads/gan/gan_mnist.h"

#include <cmath>
#include <filesystem>
#include <numbers>

#include <gtest/gtest.h>

#include "testing/synthetic.h"

namespace distbelief {
namespace {

namespace fs = std::filesystem;

Tensor Gaussian(int64_t n, int64_t d, double scale, uint64_t seed) {
  Tensor t({n, d});
  Random rng(seed);
  for (float& v : t.span()) v = static_cast<float>(scale * rng.Normal());
  return t;
}

TEST(Parzen, OneCentreIsTheGaussianDensity) {
  Tensor c({1, 2}), x({1, 2});
  c[0] = 1.0f, c[1] = -1.0f, x[0] = 2.0f, x[1] = 1.0f;  // |x - c|^2 = 5
  auto d2 = SquaredDistances(x, c);
  ASSERT_TRUE(d2.ok()) << d2.status();
  EXPECT_NEAR((*d2)[0], 5.0f, 1e-5);
  const double sigma = 0.7;
  const ParzenEstimate e = ParzenFromDistances(*d2, sigma, 2);
  EXPECT_NEAR(e.mean, -5.0 / (2 * sigma * sigma) - std::log(2 * std::numbers::pi * sigma * sigma), 1e-5);
  EXPECT_EQ(e.count, 1);
}

TEST(Parzen, TwoCentresAverageTheirDensities) {
  Tensor c({2, 1}), x({1, 1});
  c[0] = 0.0f, c[1] = 3.0f, x[0] = 1.0f;
  auto d2 = SquaredDistances(x, c);
  ASSERT_TRUE(d2.ok());
  const double s = 1.3, k = 1.0 / std::sqrt(2 * std::numbers::pi * s * s);
  const double want = std::log(0.5 * k * std::exp(-1.0 / (2 * s * s)) + 0.5 * k * std::exp(-4.0 / (2 * s * s)));
  EXPECT_NEAR(ParzenFromDistances(*d2, s, 1).mean, want, 1e-5);
}

// Samples of N(0, I) in 3 dimensions: with sigma chosen on validation data, the test estimate is
// close to the true mean log-density, -(3/2) log(2 pi e), and data from a wider Gaussian scores
// far lower (so the estimate tells a good generator from a bad one).
TEST(Parzen, RecoversAKnownDensityAndRanksAWrongOneLower) {
  const Tensor samples = Gaussian(20000, 3, 1.0, 1), val = Gaussian(2000, 3, 1.0, 2), test = Gaussian(2000, 3, 1.0, 3);
  auto r = ParzenLogLikelihood(samples, val, test);
  ASSERT_TRUE(r.ok()) << r.status();
  const double truth = -1.5 * std::log(2 * std::numbers::pi * std::numbers::e);
  EXPECT_NEAR(r->test.mean, truth, 0.1);
  EXPECT_GT(r->test.standard_error, 0.0);
  EXPECT_LT(r->test.standard_error, 0.1);
  EXPECT_GT(r->sigma, 0.1);
  EXPECT_LT(r->sigma, 0.8);
  auto wrong = ParzenLogLikelihood(Gaussian(20000, 3, 2.5, 4), val, test);
  ASSERT_TRUE(wrong.ok());
  EXPECT_LT(wrong->test.mean, truth - 0.5);
}

TEST(Parzen, BadInputIsAnErrorNamingIt) {
  const Tensor good = Gaussian(10, 4, 1.0, 1);
  auto narrow = ParzenLogLikelihood(good, Gaussian(10, 3, 1.0, 2), good);
  ASSERT_FALSE(narrow.ok());
  EXPECT_NE(narrow.status().message().find("validation"), std::string::npos) << narrow.status();
  Tensor nan = good;
  nan[5] = NAN;
  auto bad = ParzenLogLikelihood(nan, good, good);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("non-finite"), std::string::npos);
  EXPECT_FALSE(ParzenLogLikelihood(Tensor({0, 4}), good, good).ok());
}

GanMnistOptions Small() {
  GanMnistOptions o;
  o.net.noise = 16;
  o.net.g_hidden = {128};
  o.net.g_output = Activation::kSigmoid;
  o.net.d_hidden = {64};
  o.net.d_pieces = 3;
  o.net.d_dropout = 0.3f;
  o.batch = 50;
  o.epochs = 10;
  o.parzen_samples = 1000;
  o.parzen_validation = 500;
  o.parzen_test = 500;
  return o;
}

// Synthetic digits (10 noisy prototypes) split into train / validation / test.
std::shared_ptr<const GanData> Digits() {
  static std::shared_ptr<const GanData> data = [] {
    auto d = testing::SyntheticDigits(3000, 1000);
    auto g = std::make_shared<GanData>();
    g->train = d->train.images;
    Tensor v({500, 784}), t({500, 784});
    std::copy(d->test.images.data(), d->test.images.data() + 500 * 784, v.data());
    std::copy(d->test.images.data() + 500 * 784, d->test.images.data() + 1000 * 784, t.data());
    g->validation = std::move(v);
    g->test = std::move(t);
    return std::shared_ptr<const GanData>(g);
  }();
  return data;
}

TEST(GanModel, GeneratorGradientOnlyOnGeneratorSteps) {
  GanOptions o = Small().net;
  Gan gan(o, 3);
  const Tensor real = Digits()->train;
  Tensor batch({8, 784});
  std::copy(real.data(), real.data() + 8 * 784, batch.data());
  auto norm = [](Sequential& s) {
    double n = 0;
    for (Param* p : s.params())
      for (float g : p->grad.span()) n += double(g) * g;
    return n;
  };
  GanLosses l = gan.Gradients(batch, false);
  EXPECT_EQ(norm(gan.generator()), 0.0);
  EXPECT_GT(norm(gan.discriminator()), 0.0);
  EXPECT_EQ(l.g_loss, 0.0);
  EXPECT_NEAR(l.d_loss, 2 * std::log(2.0), 0.5);  // an untrained D is near 1/2 on everything
  l = gan.Gradients(batch, true);
  EXPECT_GT(norm(gan.generator()), 0.0);
  EXPECT_GT(l.g_loss, 0.0);
}

EngineOptions Engine(const std::string& name) {
  EngineOptions e;
  e.train.run_dir = (fs::temp_directory_path() / ("distbelief_gan_test_" + name)).string();
  fs::remove_all(e.train.run_dir);
  fs::create_directories(e.train.run_dir);
  e.train.schedule = {};
  e.optimizer.name = Optimizer::kAdam;
  e.optimizer.learning_rate = 1e-3f;
  e.optimizer.beta1 = 0.5f;
  return e;
}

double Untrained(const GanMnistOptions& o) {
  auto m = GanReplica::Create(o, Digits(), 1, 0, 1);
  EXPECT_TRUE(m.ok());
  auto t = GanParzen(&(*m)->gan(), *Digits(), o, 1);
  EXPECT_TRUE(t.ok()) << t.status();
  return t->gan.test.mean;
}

TEST(GanMnist, LearnsSyntheticDigitsLocally) {
  const GanMnistOptions o = Small();
  const EngineOptions e = Engine("local");
  auto job = GanJob(o, Digits(), e);
  ASSERT_TRUE(job.ok()) << job.status();
  auto r = RunJob(e, *job);
  ASSERT_TRUE(r.ok()) << r.status();
  auto t = GanParzen(&static_cast<GanReplica*>(r->model.get())->gan(), *Digits(), o, 1);
  ASSERT_TRUE(t.ok()) << t.status();
  const double before = Untrained(o);
  std::printf("Parzen test LL: untrained %.1f, trained %.1f, real digits %.1f\n", before, t->gan.test.mean, t->real.test.mean);
  // Real digits as centres bound what samples can reach; the trained generator closes most of the
  // gap from the untrained one.
  EXPECT_GT(t->gan.test.mean, before + 0.6 * (t->real.test.mean - before))
      << "untrained " << before << ", trained " << t->gan.test.mean << ", real digits " << t->real.test.mean;
  EXPECT_TRUE(fs::exists(e.train.run_dir + "/samples/epoch_001.png"));
  EXPECT_TRUE(fs::exists(e.train.run_dir + "/samples/epoch_010.png"));
}

TEST(GanMnist, LearnsUnderDownpourWithBothPlayersOnShards) {
  GanMnistOptions o = Small();
  EngineOptions e = Engine("downpour");
  e.distributed.mode = Mode::kDownpour;
  e.distributed.downpour.replicas = 2;
  e.distributed.cluster.shards = 2;
  auto job = GanJob(o, Digits(), e);
  ASSERT_TRUE(job.ok()) << job.status();
  auto r = RunJob(e, *job);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->shard_versions.size(), 2u);  // a group each: D and G
  for (const auto& group : r->shard_versions)
    for (uint64_t v : group) EXPECT_GT(v, 0u);
  auto t = GanParzen(&static_cast<GanReplica*>(r->model.get())->gan(), *Digits(), o, 1);
  ASSERT_TRUE(t.ok());
  const double before = Untrained(o);
  std::printf("Parzen test LL: untrained %.1f, trained %.1f, real digits %.1f\n", before, t->gan.test.mean, t->real.test.mean);
  EXPECT_GT(t->gan.test.mean, before + 0.5 * (t->real.test.mean - before))
      << "untrained " << before << ", trained " << t->gan.test.mean << ", real digits " << t->real.test.mean;
}

TEST(GanMnist, SandblasterIsRefusedByName) {
  EngineOptions e = Engine("sandblaster");
  e.distributed.mode = Mode::kSandblaster;
  auto job = GanJob(Small(), Digits(), e);
  ASSERT_FALSE(job.ok());
  EXPECT_NE(job.status().message().find("Sandblaster"), std::string::npos);
}

TEST(GanMnist, ConfigErrorsNameTheKey) {
  auto f = ConfigFile::Parse("[gan]\nbatch = 0\n", "test.toml");
  ASSERT_TRUE(f.ok());
  auto o = ParseGanMnistOptions(&*f);
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("batch"), std::string::npos) << o.status();
  auto g = ConfigFile::Parse("[gan]\ntrain_size = 60000\n", "test.toml");
  ASSERT_TRUE(g.ok());
  EXPECT_FALSE(ParseGanMnistOptions(&*g).ok());
}

// Real MNIST (needs scripts/setup.sh): one epoch of a small GAN on 10,000 digits already moves
// the Parzen estimate most of the way from the untrained generator to real digits.
TEST(GanMnistOnData, OneEpochOnMnist) {
  GanMnistOptions o = Small();
  o.net.g_hidden = {256};
  o.net.d_hidden = {128};
  o.train_size = 50000;
  o.epochs = 1;
  o.parzen_samples = 2000;
  auto data = GanData::Load(o);
  ASSERT_TRUE(data.ok()) << data.status() << " (run scripts/setup.sh)";
  const EngineOptions e = Engine("mnist");
  auto job = GanJob(o, *data, e);
  ASSERT_TRUE(job.ok());
  auto r = RunJob(e, *job);
  ASSERT_TRUE(r.ok()) << r.status();
  auto t = GanParzen(&static_cast<GanReplica*>(r->model.get())->gan(), **data, o, 1);
  ASSERT_TRUE(t.ok());
  auto m = GanReplica::Create(o, *data, 1, 0, 1);
  auto t0 = GanParzen(&(*m)->gan(), **data, o, 1);
  ASSERT_TRUE(t0.ok());
  std::printf("Parzen test LL: untrained %.1f, trained %.1f, real digits %.1f\n", t0->gan.test.mean, t->gan.test.mean,
              t->real.test.mean);
  EXPECT_GT(t->gan.test.mean, t0->gan.test.mean + 0.5 * (t->real.test.mean - t0->gan.test.mean))
      << "untrained " << t0->gan.test.mean << ", trained " << t->gan.test.mean << ", real " << t->real.test.mean;
}

}  // namespace
}  // namespace distbelief
