// The scaling-law lab: fits recover known constants, bad sweeps fail clearly, and a tiny real sweep
// produces the database, plots and prediction, resumes without repeating runs, and leaves
// diverged runs out of the fit.
#include <cmath>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "distbelief/base/random.h"
#include "distbelief/text/corpus.h"
#include "distbelief/workloads/lm/lm.h"
#include "distbelief/workloads/scale/fit.h"
#include "distbelief/workloads/scale/sweep.h"
#include "testing/synthetic.h"

namespace distbelief {
namespace {
namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("distbelief_scale_test_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// Chinchilla-like constants (Hoffmann et al. 2022 fitted E 1.69, A 406.4, alpha 0.34, B 410.7,
// beta 0.28) on a 6 x 4 grid with 0.5% multiplicative noise.
std::vector<ScalePoint> SyntheticGrid(double noise, uint64_t seed) {
  Random rng(seed);
  std::vector<ScalePoint> pts;
  for (double n : {1e5, 3e5, 1e6, 3e6, 1e7, 3e7})
    for (double d : {1e7, 1e8, 1e9, 1e10}) {
      const double l = 1.69 + 406.4 / std::pow(n, 0.34) + 410.7 / std::pow(d, 0.28);
      pts.push_back({n, d, l * (1.0 + noise * rng.Normal())});
    }
  return pts;
}

TEST(Fit, RecoversKnownConstantsOfTheJointLaw) {
  FitOptions o;
  o.bootstrap = 40;
  auto fit = FitJointLaw(SyntheticGrid(0.005, 3), o);
  ASSERT_TRUE(fit.ok()) << fit.status();
  const JointLaw& l = fit->law;
  EXPECT_NEAR(l.alpha, 0.34, 0.06);
  EXPECT_NEAR(l.beta, 0.28, 0.06);
  EXPECT_NEAR(l.e, 1.69, 0.15);
  // Predictions matter more than the constants: within 2% a decade beyond the grid in N and D.
  EXPECT_NEAR(l.Predict(1e8, 1e11), 1.69 + 406.4 / std::pow(1e8, 0.34) + 410.7 / std::pow(1e11, 0.28), 0.056);
  ASSERT_EQ(fit->intervals.size(), 5u);
  EXPECT_LE(fit->intervals[2].lo, 0.34 + 0.02);
  EXPECT_GE(fit->intervals[2].hi, 0.34 - 0.02);
  EXPECT_LT(fit->intervals[2].lo, fit->intervals[2].hi);
  // Without noise the fit is close to exact.
  auto exact = FitJointLaw(SyntheticGrid(0.0, 1), FitOptions{});
  ASSERT_TRUE(exact.ok());
  EXPECT_NEAR(exact->law.alpha, 0.34, 0.01);
  EXPECT_NEAR(exact->law.beta, 0.28, 0.01);
  // Compute-optimal N grows as C^(beta / (alpha + beta)).
  const double k = std::log(exact->law.OptimalN(1e22) / exact->law.OptimalN(1e20)) / std::log(100.0);
  EXPECT_NEAR(k, 0.28 / 0.62, 0.02);
}

TEST(Fit, RecoversAOneVariablePowerLaw) {
  std::vector<double> x, loss;
  for (double n : {1e4, 1e5, 1e6, 1e7, 1e8}) x.push_back(n), loss.push_back(2.0 + 30.0 / std::pow(n, 0.3));
  auto fit = FitPowerLaw(x, loss, FitOptions{});
  ASSERT_TRUE(fit.ok()) << fit.status();
  EXPECT_NEAR(fit->law.alpha, 0.3, 0.01);
  EXPECT_NEAR(fit->law.e, 2.0, 0.02);
}

TEST(Fit, TooFewOrBadPointsAreClearErrors) {
  auto pts = SyntheticGrid(0.0, 1);
  pts.resize(5);
  auto fit = FitJointLaw(pts, FitOptions{});
  ASSERT_FALSE(fit.ok());
  EXPECT_EQ(fit.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(fit.status().message()).find("at least 6 points"), std::string::npos) << fit.status();
  pts = SyntheticGrid(0.0, 1);
  pts[3].loss = std::nan("");
  fit = FitJointLaw(pts, FitOptions{});
  ASSERT_FALSE(fit.ok());
  EXPECT_NE(std::string(fit.status().message()).find("loss"), std::string::npos);
  std::vector<double> x = {1, 2, 3}, l = {3, 2, 1};
  EXPECT_EQ(FitPowerLaw(x, l, FitOptions{}).status().code(), absl::StatusCode::kInvalidArgument);
}

// A small synthetic corpus (testing/synthetic.h): 20 documents of about 2,000 words.
fs::path SmallCorpus() { return testing::SyntheticCorpus("scale_test", 20, 2000); }

StatusOr<ScaleOptions> ParseScale(const std::string& toml) {
  DB_ASSIGN_OR_RETURN(ConfigFile f, ConfigFile::Parse(toml, "t"));
  DB_ASSIGN_OR_RETURN(ScaleOptions o, ParseScaleOptions(&f));
  DB_RETURN_IF_ERROR(f.CheckAllRead());
  return o;
}

ScaleOptions TinySweepConfig(const fs::path& corpus, const fs::path& out) {
  const std::string toml = "[scale]\ncorpus_dir = \"" + corpus.string() + "\"\ncache_dir = \"" + (out / "cache").string() +
                           "\"\nout_dir = \"" + out.string() + "\"\nvocab = 300\nholdout_every = 5\ncontext = 32\n"
                           "batch = 8\nwidths = [16, 32, 48]\nlayers = [1, 1, 1]\nhead_size = 16\n"
                           "tokens = [4096, 8192, 16384]\neval_tokens = 4096\nwarmup_steps = 4\nbootstrap = 10\n";
  auto c = ParseScale(toml);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

TEST(Sweep, TinySweepWritesDatabasePlotsAndPredictionAndResumes) {
  const fs::path corpus = SmallCorpus(), out = TempDir("sweep");
  const ScaleOptions config = TinySweepConfig(corpus, out);
  auto r = RunSweep(config);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->runs.size(), 9u);
  EXPECT_EQ(r->runs_executed, 9);
  for (const auto& run : r->runs) {
    EXPECT_EQ(run.status, "done");
    EXPECT_GT(run.loss, 1.0);
    EXPECT_LT(run.loss, std::log(300.0) + 1.0);  // below a uniform guess, give or take
  }
  // More data helps the largest model; the largest model beats the smallest at the most data.
  EXPECT_LT(r->runs[8].loss, r->runs[6].loss + 0.05);
  EXPECT_LT(r->runs[8].loss, r->runs[2].loss);
  ASSERT_TRUE(r->predicted.has_value());
  ASSERT_TRUE(r->measured.has_value());
  EXPECT_EQ(*r->measured, r->runs.back().loss);
  for (const char* f : {"scale.db", "fit.json", "fit.csv", "runs.csv", "loss_vs_n.png", "loss_vs_d.png",
                        "loss_vs_compute.png", "residuals.png"}) {
    ASSERT_TRUE(fs::exists(out / f)) << f;
    EXPECT_GT(fs::file_size(out / f), 100u) << f;
  }
  std::ifstream png(out / "loss_vs_n.png", std::ios::binary);
  char sig[4];
  png.read(sig, 4);
  EXPECT_EQ(std::string(sig + 1, 3), "PNG");
  const auto fit = nlohmann::json::parse(std::ifstream(out / "fit.json"));
  EXPECT_TRUE(fit.contains("prediction"));
  EXPECT_EQ(fit["joint"]["points"], 9);

  // Resume: nothing is trained again, and the same prediction is reported.
  auto again = RunSweep(config);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->runs_executed, 0);
  EXPECT_EQ(*again->predicted, *r->predicted);

  // A diverged run is kept in the database as such and left out of the fit.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((out / "scale.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE runs SET loss = NULL, status = 'diverged' WHERE width = 16 AND tokens = 8192",
                         nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_EQ(sqlite3_changes(db), 1);
  sqlite3_close(db);
  auto third = RunSweep(config);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->runs_executed, 0);
  EXPECT_EQ(third->joint.law.points, 8);
  int diverged = 0;
  for (const auto& run : third->runs) diverged += run.status == "diverged";
  EXPECT_EQ(diverged, 1);
}

TEST(Sweep, TooSmallASweepIsAClearError) {
  const fs::path corpus = SmallCorpus(), out = TempDir("small_sweep");
  ScaleOptions config = TinySweepConfig(corpus, out);
  config.widths = {16, 32};
  config.layers = {1, 1};
  config.tokens = {4096, 8192};
  auto r = RunSweep(config);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(r.status().message()).find("at least 6 points"), std::string::npos) << r.status();
  // The runs it did finish are kept for when the sweep is widened.
  EXPECT_TRUE(fs::exists(out / "scale.db"));
}

TEST(Sweep, ConfigErrorsNameTheKey) {
  auto c = ParseScale("[scale]\nwidths = [32, 64]\nlayers = [2]\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find("scale.layers"), std::string::npos);
  c = ParseScale("[scale]\nwidths = [40]\nlayers = [2]\nhead_size = 16\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find("head_size"), std::string::npos);
  c = ParseScale("[scale]\nmodel_sizes = [1]\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find("scale.model_sizes"), std::string::npos);
}

// The second workload: the MNIST autoencoder, through the same sweep, fits and prediction.
TEST(SweepOnMnist, AutoencoderIsASweepableWorkload) {
  const fs::path out = TempDir("ae_sweep");
  auto c = ParseScale("[scale]\nworkload = \"autoencoder\"\ncorpus_dir = \"data/mnist\"\nout_dir = \"" + out.string() +
                           "\"\nwidths = [8, 16, 32]\nlayers = [1, 1, 1]\ntokens = [1024, 2048, 4096]\nbatch = 32\n"
                           "eval_tokens = 1000\nwarmup_steps = 4\nbootstrap = 10\n");
  ASSERT_TRUE(c.ok()) << c.status();
  auto r = RunSweep(*c);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->runs.size(), 9u);
  // N counts every weight: 784 -> w -> 784 with biases.
  EXPECT_EQ(r->runs.back().params, 784 * 32 + 32 + 32 * 784 + 784);
  for (const auto& run : r->runs) {
    EXPECT_EQ(run.status, "done");
    EXPECT_LT(run.loss, 0.2);  // an untrained network's outputs of ~0.5 score about 0.2
  }
  // More data helps every width (runs are in grid order: width-major, D ascending; the largest
  // run comes last).
  for (int w = 0; w < 2; ++w) EXPECT_LT(r->runs[w * 3 + 2].loss, r->runs[w * 3].loss) << "width " << w;
  EXPECT_LT(r->runs.back().loss, r->runs.front().loss);
  ASSERT_TRUE(r->predicted.has_value());
  EXPECT_TRUE(fs::exists(out / "loss_vs_n.png"));
}

TEST(LanguageModel, LstmWorkloadTrains) {
  auto c = testing::SyntheticTokens("scale_lstm");
  LmRunSpec s;
  s.workload = LmKind::kLstm;
  s.width = 32;
  s.layers = 1;
  s.context = 32;
  s.batch = 8;
  s.tokens = 16384;
  s.eval_tokens = 4096;
  s.warmup_steps = 4;
  auto r = RunLanguageModel(s, c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->diverged);
  EXPECT_EQ(r->params, 4 * 32 * (32 + 32) + 4 * 32);  // one LSTM layer: Wx, Wh, b
  EXPECT_LT(r->loss, std::log(static_cast<double>(c->vocab)));  // learned something
  s.tokens = int64_t{1} << 30;
  EXPECT_EQ(RunLanguageModel(s, c).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace distbelief
