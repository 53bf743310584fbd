#include "distbelief/workloads/reasoning/countdown_lab.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <unistd.h>

#include "distbelief/train/checkpointing.h"
#include "distbelief/workloads/reasoning/star_lab.h"
#include "distbelief/workloads/reasoning/verifier_lab.h"

namespace distbelief {
namespace {

namespace fs = std::filesystem;

std::string TempDir(const std::string& name) {
  const std::string d = (fs::temp_directory_path() / ("countdown_lab_test_" + std::to_string(::getpid())) / name).string();
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A small policy on 3-number streams, trained briefly through the engine.
CountdownLabOptions Small() {
  CountdownLabOptions o;
  o.sources = 3;
  o.problems = 3000;
  o.test_limit = 20;
  o.max_chars = 120;
  o.net = {static_cast<int64_t>(CountdownVocabulary().size()), 144, 48, 2, 2};
  o.batch = 16;
  o.train_tokens = 250000;
  o.samples = 4;
  return o;
}

CountdownSearchOptions SamplesSearch(int64_t samples) {
  CountdownSearchOptions o;
  o.tree = false;
  o.samples = samples;
  return o;
}

EngineOptions Adam(const std::string& dir) {
  EngineOptions e;
  e.train.run_dir = dir;
  e.train.schedule = {};
  e.optimizer.name = Optimizer::kAdam;
  e.optimizer.learning_rate = 3e-3f;
  e.optimizer.clip_norm = 1.0f;
  e.train.config_text = "[countdown]\nsources = 3\nmax_chars = 120\ncontext = 144\nwidth = 48\nlayers = 2\nheads = 2\n";
  return e;
}

TEST(CountdownLab, DataAreSplitByProblemAndTracesFitTheContext) {
  const CountdownLabOptions o = Small();
  auto d = BuildCountdownData(o, 1);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->test.size(), 20u);
  EXPECT_EQ((*d)->ood.size(), 20u);
  for (const auto& p : (*d)->ood) EXPECT_EQ(p.numbers.size(), 4u);
  std::set<std::string> train;
  for (size_t i = 0; i < (*d)->traces.size(); ++i) {
    const std::string& t = (*d)->traces[i];
    EXPECT_LE(static_cast<int64_t>(t.size()), o.net.context);
    train.insert(t.substr(0, static_cast<size_t>((*d)->prompt_chars[i])));
    for (char c : t) EXPECT_GE(CountdownId(c), 1) << t;
  }
  for (const auto& p : (*d)->test) EXPECT_EQ(train.count(CountdownPrompt(p)), 0u) << "held-out problem in training";
  EXPECT_GT((*d)->traces.size(), 700u);
  EXPECT_EQ(CountdownId('x'), -1);
}

TEST(CountdownLab, ReversedDigitsAreTheSameTracesBackwardsAndSamplingTurnsThemRound) {
  CountdownLabOptions o = Small();
  auto natural = BuildCountdownData(o, 1);
  ASSERT_TRUE(natural.ok()) << natural.status();
  o.text.reversed_digits = true;
  auto reversed = BuildCountdownData(o, 1);
  ASSERT_TRUE(reversed.ok()) << reversed.status();
  ASSERT_EQ((*reversed)->traces.size(), (*natural)->traces.size());
  EXPECT_EQ((*reversed)->prompt_chars, (*natural)->prompt_chars);
  EXPECT_EQ((*reversed)->test, (*natural)->test);
  for (size_t i = 0; i < (*natural)->traces.size(); ++i)
    ASSERT_EQ((*reversed)->traces[i], ReverseDigitRuns((*natural)->traces[i]));
  // The policy reads the prompt backwards and its texts come back turned round: the same draws as
  // a natural-digit call on the reversed prompt, each text reversed.
  Gpt gpt(o.net, 3);
  const std::string prompt = CountdownPrompt((*natural)->test[0]);
  Random a(5), b(5);
  int64_t ta = 0, tb = 0;
  const auto backwards = SampleCountdown(&gpt, prompt, 4, 1.0f, &a, &ta, ".", o.text);
  const auto forwards = SampleCountdown(&gpt, ReverseDigitRuns(prompt), 4, 1.0f, &b, &tb, ".", {});
  ASSERT_EQ(backwards.size(), 4u);
  EXPECT_EQ(ta, tb);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(backwards[i], ReverseDigitRuns(forwards[i]));
  EXPECT_EQ(CountdownCalculator("12 5>60:12*5=", false), "60");
  EXPECT_EQ(CountdownCalculator("21 5>06:21*5=", true), "06");
  EXPECT_EQ(CountdownCalculator("[60 7 3]60-7=", false), "53");
  EXPECT_EQ(CountdownCalculator("99,100/4=", false), "25");
  EXPECT_EQ(CountdownCalculator("3-5=", false), "");
  EXPECT_EQ(CountdownCalculator("7/2=", false), "");
  EXPECT_EQ(CountdownCalculator("7/0=", false), "");
  EXPECT_EQ(CountdownCalculator("12*5", false), "");
  EXPECT_EQ(CountdownCalculator("*5=", false), "");
  EXPECT_EQ(CountdownCalculator("12*=", false), "");
  EXPECT_EQ(CountdownCalculator("1234567890*2=", false), "");
  EXPECT_EQ(CountdownGoalTest("[4 6]6*4=24>", "24"), "24#");
  EXPECT_EQ(CountdownGoalTest("6+4=10>", "24"), "24!");
  EXPECT_EQ(CountdownGoalTest("6+4=240>", "24"), "24!");
  EXPECT_EQ(CountdownGoalTest("6+4=4>", "24"), "24!");
  EXPECT_EQ(CountdownGoalTest("6+4=10", "24"), "");
  EXPECT_EQ(CountdownGoalTest("6+4=>", "24"), "");
  EXPECT_EQ(CountdownGoalTest("24>", "24"), "");
  EXPECT_EQ(CountdownGoalTest(">", "24"), "");
  {  // Sampling with the goal test: after every "=r>" the policy wrote, the target and the right verdict.
    CountdownPolicyText goal;
    goal.goal_test = true;
    Random rg(7);
    int64_t tg = 0, tests = 0;
    const std::string p = "12 5 7>60:";
    for (const std::string& t : SampleCountdown(&gpt, p, 64, 3.0f, &rg, &tg, ".", goal)) {
      for (size_t at = t.find('>'); at != std::string::npos; at = t.find('>', at + 1)) {
        size_t d = at;
        while (d > 0 && std::isdigit(static_cast<unsigned char>(t[d - 1]))) --d;
        if (d == at || d == 0 || t[d - 1] != '=' || at + 3 >= t.size()) continue;
        ++tests;
        EXPECT_EQ(t.substr(at + 1, 3), std::string("60") + (t.substr(d, at - d) == "60" ? "#" : "!")) << t;
      }
    }
    EXPECT_GT(tests, 0) << "no \"=r>\" in 64 samples at temperature 3";
  }
  auto f = ConfigFile::Parse("[countdown]\ndigits = \"upside_down\"\n", "bad.toml");
  ASSERT_TRUE(f.ok());
  EXPECT_NE(ParseCountdownLabOptions(&*f).status().message().find("digits"), std::string_view::npos);
  auto g = ConfigFile::Parse("[countdown]\ndigits = \"reversed\"\n", "ok.toml");
  ASSERT_TRUE(g.ok());
  auto go = ParseCountdownLabOptions(&*g);
  ASSERT_TRUE(go.ok()) << go.status();
  EXPECT_TRUE(go->text.reversed_digits);
  EXPECT_TRUE(go->tree.text.reversed_digits);
}

TEST(CountdownLab, PolicyLearnsTheTracesAndSearchAnswersEveryLine) {
  const CountdownLabOptions o = Small();
  auto d = BuildCountdownData(o, 1);
  ASSERT_TRUE(d.ok()) << d.status();
  const std::string dir = TempDir("train");
  const EngineOptions e = Adam(dir);
  auto job = CountdownJob(o, *d, e);
  ASSERT_TRUE(job.ok()) << job.status();
  auto r = RunJob(e, *job);
  ASSERT_TRUE(r.ok()) << r.status();
  // Uniform over the vocabulary is log 27 = 3.3 nats; the streams' structure is most of the text.
  EXPECT_LT(r->last_loss.total, 1.6) << "first " << r->first_loss.total;
  Gpt& gpt = static_cast<CountdownReplica*>(r->model.get())->gpt();
  Random rng(3);
  int64_t tokens = 0;
  const auto texts = SampleCountdown(&gpt, CountdownPrompt((*d)->test[0]), 3, 1.0f, &rng, &tokens);
  ASSERT_EQ(texts.size(), 3u);
  EXPECT_GT(tokens, 3);
  for (const auto& t : texts) EXPECT_LE(static_cast<int64_t>(t.size()), o.net.context);
  // With a calculator every legal operation the policy writes has its exact result.
  {
    CountdownPolicyText calc;
    calc.calculator = true;
    int64_t ops = 0, calc_tokens = 0;
    for (size_t i = 0; i < 4; ++i)
      for (const std::string& t : SampleCountdown(&gpt, CountdownPrompt((*d)->test[i]), 4, 1.0f, &rng, &calc_tokens, ".", calc)) {
        for (size_t at = t.find('='); at != std::string::npos; at = t.find('=', at + 1)) {
          const std::string want = CountdownCalculator(t.substr(0, at + 1), false);
          if (want.empty()) continue;
          ++ops;
          EXPECT_EQ(t.substr(at + 1, want.size()), want) << t;
          EXPECT_FALSE(at + 1 + want.size() < t.size() && std::isdigit(static_cast<unsigned char>(t[at + 1 + want.size()])))
              << "the result goes on after the calculator's digits: " << t;
        }
      }
    EXPECT_GT(ops, 8);
  }

  // The ORM's data: every sample labelled by the exact verifier; a score is a probability.
  const std::vector<CountdownProblem> some((*d)->train.begin(), (*d)->train.begin() + 10);
  const auto ex = CollectOrmExamples(&gpt, some, 3, 1.0f, 5);
  ASSERT_EQ(ex.size(), 30u);
  for (size_t i = 0; i < ex.size(); ++i) {
    const CountdownProblem& p = some[i / 3];
    EXPECT_EQ(ex[i].text.rfind(CountdownPrompt(p), 0), 0u) << ex[i].text;
    EXPECT_EQ(ex[i].correct, VerifySteps(p, SolutionPart(ex[i].text)).ok) << ex[i].text;
    const double s = OrmScore(&gpt, ex[i].text);
    EXPECT_GT(s, 0.0);
    EXPECT_LT(s, 1.0);
  }
  EXPECT_GT(OrmScore(&gpt, std::string(500, '1')), 0.0);  // longer than the context: read up to it
  // Process labels: every first step is counted once, and a rollout that verifies proves the step
  // reachable, so "rollouts only" cannot happen.
  const StepLabelAgreement agree = CheckStepLabels(&gpt, (*d)->test, 3, 4, 1.0f, 9);
  EXPECT_EQ(agree.both + agree.mc_only + agree.exact_only + agree.neither + agree.invalid, agree.prefixes);
  EXPECT_EQ(agree.mc_only, 0);
  EXPECT_GT(agree.prefixes, 0);
  // Beam search guided by a verifier (here the policy itself stands in for one): an answer it
  // calls verified verifies, and it spends tokens.
  for (const CountdownProblem& p : some) {
    const CountdownAnswer a = PrmBeamSearch(&gpt, &gpt, &gpt, p, 2, 2, 1.0f, &rng);
    EXPECT_GT(a.tokens, 0);
    if (a.verified) {
      EXPECT_TRUE(VerifyExpression(p, a.expression).ok) << a.expression;
    }
  }
  const auto steps = CollectStepExamples(&gpt, some, 2, 2, 1.0f, 4);
  for (const OrmExample& x : steps) EXPECT_EQ(x.text.back(), ',') << x.text;

  // `search`: one answer per line, whatever the line holds; an accepted answer verifies.
  const std::string in_path = dir + "/problems.jsonl", out_path = dir + "/answers.jsonl";
  {
    std::ofstream in(in_path);
    in << "{\"numbers\": [25, 3, 4], \"target\": 97}\n"   // 25*4-3
       << "not json\n"
       << "{\"numbers\": [1, 2, 3]}\n"
       << "{\"numbers\": [1, 2, 300], \"target\": 50}\n"
       << "{\"numbers\": \"1 2 3\", \"target\": 50}\n"
       << "[1, 2]\n"
       << "\n"
       << "{\"numbers\": [1, 1, 1], \"target\": 10}\n"   // unsolvable
       << "{\"numbers\": [7, 2, 9, 5], \"target\": 27}\n";
  }
  FILE* in = std::fopen(in_path.c_str(), "r");
  FILE* out = std::fopen(out_path.c_str(), "w");
  ASSERT_TRUE(in && out);
  Status s = RunCountdownSearch(RunCheckpointPath(dir), SamplesSearch(8), in, out);
  std::fclose(in);
  std::fclose(out);
  ASSERT_TRUE(s.ok()) << s;
  std::ifstream answers(out_path);
  std::vector<nlohmann::json> lines;
  for (std::string l; std::getline(answers, l);) lines.push_back(nlohmann::json::parse(l));
  ASSERT_EQ(lines.size(), 9u);
  for (int i : {1, 2, 3, 4, 5, 6}) ASSERT_TRUE(lines[i].contains("error")) << lines[i].dump();
  EXPECT_EQ(lines[1]["error"], "not JSON");
  EXPECT_EQ(lines[2]["error"], "missing \"target\"");
  EXPECT_NE(lines[3]["error"].get<std::string>().find("300"), std::string::npos);
  EXPECT_EQ(lines[2]["line"], 3);
  EXPECT_FALSE(lines[7]["solvable"].get<bool>());
  EXPECT_FALSE(lines[7]["verified"].get<bool>());
  EXPECT_TRUE(lines[7]["expression"].is_null());
  {  // an unsolvable problem gets the greedy attempt, not 8 samples more
    Random unused(1);
    const CountdownAnswer greedy = SearchCountdown(&gpt, CountdownProblem{{1, 1, 1}, 10}, 0, 1.0f, &unused);
    EXPECT_EQ(lines[7]["tokens"].get<int64_t>(), greedy.tokens);
    EXPECT_EQ(lines[7]["text"].get<std::string>(), greedy.text);
  }
  for (int i : {0, 7, 8}) {
    const auto& a = lines[i];
    ASSERT_TRUE(a.contains("verified")) << a.dump();
    EXPECT_GT(a["tokens"].get<int64_t>(), 0);
    // The steps are the solution part of the policy's whole text.
    EXPECT_NE(a["text"].get<std::string>().find(a["steps"].get<std::string>()), std::string::npos) << a.dump();
    if (a["verified"].get<bool>()) {
      CountdownProblem p{a["numbers"].get<std::vector<int64_t>>(), a["target"].get<int64_t>()};
      EXPECT_TRUE(VerifyExpression(p, a["expression"].get<std::string>()).ok) << a.dump();
      EXPECT_TRUE(VerifySteps(p, a["steps"].get<std::string>()).ok) << a.dump();
    }
  }
  // search --calculator: every legal operation in the policy's texts has its exact result.
  {
    CountdownSearchOptions calc = SamplesSearch(2);
    calc.calculator = true;
    FILE* cin = std::fopen(in_path.c_str(), "r");
    FILE* cout = std::fopen(out_path.c_str(), "w");
    ASSERT_TRUE(cin && cout);
    Status cs = RunCountdownSearch(RunCheckpointPath(dir), calc, cin, cout);
    std::fclose(cin);
    std::fclose(cout);
    ASSERT_TRUE(cs.ok()) << cs;
    std::ifstream calc_answers(out_path);
    int64_t answered = 0, ops = 0;
    for (std::string l; std::getline(calc_answers, l);) {
      const auto a = nlohmann::json::parse(l);
      if (!a.contains("text")) continue;
      ++answered;
      const std::string t = a["text"].get<std::string>();
      for (size_t at = t.find('='); at != std::string::npos; at = t.find('=', at + 1)) {
        const std::string want = CountdownCalculator(t.substr(0, at + 1), false);
        if (want.empty()) continue;
        ++ops;
        EXPECT_EQ(t.substr(at + 1, want.size()), want) << t;
      }
    }
    EXPECT_EQ(answered, 3);
    EXPECT_GT(ops, 0);
  }
  // The tree search starts with the greedy text, so it solves every problem greedy solves; what
  // it calls verified verifies; `search` uses it by default and still answers every line.
  int64_t greedy = 0, tree = 0;
  for (const CountdownProblem& p : (*d)->test) {
    greedy += SearchCountdown(&gpt, p, 0, 0.0f, &rng).verified;
    const CountdownAnswer a = TreeSearchCountdown(&gpt, p, {4, 1.0f, 600, {}}, &rng);
    tree += a.verified;
    if (a.verified) {
      EXPECT_TRUE(VerifyExpression(p, a.expression).ok) << a.expression;
    }
  }
  EXPECT_GE(tree, greedy);
  std::printf("held-out: greedy %ld, tree search %ld of %zu\n", long(greedy), long(tree), (*d)->test.size());
  in = std::fopen(in_path.c_str(), "r");
  out = std::fopen(out_path.c_str(), "w");
  ASSERT_TRUE(in && out);
  s = RunCountdownSearch(RunCheckpointPath(dir), {}, in, out);
  std::fclose(in);
  std::fclose(out);
  ASSERT_TRUE(s.ok()) << s;
  std::ifstream tree_answers(out_path);
  int tree_lines = 0;
  for (std::string l; std::getline(tree_answers, l); ++tree_lines) {
    const auto a = nlohmann::json::parse(l);
    if (a.contains("verified") && a["verified"].get<bool>()) {
      CountdownProblem p{a["numbers"].get<std::vector<int64_t>>(), a["target"].get<int64_t>()};
      EXPECT_TRUE(VerifyExpression(p, a["expression"].get<std::string>()).ok) << a.dump();
    }
  }
  EXPECT_EQ(tree_lines, 9);

  // The verifier lab and STaR run end to end on this policy (tiny settings) and write their
  // reports; STaR's checkpoint is a policy `search` loads.
  for (const char* section : {"verifier", "star"}) {
    const std::string out_dir = TempDir(section);
    const std::string text = std::string("[") + section + "]\npolicy = \"" + RunCheckpointPath(dir) + "\"\n" +
                             (std::string(section) == "verifier"
                                  ? "train_problems = 40\norm_steps = 5\nbatch = 8\ntest_problems = 4\nmax_samples = 2\nrollouts = 2\n"
                                  : "rounds = 2\nproblems_per_round = 60\nsamples = 4\nsteps = 3\ntest_problems = 4\n"
                                    "control = true\n");
    auto f = ConfigFile::Parse(text, "lab.toml");
    ASSERT_TRUE(f.ok()) << f.status();
    auto w = std::string(section) == "verifier" ? MakeVerifierWorkload(&*f) : MakeStarWorkload(&*f);
    ASSERT_TRUE(w.ok()) << w.status();
    EngineOptions le = Adam(out_dir);
    Status st = (*w)->Train(le);
    ASSERT_TRUE(st.ok()) << section << ": " << st;
    EXPECT_TRUE(fs::exists(out_dir + "/report.md")) << section;
    if (std::string(section) == "verifier") {
      std::ifstream csv(out_dir + "/budget.csv");
      int rows = 0;
      for (std::string l; std::getline(csv, l);) ++rows;
      EXPECT_EQ(rows, 1 + 2 * (1 + 2 * 3 + 2 + 2 * 2 + 2))
          << "header, then per test: greedy, 3 strategies at N = 1, 2, tree search and two MCTS at N = 1, 2, and beam "
             "search at 1 x 2 and 2 x 2";
      // Every strategy has its curve in the plot's data (when gnuplot drew it).
      if (fs::exists(out_dir + "/budget.png")) {
        int curves = 0;
        for (const auto& entry : fs::directory_iterator(out_dir))
          curves += entry.path().filename().string().rfind("budget_test_", 0) == 0 && fs::file_size(entry.path()) > 0;
        EXPECT_EQ(curves, 8) << "greedy, best-of-N, vote, pass@N, tree search, beam search, MCTS, MCTS + rules";
      }
      // By default the ORM and the PRM are two models, and both report their agreement.
      std::ifstream md(out_dir + "/report.md");
      std::stringstream all;
      all << md.rdbuf();
      EXPECT_NE(all.str().find("ORM: trained on"), std::string::npos) << all.str();
      EXPECT_NE(all.str().find("fresh training problems"), std::string::npos) << all.str();
      EXPECT_EQ(all.str().find("calculator"), std::string::npos) << all.str();
      EXPECT_NE(all.str().find("PRM on "), std::string::npos) << all.str();
    } else {
      EXPECT_TRUE(LoadCountdownPolicy(RunCheckpointPath(out_dir)).ok());
      std::ifstream md(out_dir + "/report.md");
      std::stringstream all;
      all << md.rdbuf();
      EXPECT_NE(all.str().find("| 2 |"), std::string::npos) << all.str();
      // The control arm is a sixth column of every row.
      EXPECT_NE(all.str().find("control: same steps on its own traces"), std::string::npos) << all.str();
      const size_t r2 = all.str().find("| 2 |");
      const std::string line = all.str().substr(r2, all.str().find('\n', r2) - r2);
      EXPECT_EQ(std::count(line.begin(), line.end(), '|'), 7) << line;
    }
  }

  // One verifier for both kinds of label, learned on the policy's own training problems.
  {
    const std::string out_dir = TempDir("verifier_one");
    auto f = ConfigFile::Parse("[verifier]\npolicy = \"" + RunCheckpointPath(dir) +
                                   "\"\ntrain_problems = 40\norm_steps = 5\nbatch = 8\ntest_problems = 4\nmax_samples = 2\n"
                                   "rollouts = 2\nseparate = false\nfresh = false\n",
                               "verifier_one.toml");
    ASSERT_TRUE(f.ok()) << f.status();
    auto w = MakeVerifierWorkload(&*f);
    ASSERT_TRUE(w.ok()) << w.status();
    EngineOptions le = Adam(out_dir);
    Status st = (*w)->Train(le);
    ASSERT_TRUE(st.ok()) << st;
    std::ifstream md(out_dir + "/report.md");
    std::stringstream all;
    all << md.rdbuf();
    EXPECT_NE(all.str().find("Verifier: trained on"), std::string::npos) << all.str();
    EXPECT_NE(all.str().find("the policy's training problems"), std::string::npos) << all.str();
    EXPECT_EQ(all.str().find("ORM:"), std::string::npos) << all.str();
  }

  // STaR whose sampler is the tree search, its fine-tuning replaying the policy's own traces: at
  // most one kept solution a problem.
  {
    const std::string out_dir = TempDir("star_tree");
    auto f = ConfigFile::Parse("[star]\npolicy = \"" + RunCheckpointPath(dir) +
                                   "\"\nsearch = \"tree\"\ntree_tokens = 300\nreplay = 1.0\nrounds = 2\nproblems_per_round = 20\n"
                                   "steps = 3\ntest_problems = 4\n",
                               "star_tree.toml");
    ASSERT_TRUE(f.ok()) << f.status();
    auto w = MakeStarWorkload(&*f);
    ASSERT_TRUE(w.ok()) << w.status();
    EngineOptions le = Adam(out_dir);
    Status st = (*w)->Train(le);
    ASSERT_TRUE(st.ok()) << st;
    EXPECT_TRUE(LoadCountdownPolicy(RunCheckpointPath(out_dir)).ok());
    std::ifstream md(out_dir + "/report.md");
    std::stringstream all;
    all << md.rdbuf();
    EXPECT_NE(all.str().find("a tree search (4 children, budget 300 tokens) for each of 20"), std::string::npos) << all.str();
    // Round 1 keeps at most one solution of each of its 20 problems.
    const size_t row = all.str().find("| 1 | ");
    ASSERT_NE(row, std::string::npos) << all.str();
    const int kept = std::atoi(all.str().c_str() + row + 6);
    EXPECT_LE(kept, 20) << all.str();
  }

  // STaR by actors: 2 Downpour replicas, in one process and over gRPC, each sampling its share of
  // every round with the weights it pulled, then pushing gradients of what it kept.
  for (TransportKind kind : {TransportKind::kInproc, TransportKind::kGrpc}) {
    const std::string out_dir = TempDir(kind == TransportKind::kGrpc ? "actors_grpc" : "actors_inproc");
    auto f = ConfigFile::Parse("[star]\nmode = \"actors\"\npolicy = \"" + RunCheckpointPath(dir) +
                                   "\"\nrounds = 2\nproblems_per_round = 30\nsamples = 3\nsteps = 6\ntest_problems = 4\n",
                               "actors.toml");
    ASSERT_TRUE(f.ok()) << f.status();
    auto w = MakeStarWorkload(&*f);
    ASSERT_TRUE(w.ok()) << w.status();
    EngineOptions le = Adam(out_dir);
    le.distributed.mode = Mode::kDownpour;
    le.distributed.downpour.replicas = 2;
    le.distributed.cluster.shards = 2;
    le.distributed.cluster.transport.kind = kind;
    Status st = (*w)->Train(le);
    ASSERT_TRUE(st.ok()) << st;
    EXPECT_TRUE(LoadCountdownPolicy(RunCheckpointPath(out_dir)).ok());
    std::ifstream md(out_dir + "/report.md");
    std::stringstream all;
    all << md.rdbuf();
    // Every problem of both rounds sampled 3 times, by one actor or the other.
    EXPECT_NE(all.str().find("of 180 samples"), std::string::npos) << all.str();
    EXPECT_NE(all.str().find("2 rounds by 2 actors (12 steps)"), std::string::npos) << all.str();
  }

  // A checkpoint that is not a Countdown policy is an error before anything is read.
  EXPECT_FALSE(RunCountdownSearch(dir + "/none.safetensors", {}, stdin, stdout).ok());
}

TEST(CountdownLab, APolicyWithBackwardDigitsAndACalculatorRunsInStarAndTheVerifierLab) {
  CountdownLabOptions o = Small();
  o.train_tokens = 20000;
  o.text = {true, true};
  auto d = BuildCountdownData(o, 1);
  ASSERT_TRUE(d.ok()) << d.status();
  const std::string dir = TempDir("backwards");
  EngineOptions e = Adam(dir);
  e.train.config_text += "digits = \"reversed\"\ncalculator = true\n";
  auto job = CountdownJob(o, *d, e);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_TRUE(RunJob(e, *job).ok());
  auto policy = LoadCountdownPolicy(RunCheckpointPath(dir));
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_TRUE(policy->options.text.reversed_digits);
  EXPECT_TRUE(policy->options.text.calculator);
  auto star = ConfigFile::Parse("[star]\npolicy = \"" + RunCheckpointPath(dir) +
                                    "\"\nrounds = 1\nproblems_per_round = 20\nsamples = 2\nsteps = 2\ntest_problems = 4\n",
                                "star.toml");
  ASSERT_TRUE(star.ok()) << star.status();
  auto sw = MakeStarWorkload(&*star);
  ASSERT_TRUE(sw.ok()) << sw.status();
  const std::string star_dir = TempDir("backwards_star");
  Status st = (*sw)->Train(Adam(star_dir));
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_TRUE(fs::exists(star_dir + "/report.md"));
  // The verifier lab samples with the policy's text options: its examples are natural text (the
  // verifiers read what the exact verifier reads) in which every legal operation's result is exact
  // (the calculator; the policy alone, trained on 20,000 characters, gets few right).
  const std::vector<CountdownProblem> some((*d)->train.begin(), (*d)->train.begin() + 8);
  int64_t ops = 0;
  const auto ex = CollectOrmExamples(&*policy->gpt, some, 3, 1.0f, 5, policy->options.text);
  ASSERT_EQ(ex.size(), 24u);
  for (size_t i = 0; i < ex.size(); ++i) {
    const OrmExample& x = ex[i];
    EXPECT_EQ(x.text.rfind(CountdownPrompt(some[i / 3]), 0), 0u) << x.text;
    EXPECT_EQ(x.correct, VerifySteps(some[i / 3], SolutionPart(x.text)).ok) << x.text;
    for (size_t at = x.text.find('='); at != std::string::npos; at = x.text.find('=', at + 1)) {
      const std::string want = CountdownCalculator(x.text.substr(0, at + 1), false);
      if (want.empty()) continue;
      ++ops;
      EXPECT_EQ(x.text.substr(at + 1, want.size()), want) << x.text;
    }
  }
  EXPECT_GT(ops, 4);
  for (const OrmExample& x : CollectStepExamples(&*policy->gpt, some, 2, 2, 1.0f, 4, policy->options.text))
    for (size_t at = x.text.find('='); at != std::string::npos; at = x.text.find('=', at + 1)) {
      const std::string want = CountdownCalculator(x.text.substr(0, at + 1), false);
      if (!want.empty()) {
        EXPECT_EQ(x.text.substr(at + 1, want.size()), want) << x.text;
      }
    }
  auto ver = ConfigFile::Parse("[verifier]\npolicy = \"" + RunCheckpointPath(dir) +
                                   "\"\ntrain_problems = 20\norm_steps = 3\nbatch = 8\ntest_problems = 4\n"
                                   "max_samples = 2\nrollouts = 2\n",
                               "verifier.toml");
  ASSERT_TRUE(ver.ok()) << ver.status();
  auto vw = MakeVerifierWorkload(&*ver);
  ASSERT_TRUE(vw.ok()) << vw.status();
  const std::string ver_dir = TempDir("backwards_verifier");
  st = (*vw)->Train(Adam(ver_dir));
  ASSERT_TRUE(st.ok()) << st;
  std::ifstream md(ver_dir + "/report.md");
  std::stringstream all;
  all << md.rdbuf();
  EXPECT_NE(all.str().find("digits reversed, sampled with a calculator"), std::string::npos) << all.str();
  // [verifier] calculator = true turns the calculator on for any policy; anything but a bool is an error.
  auto on = ConfigFile::Parse("[verifier]\npolicy = \"p\"\ncalculator = true\n", "on.toml");
  ASSERT_TRUE(on.ok());
  auto parsed = ParseVerifierLabOptions(&*on);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->calculator);
  auto bad = ConfigFile::Parse("[verifier]\npolicy = \"p\"\ncalculator = 3\n", "bad.toml");
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(ParseVerifierLabOptions(&*bad).ok());
}

TEST(CountdownLab, SearchLinesAreProblemsOrNamedErrors) {
  auto ok = ParseCountdownProblemLine("{\"numbers\": [25, 3, 4], \"target\": 97, \"extra\": 1}");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->numbers, (std::vector<int64_t>{25, 3, 4}));
  EXPECT_EQ(ok->target, 97);
  auto why = [](const std::string& l) { return std::string(ParseCountdownProblemLine(l).status().message()); };
  EXPECT_EQ(why(""), "not JSON");
  EXPECT_EQ(why("{\"numbers\": [1, 2"), "not JSON");
  EXPECT_EQ(why("[1, 2, 3]"), "not a JSON object");
  EXPECT_EQ(why("{\"target\": 5}"), "missing \"numbers\"");
  EXPECT_EQ(why("{\"numbers\": [1, 2, 3]}"), "missing \"target\"");
  EXPECT_EQ(why("{\"numbers\": 5, \"target\": 50}"), "\"numbers\" is not an array");
  EXPECT_NE(why("{\"numbers\": [1, 2.5, 3], \"target\": 50}").find("not an integer"), std::string::npos);
  EXPECT_NE(why("{\"numbers\": [1, 2, 3], \"target\": \"50\"}").find("not an integer"), std::string::npos);
  EXPECT_NE(why("{\"numbers\": [1, 2, 300], \"target\": 50}").find("300"), std::string::npos);
  EXPECT_NE(why("{\"numbers\": [1, 2, 18446744073709551615], \"target\": 50}").find("outside"), std::string::npos);
  EXPECT_NE(why("{\"numbers\": [], \"target\": 50}").find("not 0"), std::string::npos);
  EXPECT_NE(why("{\"numbers\": [1, 2, 3], \"target\": 5}").find("target 5"), std::string::npos);
  EXPECT_EQ(why(std::string(100000, '[')), "not JSON");
  EXPECT_EQ(why(std::string(100000, '[') + std::string(100000, ']')), "not a JSON object");
}

// The tree search's contract on any policy (here an untrained one, which rarely writes a legal
// step): it stops within its token budget (plus at most one expansion of at most 256 children of
// at most a context each), and what it calls verified verifies.
TEST(CountdownLab, TreeSearchKeepsItsBudgetAndClaimsOnlyVerifiedAnswers) {
  Gpt gpt({static_cast<int64_t>(CountdownVocabulary().size()), 64, 32, 1, 2}, 7);
  Random rng(1);
  for (const CountdownProblem& p : GenerateCountdown(5, 3, 11)) {
    const TreeSearchOptions o{3, 1.0f, 300, {}};
    const CountdownAnswer a = TreeSearchCountdown(&gpt, p, o, &rng);
    EXPECT_GT(a.tokens, 0);
    EXPECT_LE(a.tokens, o.max_tokens + 256 * 64);
    if (a.verified) {
      EXPECT_TRUE(VerifyExpression(p, a.expression).ok) << a.expression;
    }
  }
}

// MCTS over steps: it stops within its token budget (plus at most one expansion), it scores the
// greedy text and searches beyond it, and its answer is the complete text scored highest of all
// it scored (a score drawn from the text's hash, so any other choice shows).
TEST(CountdownLab, MctsKeepsItsBudgetAndAnswersTheBestScoredText) {
  Gpt gpt({static_cast<int64_t>(CountdownVocabulary().size()), 64, 32, 1, 2}, 7);
  Random rng(1);
  for (const CountdownProblem& p : GenerateCountdown(5, 3, 11)) {
    std::map<std::string, double> complete;
    int64_t partial = 0;
    auto score = [&](const std::string& t, bool done) {
      EXPECT_EQ(t.rfind(CountdownPrompt(p), 0), 0u) << t;
      const double v = static_cast<double>(std::hash<std::string>{}(t) % 1000) / 999.0;
      if (done) {
        complete[t] = v;
      } else {
        ++partial;
        EXPECT_EQ(t.back(), ',') << t;
      }
      return v;
    };
    const MctsOptions o{3, 1.0, 300, 1.0f};
    const CountdownAnswer a = MctsCountdown(&gpt, p, o, score, &rng);
    EXPECT_GT(a.tokens, 0);
    EXPECT_LE(a.tokens, o.max_tokens + o.expand * 64);
    ASSERT_FALSE(complete.empty());
    EXPECT_GT(static_cast<int64_t>(complete.size()) + partial, 1) << "nothing searched beyond the greedy text";
    EXPECT_GE(a.tries, static_cast<int64_t>(complete.size()));
    auto top = complete.begin();
    for (auto it = complete.begin(); it != complete.end(); ++it)
      if (it->second > top->second) top = it;
    EXPECT_DOUBLE_EQ(complete[CountdownPrompt(p) + a.text], top->second) << a.text;
    if (a.verified) {
      EXPECT_TRUE(VerifyExpression(p, a.expression).ok) << a.expression;
    }
  }
}

// MCTS follows its values: valued by the exact tools (a complete text: the verifier; a partial
// one: whether its steps are legal and the numbers left can still reach the target) it solves
// held-out problems the greedy text does not within a budget of a few expansions (with the sign
// of Q flipped in the selection, it solves only what greedy solves: checked), while with every
// value equal it keeps the greedy text (a later text replaces it only when scored higher).
TEST(CountdownLab, MctsFollowsItsValues) {
  CountdownLabOptions o = Small();
  o.traces = CountdownTraces::kOptimal;
  o.train_tokens = 1000000;
  o.test_limit = 40;
  auto d = BuildCountdownData(o, 1);
  ASSERT_TRUE(d.ok()) << d.status();
  const EngineOptions e = Adam(TempDir("mcts"));
  auto job = CountdownJob(o, *d, e);
  ASSERT_TRUE(job.ok()) << job.status();
  auto r = RunJob(e, *job);
  ASSERT_TRUE(r.ok()) << r.status();
  Gpt& gpt = static_cast<CountdownReplica*>(r->model.get())->gpt();
  Random rng(5);
  CountdownPolicyText calc;  // the calculator writes each result: a policy this small gets them wrong
  calc.calculator = true;
  int64_t greedy = 0, exact_mcts = 0, flat_mcts = 0;
  for (const CountdownProblem& p : (*d)->test) {
    // illegal: the score of a partial text whose steps break the rules (0, or -1 to prune it).
    auto exact_with = [&](double illegal) {
      return [&p, illegal](const std::string& t, bool done) {
        if (done) return VerifySteps(p, SolutionPart(t)).ok ? 1.0 : 0.0;
        auto left = CountdownNumbersLeft(p, std::string_view(t).substr(CountdownPrompt(p).size()));
        if (!left.ok()) return illegal;
        return IsSolvable(CountdownProblem{*left, p.target}) ? 1.0 : 0.0;
      };
    };
    const auto exact = exact_with(0.0);
    const bool g = SearchCountdown(&gpt, p, 0, 0.0f, &rng, calc).verified;
    greedy += g;
    const CountdownAnswer a = MctsCountdown(&gpt, p, {4, 1.0, 80, 1.0f}, exact, &rng, calc);
    exact_mcts += a.verified;
    if (a.verified) {
      EXPECT_TRUE(VerifyExpression(p, a.expression).ok) << a.expression;
    }
    const CountdownAnswer flat =
        MctsCountdown(&gpt, p, {4, 1.0, 400, 1.0f}, [](const std::string&, bool) { return 0.5; }, &rng, calc);
    EXPECT_EQ(flat.verified, g) << CountdownPrompt(p) << flat.text;
    // A tree of 3 numbers is soon exhausted: widening keeps drawing until the budget is spent.
    EXPECT_GE(flat.tokens, 400) << CountdownPrompt(p);
    flat_mcts += flat.verified;
    // Pruned and stopping at the first verified text: nothing is scored after it, and no illegal
    // step is ever extended.
    bool ended = false, first = true;  // the first text scored is the greedy one, not the tree's
    int64_t after = 0;
    const auto pruned = exact_with(-1.0);
    const CountdownAnswer s = MctsCountdown(
        &gpt, p, {4, 1.0, 400, 1.0f, 1.0},
        [&](const std::string& t, bool done) {
          after += ended;
          std::string_view parent = std::string_view(t).substr(CountdownPrompt(p).size());
          parent.remove_suffix(!parent.empty() && (parent.back() == ',' || parent.back() == '.'));
          const size_t comma = parent.rfind(',');
          parent = parent.substr(0, comma == std::string_view::npos ? 0 : comma + 1);
          EXPECT_TRUE(first || CountdownNumbersLeft(p, parent).ok()) << "an illegal step was extended: " << t;
          first = false;
          const double v = pruned(t, done);
          ended |= done && v == 1.0;
          return v;
        },
        &rng, calc);
    EXPECT_EQ(after, 0) << CountdownPrompt(p) << s.text;
    EXPECT_EQ(s.verified, ended);
  }
  std::printf("held-out: greedy %ld, MCTS with exact values %ld, with equal values %ld of %zu\n", long(greedy),
              long(exact_mcts), long(flat_mcts), (*d)->test.size());
  EXPECT_GT(exact_mcts, greedy);
  EXPECT_EQ(flat_mcts, greedy);
}

TEST(CountdownLab, MixedCountsShareTheProblemsAndTheOodHasOneMore) {
  CountdownLabOptions o;
  o.sources = 3;
  o.max_sources = 4;
  o.problems = 600;
  o.test_limit = 10;
  o.traces = CountdownTraces::kOptimal;
  o.net.context = 64;
  o.max_chars = 40;
  auto d = BuildCountdownData(o, 2);
  ASSERT_TRUE(d.ok()) << d.status();
  int64_t by_count[8] = {};
  for (const auto& p : (*d)->train) ++by_count[p.numbers.size()];
  EXPECT_GT(by_count[3], 200);
  EXPECT_GT(by_count[4], 200);
  EXPECT_EQ(by_count[3] + by_count[4], static_cast<int64_t>((*d)->train.size()));
  int64_t test_count[8] = {};
  for (const auto& p : (*d)->test) ++test_count[p.numbers.size()];
  EXPECT_EQ(test_count[3], 10);
  EXPECT_EQ(test_count[4], 10);
  for (const auto& p : (*d)->ood) EXPECT_EQ(p.numbers.size(), 5u);
  // Problems for the later stages (STaR, the verifiers): never the policy's, never held out, no
  // two alike, both counts interleaved.
  const std::vector<CountdownProblem> fresh = FreshCountdownProblems(o, **d, 301, 77);
  ASSERT_EQ(fresh.size(), 301u);
  std::set<std::string> own, seen;
  for (const auto& p : (*d)->train) own.insert(CountdownPrompt(p));
  int64_t fresh_count[8] = {};
  for (size_t i = 0; i < fresh.size(); ++i) {
    const CountdownProblem& p = fresh[i];
    EXPECT_FALSE(own.count(CountdownPrompt(p))) << CountdownPrompt(p);
    EXPECT_TRUE(seen.insert(CountdownPrompt(p)).second) << CountdownPrompt(p);
    EXPECT_EQ(CountdownSplit(p, o.test_percent), 0) << CountdownPrompt(p);
    EXPECT_EQ(p.numbers.size(), i % 2 ? 4u : 3u) << i;
    ++fresh_count[p.numbers.size()];
  }
  EXPECT_EQ(fresh_count[3], 151);
  EXPECT_EQ(fresh_count[4], 150);
  auto f = ConfigFile::Parse("[countdown]\nsources = 4\nmax_sources = 3\n", "bad.toml");
  ASSERT_TRUE(f.ok());
  EXPECT_NE(ParseCountdownLabOptions(&*f).status().message().find("max_sources"), std::string_view::npos);
}

// verdict_weight weighs the loss on a stream's verdicts: the batch loss is the weighted mean of the
// per-character cross entropies (from the logits), with the weight on exactly the '#' and '!' the
// traces write after their prompts, and 1 leaves the plain mean.
TEST(CountdownLab, VerdictWeightWeighsTheLossOnVerdictsOnly) {
  const std::vector<std::string> traces = {"5 7 3>38:5*7=35[3 35]35-3=32>38!<7*5=35,35+3=38>38#5*7=35,35+3=38.",
                                           "2 9>18!:2*9=18>18#2*9=18."};
  const std::vector<int> prompt = {9, 8};
  const std::vector<int64_t> rows = {0, 1};
  Gpt gpt({static_cast<int64_t>(CountdownVocabulary().size()), 96, 32, 1, 2}, 5);
  Tensor x, y, w;
  const double plain = CountdownBatchLoss(&gpt, traces, prompt, rows, &x, &y);
  for (float weight : {1.0f, 10.0f, 0.0f}) {
    const double loss = CountdownBatchLoss(&gpt, traces, prompt, rows, &x, &y, weight, &w);
    // The weighted mean from the logits, with the weights placed by reading the traces here.
    const Tensor& logits = gpt.logits();
    const int64_t T = x.dim(1), V = logits.dim(-1);
    double num = 0.0, den = 0.0;
    int verdicts = 0;
    for (int64_t b = 0; b < 2; ++b) {
      const std::string& t = traces[rows[b]];
      for (int64_t j = prompt[rows[b]] - 1; j + 1 < static_cast<int64_t>(t.size()); ++j) {
        const float* z = logits.data() + (b * T + j) * V;
        double mx = z[0], sum = 0.0;
        for (int64_t v = 1; v < V; ++v) mx = std::max<double>(mx, z[v]);
        for (int64_t v = 0; v < V; ++v) sum += std::exp(z[v] - mx);
        const double ce = -(z[CountdownId(t[j + 1])] - mx - std::log(sum));
        const bool verdict = t[j + 1] == '#' || t[j + 1] == '!';
        verdicts += verdict;
        const double wj = verdict ? weight : 1.0;
        num += wj * ce;
        den += wj;
      }
    }
    EXPECT_EQ(verdicts, 3);  // the prompt's '!' is not supervised
    EXPECT_NEAR(loss, num / den, 1e-4) << "verdict_weight " << weight;
    if (weight == 1.0f) EXPECT_NEAR(loss, plain, 1e-6);
    if (weight != 1.0f) EXPECT_GT(std::abs(loss - plain), 1e-3) << "verdict_weight " << weight;
  }
  auto f = ConfigFile::Parse("[countdown]\nverdict_weight = -1.0\n", "bad.toml");
  ASSERT_TRUE(f.ok());
  auto o = ParseCountdownLabOptions(&*f);
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("verdict_weight"), std::string::npos) << o.status();
}

TEST(CountdownLab, ConfigErrorsNameTheKey) {
  auto f = ConfigFile::Parse("[countdown]\ncontext = 64\nmax_chars = 200\n", "bad.toml");
  ASSERT_TRUE(f.ok());
  auto o = ParseCountdownLabOptions(&*f);
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("context"), std::string::npos) << o.status();
  auto g = ConfigFile::Load("configs/countdown.toml");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(ParseCountdownLabOptions(&*g).ok());
  for (const char* shipped : {"configs/star.toml", "configs/star_tree.toml"}) {
    auto h = ConfigFile::Load(shipped);
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_TRUE(ParseStarLabOptions(&*h).ok()) << shipped;
  }
  auto bad = ConfigFile::Parse("[star]\npolicy = \"p\"\nsearch = \"mcts\"\n", "bad.toml");
  ASSERT_TRUE(bad.ok());
  auto so = ParseStarLabOptions(&*bad);
  ASSERT_FALSE(so.ok());
  EXPECT_NE(so.status().message().find("search"), std::string::npos) << so.status();
  auto actors = ConfigFile::Parse("[star]\npolicy = \"p\"\nmode = \"actors\"\nreplay = 1.0\n", "bad.toml");
  ASSERT_TRUE(actors.ok());
  auto ao = ParseStarLabOptions(&*actors);
  ASSERT_FALSE(ao.ok());
  EXPECT_NE(ao.status().message().find("replay"), std::string::npos) << ao.status();
  auto actors_control = ConfigFile::Parse("[star]\npolicy = \"p\"\nmode = \"actors\"\ncontrol = true\n", "bad.toml");
  ASSERT_TRUE(actors_control.ok());
  auto ac = ParseStarLabOptions(&*actors_control);
  ASSERT_FALSE(ac.ok());
  EXPECT_NE(ac.status().message().find("control"), std::string::npos) << ac.status();
}

}  // namespace
}  // namespace distbelief
