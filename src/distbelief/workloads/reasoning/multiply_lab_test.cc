#include "distbelief/workloads/reasoning/multiply_lab.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <unistd.h>

namespace distbelief {
namespace {

namespace fs = std::filesystem;

StatusOr<MultiplyLabOptions> Parse(const std::string& text) {
  DB_ASSIGN_OR_RETURN(ConfigFile file, ConfigFile::Parse(text, "test"));
  return ParseMultiplyLabOptions(&file);
}

MultiplyProblem FromPrompt(const std::string& trace) {
  MultiplyProblem p;
  const size_t star = trace.find('*'), eq = trace.find('=');
  p.a = std::stoll(trace.substr(0, star));
  p.b = std::stoll(trace.substr(star + 1, eq - star - 1));
  return p;
}

TEST(MultiplyLab, OptionsAreCheckedAtTheEdge) {
  auto o = Parse("[multiply]\ndigits = 3\n");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->digits, 3);
  EXPECT_EQ(o->net.vocab, static_cast<int64_t>(CountdownVocabulary().size()));
  // A context too short for the out-of-distribution answers (4 digits: about 110 characters).
  auto s = Parse("[multiply]\ndigits = 3\ncontext = 64\n");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.status().message()).find("context"), std::string::npos) << s.status();
  EXPECT_FALSE(Parse("[multiply]\ndigits = 9\n").ok());  // the OOD test would need 10 digits
  EXPECT_FALSE(Parse("[multiply]\nwidth = 50\nheads = 3\n").ok());
  EXPECT_FALSE(Parse("[multiply]\ndigits = \"three\"\n").ok());
}

TEST(MultiplyLab, DataIsSplitByProblemAndEveryTraceVerifies) {
  MultiplyLabOptions o;
  o.digits = 3;
  o.problems = 3000;
  o.test_limit = 30;
  auto d = BuildMultiplyData(o, 1);
  ASSERT_TRUE(d.ok()) << d.status();
  const CountdownData& train = *d->train;
  ASSERT_EQ(train.traces.size(), train.prompt_chars.size());
  EXPECT_GT(train.traces.size(), 1500u);  // 81 one-digit problems at most, repeats dropped
  std::set<std::pair<int64_t, int64_t>> seen;
  int64_t supervised = 0;
  for (size_t i = 0; i < train.traces.size(); ++i) {
    const std::string& t = train.traces[i];
    const MultiplyProblem p = FromPrompt(t);
    EXPECT_EQ(t.substr(0, train.prompt_chars[i]), MultiplyPrompt(p));
    const MultiplyVerdict v = VerifyMultiply(p, t.substr(train.prompt_chars[i]));
    EXPECT_TRUE(v.ok) << t << ": " << v.reason;
    EXPECT_FALSE(MultiplySplit(p, o.test_percent)) << t;
    EXPECT_TRUE(seen.insert({p.a, p.b}).second) << "twice: " << t;
    for (char c : t) EXPECT_GE(CountdownId(c), 0) << t;
    supervised += static_cast<int64_t>(t.size()) - train.prompt_chars[i];
  }
  EXPECT_EQ(supervised, train.supervised_tokens);
  // Held out: never trained on, every digit count present; out of distribution: one more digit.
  std::set<size_t> counts;
  for (const MultiplyProblem& p : d->test) {
    EXPECT_TRUE(MultiplySplit(p, o.test_percent));
    EXPECT_EQ(seen.count({p.a, p.b}), 0u);
    counts.insert(std::to_string(p.a).size());
  }
  EXPECT_EQ(counts, (std::set<size_t>{1, 2, 3}));
  ASSERT_EQ(d->ood.size(), 30u);
  for (const MultiplyProblem& p : d->ood) {
    EXPECT_EQ(std::to_string(p.a).size(), 4u);
    EXPECT_EQ(seen.count({p.a, p.b}), 0u);
  }
  // The same seed, the same data; another seed, other problems.
  auto again = BuildMultiplyData(o, 1);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->train->traces, train.traces);
  auto other = BuildMultiplyData(o, 2);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->train->traces, train.traces);
}

TEST(MultiplyLab, PolicyLearnsThroughTheEngineAndTheReportScoresItByTheVerifier) {
  const std::string dir = (fs::temp_directory_path() / ("multiply_lab_test_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string config =
      "[multiply]\ndigits = 2\nproblems = 4000\ntest_limit = 20\ncontext = 96\nwidth = 48\nlayers = 2\nheads = 2\n"
      "batch = 16\ntrain_tokens = 300000\nsamples = 4\n";
  auto file = ConfigFile::Parse(config, "test");
  ASSERT_TRUE(file.ok()) << file.status();
  auto w = MakeMultiplyWorkload(&*file);
  ASSERT_TRUE(w.ok()) << w.status();
  EngineOptions e;
  e.train.run_dir = dir;
  e.train.schedule = {};
  e.optimizer.name = Optimizer::kAdam;
  e.optimizer.learning_rate = 3e-3f;
  e.optimizer.clip_norm = 1.0f;
  e.train.config_text = config;
  auto job = (*w)->MakeJob(e);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->name, "multiply");
  auto r = RunJob(e, *job);
  ASSERT_TRUE(r.ok()) << r.status();
  // Uniform over the vocabulary is log 27 = 3.3 nats; digits and the steps' layout are learnable.
  EXPECT_LT(r->last_loss.total, 1.2) << "first " << r->first_loss.total;
  EXPECT_LT(r->last_loss.total, r->first_loss.total);

  // An answer called verified verifies; the right product by rejected steps is never verified.
  // Trained problems (the first 20 traces): the policy finds some of them.
  Gpt& gpt = static_cast<CountdownReplica*>(r->model.get())->gpt();
  auto d = BuildMultiplyData(*ParseMultiplyLabOptions(&*file), e.train.seed);
  ASSERT_TRUE(d.ok());
  Random rng(5);
  int64_t verified = 0;
  for (size_t i = 0; i < 20; ++i) {
    const MultiplyProblem p = FromPrompt(d->train->traces[i]);
    const MultiplyAnswer ans = SearchMultiply(&gpt, p, 4, 1.0f, &rng);
    EXPECT_GT(ans.greedy_tokens, 0);
    EXPECT_GE(ans.tokens, ans.greedy_tokens);
    EXPECT_EQ(ans.verified, VerifyMultiply(p, ans.text).ok) << ans.text;
    if (ans.greedy_verified) {
      EXPECT_TRUE(ans.verified);
    }
    if (ans.right_product_rejected) {
      EXPECT_FALSE(ans.greedy_verified);
    }
    if (!ans.verified) {
      EXPECT_GT(ans.tokens, ans.greedy_tokens) << "no sample drawn";
    }
    verified += ans.verified;
  }
  EXPECT_GT(verified, 0) << "no trained problem solved by greedy + 4 samples after training";

  ASSERT_TRUE((*w)->Report(e, &*r).ok());
  std::ifstream md(dir + "/report.md");
  std::stringstream text;
  text << md.rdbuf();
  EXPECT_NE(text.str().find("| 2 digits, "), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("| 3 digits (out of distribution), 20 problems"), std::string::npos) << text.str();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace distbelief
