#include "distbelief/workloads/reasoning/verifier_lab.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <cctype>
#include <map>
#include <string_view>

#include "distbelief/base/shuffle.h"
#include "distbelief/io/checkpoint.h"
#include "distbelief/io/gnuplot.h"
#include "distbelief/train/checkpointing.h"

namespace distbelief {
namespace {

constexpr char kRight = '#', kWrong = '!';

// The ORM's view of a policy text: the prompt, the solution part, '.'.
std::string OrmInput(const CountdownProblem& p, const std::string& policy_text) {
  const std::string prompt = CountdownPrompt(p);
  return prompt + std::string(SolutionPart(prompt + policy_text)) + ".";
}

// The ORM: the policy's architecture with a short context.
GptOptions OrmNet(const GptOptions& policy) {
  GptOptions o = policy;
  o.context = 64;
  return o;
}

class OrmReplica : public ReplicaModel {
 public:
  OrmReplica(const GptOptions& net, std::shared_ptr<const std::vector<OrmExample>> data, int64_t batch, uint64_t seed,
             int replica, int replicas)
      : gpt_(net, seed), data_(std::move(data)), batch_(batch), seed_(seed), replica_(replica), replicas_(replicas) {}
  std::vector<Param*> params(int) override { return gpt_.params(); }
  StatusOr<StepLoss> ComputeGradient(int64_t step) override {
    const int64_t n = static_cast<int64_t>(data_->size()), T = gpt_.options().context;
    x_.Resize({batch_, T});
    y_.Resize({batch_, T});
    x_.Zero();
    y_.Fill(-1.0f);
    for (int64_t b = 0; b < batch_; ++b) {
      const int64_t i = (step * replicas_ + replica_) * batch_ + b, epoch = i / n;
      if (epoch != epoch_) order_ = ShuffledRange(n, seed_ * 31 + static_cast<uint64_t>(epoch)), epoch_ = epoch;
      const OrmExample& e = (*data_)[order_[i % n]];
      const int64_t len = std::min<int64_t>(static_cast<int64_t>(e.text.size()), T);
      for (int64_t j = 0; j < len; ++j) x_[b * T + j] = static_cast<float>(std::max(0, CountdownId(e.text[j])));
      y_[b * T + len - 1] = static_cast<float>(CountdownId(e.correct ? kRight : kWrong));
    }
    gpt_.ZeroGrad();
    StepLoss l;
    l.total = gpt_.Forward(x_, y_);
    if (std::isfinite(l.total)) gpt_.Backward();
    return l;
  }
  Gpt& gpt() { return gpt_; }

 private:
  Gpt gpt_;
  std::shared_ptr<const std::vector<OrmExample>> data_;
  int64_t batch_;
  uint64_t seed_;
  int replica_, replicas_;
  std::vector<int64_t> order_;
  int64_t epoch_ = -1;
  Tensor x_, y_;
};

// Accuracy and tokens of each strategy at each budget, on one set of problems.
struct CurvePoint {
  std::string strategy;
  int64_t n = 0;
  double tokens = 0.0, accuracy = 0.0;
};

std::vector<CurvePoint> BudgetCurves(Gpt* policy, Gpt* orm, Gpt* prm, const std::vector<CountdownProblem>& problems,
                                     int64_t max_samples, int64_t mcts_max_samples, float temperature, uint64_t seed,
                                     const CountdownPolicyText& text) {
  struct Sampled {
    std::string steps;  // the solution part, normalized when it parses
    bool right = false;
    double score = 0.0;
    int64_t tokens = 0;
  };
  Random rng(seed);
  std::vector<CurvePoint> out;
  double greedy_right = 0, greedy_tokens = 0;
  std::vector<std::vector<Sampled>> pools;
  for (const CountdownProblem& p : problems) {
    const std::string prompt = CountdownPrompt(p);
    int64_t tokens = 0;
    const std::string g = SampleCountdown(policy, prompt, 1, 0.0f, &rng, &tokens, ".", text)[0];
    greedy_right += VerifySteps(p, SolutionPart(prompt + g)).ok;
    greedy_tokens += static_cast<double>(tokens);
    std::vector<Sampled> pool;
    for (int64_t left = max_samples; left > 0;) {
      const int64_t n = std::min<int64_t>(16, left);
      left -= n;
      int64_t before = 0;
      for (const std::string& t : SampleCountdown(policy, prompt, n, temperature, &rng, &before, ".", text)) {
        Sampled s;
        const CountdownVerdict v = VerifySteps(p, SolutionPart(prompt + t));
        s.right = v.ok;
        s.steps = v.steps.empty() ? std::string(SolutionPart(prompt + t)) : StepsText(v.steps);
        s.score = OrmScore(orm, OrmInput(p, t));
        s.tokens = static_cast<int64_t>(t.size());
        pool.push_back(std::move(s));
      }
    }
    pools.push_back(std::move(pool));
  }
  const double P = static_cast<double>(problems.size());
  out.push_back({"greedy", 1, greedy_tokens / P, greedy_right / P});
  for (int64_t n = 1; n <= max_samples; n *= 2) {
    double orm_right = 0, vote_right = 0, pass = 0, tokens = 0;
    for (const auto& pool : pools) {
      const int64_t m = std::min<int64_t>(n, static_cast<int64_t>(pool.size()));
      int64_t best = 0;
      std::map<std::string, double> votes;
      bool any = false;
      for (int64_t i = 0; i < m; ++i) {
        tokens += static_cast<double>(pool[i].tokens);
        if (pool[i].score > pool[best].score) best = i;
        votes[pool[i].steps] += pool[i].score;
        any |= pool[i].right;
      }
      orm_right += pool[best].right;
      pass += any;
      auto top = std::max_element(votes.begin(), votes.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
      for (int64_t i = 0; i < m; ++i)
        if (pool[i].steps == top->first) {
          vote_right += pool[i].right;
          break;
        }
    }
    out.push_back({"best-of-N (verifier)", n, tokens / P, orm_right / P});
    out.push_back({"weighted vote (verifier)", n, tokens / P, vote_right / P});
    out.push_back({"pass@N (exact verifier)", n, tokens / P, pass / P});
  }
  // The policy-guided tree search (no verifier: the rules prune, the exact verifier ends it) with
  // the budget best-of-N spent at each N.
  // Best-of-N's tokens a problem at N, the budget of the searches below (at least 1).
  auto budget_at = [&](int64_t n) {
    double tokens = 0;
    for (const CurvePoint& c : out)
      if (c.strategy == "pass@N (exact verifier)" && c.n == n) tokens = c.tokens;
    return std::max<int64_t>(1, std::llround(tokens));
  };
  for (int64_t n = 1; n <= max_samples; n *= 2) {
    double right = 0, tokens = 0;
    for (const CountdownProblem& p : problems) {
      const CountdownAnswer a = TreeSearchCountdown(policy, p, {4, temperature, budget_at(n), text}, &rng);
      right += a.verified;
      tokens += static_cast<double>(a.tokens);
    }
    out.push_back({"tree search", n, tokens / P, right / P});
  }
  // Monte-Carlo tree search valued by the verifiers, with the same budgets: alone (the ORM picks
  // the answer), and with the rules and the exact verifier as the tree search has them.
  for (bool rules : {false, true})
    for (int64_t n = 1; n <= std::min(max_samples, mcts_max_samples); n *= 2) {
      double right = 0, tokens = 0;
      for (const CountdownProblem& p : problems) {
        const MctsOptions o{4, 1.0, budget_at(n), temperature};
        const CountdownAnswer a = PrmMcts(policy, prm, orm, p, o, rules, &rng, text);
        right += a.verified;
        tokens += static_cast<double>(a.tokens);
      }
      out.push_back({rules ? "PRM MCTS + rules" : "PRM MCTS", n, tokens / P, right / P});
    }
  // Step-level beam search guided by the verifier's score of each partial solution: beam B,
  // E samples of the next step from each.
  for (auto [beam, expand] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 2}, {2, 2}, {2, 4}, {4, 4}, {4, 8}, {8, 8}, {8, 16}, {16, 16}}) {
    if (beam * expand > 2 * max_samples) break;
    double right = 0, tokens = 0;
    for (const CountdownProblem& p : problems) {
      const CountdownAnswer a = PrmBeamSearch(policy, prm, orm, p, beam, expand, temperature, &rng, text);
      right += a.verified;
      tokens += static_cast<double>(a.tokens);
    }
    out.push_back({"PRM beam search", beam * expand, tokens / P, right / P});
  }
  return out;
}

class VerifierWorkload : public Workload {
 public:
  explicit VerifierWorkload(VerifierLabOptions o) : o_(std::move(o)) {}
  StatusOr<Job> MakeJob(const EngineOptions& e) override {
    if (e.distributed.mode != Mode::kLocal) return absl::InvalidArgumentError("the ORM trains locally (no [distributed])");
    DB_RETURN_IF_ERROR(Prepare(e));
    return VerifierJob(o_.separate ? "orm" : "verifier", o_.separate ? outcomes_ : both_, e);
  }
  // A verifier (ORM or PRM) learning `data` through the engine.
  Job VerifierJob(const std::string& name, std::shared_ptr<const std::vector<OrmExample>> data, const EngineOptions& e) {
    Job job;
    job.name = name;
    job.steps = o_.orm_steps;
    job.examples_per_step = o_.batch;
    const GptOptions net = OrmNet(policy_opts_.net);
    const int64_t batch = o_.batch;
    const uint64_t seed = e.train.seed;
    job.make_replica = [net, data, batch, seed](int r, int R) -> StatusOr<std::unique_ptr<ReplicaModel>> {
      return std::unique_ptr<ReplicaModel>(new OrmReplica(net, data, batch, seed, r, R));
    };
    return job;
  }
  Status Report(const EngineOptions& e, RunResult* r) override {
    if (r->diverged) return absl::InternalError("the ORM diverged (lower optimizer.learning_rate)");
    Gpt& orm = static_cast<OrmReplica*>(r->model.get())->gpt();
    std::printf("%s: %ld steps in %.1f s, train loss first %.4f, last %.4f\n", o_.separate ? "ORM" : "verifier",
                long(r->steps), r->seconds, r->first_loss.total, r->last_loss.total);
    // The PRM: a second model on the process labels (or the same one).
    Gpt* prm = &orm;
    RunResult prm_run;
    if (o_.separate) {
      EngineOptions pe = e;
      pe.train.run_dir.clear();  // nothing written for it
      DB_ASSIGN_OR_RETURN(prm_run, RunJob(pe, VerifierJob("prm", steps_, e)));
      if (prm_run.diverged) return absl::InternalError("the PRM diverged (lower optimizer.learning_rate)");
      prm = &static_cast<OrmReplica*>(prm_run.model.get())->gpt();
      std::printf("PRM: %ld steps in %.1f s, train loss first %.4f, last %.4f\n", long(prm_run.steps),
                  prm_run.seconds, prm_run.first_loss.total, prm_run.last_loss.total);
    }
    // The ORM on held-out samples: accuracy of its verdict (threshold 0.5) against the verifier.
    const auto held = CollectOrmExamples(policy_.get(), data_->test, 2, o_.temperature, e.train.seed + 5, policy_opts_.text);
    int64_t agree = 0, right = 0;
    for (const OrmExample& x : held) {
      agree += (OrmScore(&orm, x.text) > 0.5) == x.correct;
      right += x.correct;
    }
    std::string md = "# Verifiers and search at test time (Countdown)\n\nPolicy: " + o_.policy + " (" +
                     CountdownTracesName(policy_opts_.traces) + (policy_opts_.text.reversed_digits ? ", digits reversed" : "") +
                     (policy_opts_.text.calculator ? ", sampled with a calculator" : "") + ").\n\n";
    char line[512];
    std::snprintf(line, sizeof(line),
                  "%s: trained on %zu complete policy samples of %ld %s problems (%.1f%% right)%s; on %zu held-out "
                  "samples (%.1f%% right) its verdict agrees with the exact verifier on %.1f%% (always the more "
                  "common verdict: %.1f%%).\n\n",
                  o_.separate ? "ORM" : "Verifier", outcome_examples_, long(o_.train_problems),
                  o_.fresh ? "fresh training" : "the policy's training", 100.0 * positives_ / std::max<size_t>(1, outcome_examples_),
                  o_.separate ? "" : " and partial solutions", held.size(), 100.0 * right / std::max<size_t>(1, held.size()), 100.0 * agree / std::max<size_t>(1, held.size()),
                  100.0 * std::max<size_t>(right, held.size() - right) / std::max<size_t>(1, held.size()));
    md += line;
    std::printf("%s", line);
    // Process labels: Monte-Carlo rollouts against the solver, on held-out problems.
    const StepLabelAgreement s = CheckStepLabels(policy_.get(), data_->test, 2, 8, o_.temperature, e.train.seed + 7, policy_opts_.text);
    const int64_t legal = s.prefixes - s.invalid;
    std::snprintf(line, sizeof(line),
                  "Process labels (Math-Shepherd): %ld first steps of %zu held-out problems (2 samples each), %ld of "
                  "them not a legal step. Of the %ld legal ones, the label from 8 rollouts (\"some continuation "
                  "verifies\") against the solver's exact reachability: both reachable %ld, rollouts only %ld, solver "
                  "only %ld, neither %ld: %.1f%% agree.\n\n",
                  long(s.prefixes), data_->test.size(), long(s.invalid), long(legal), long(s.both), long(s.mc_only),
                  long(s.exact_only), long(s.neither), legal ? 100.0 * (s.both + s.neither) / legal : 0.0);
    md += line;
    std::printf("%s", line);
    // The PRM's verdict on held-out partial solutions against their rollout labels.
    {
      const auto held_steps = CollectStepExamples(policy_.get(), data_->test, 2, o_.rollouts, o_.temperature, e.train.seed + 11, policy_opts_.text);
      int64_t agree_steps = 0, good = 0;
      for (const OrmExample& x : held_steps) {
        agree_steps += (OrmScore(prm, x.text) > 0.5) == x.correct;
        good += x.correct;
      }
      const size_t n = std::max<size_t>(1, held_steps.size());
      std::snprintf(line, sizeof(line),
                    "%s on %zu held-out partial solutions (%.1f%% good by %ld rollouts): agrees with the rollout label on "
                    "%.1f%% (always the more common label: %.1f%%).\n\n",
                    o_.separate ? "PRM" : "Verifier", held_steps.size(), 100.0 * good / n, long(o_.rollouts),
                    100.0 * agree_steps / n, 100.0 * std::max<int64_t>(good, int64_t(held_steps.size()) - good) / n);
      md += line;
      std::printf("%s", line);
    }
    std::ofstream csv(e.train.run_dir + "/budget.csv");
    csv << "test,strategy,n,tokens_per_problem,accuracy\n";
    md += "| test | strategy | N | tokens/problem | accuracy |\n|---|---|---|---|---|\n";
    std::vector<std::pair<std::string, CurvePoint>> points;
    for (int ood = 0; ood < 2; ++ood) {
      const auto& problems = ood ? data_->ood : data_->test;
      std::vector<CountdownProblem> ps(problems.begin(),
                                       problems.begin() + std::min<size_t>(problems.size(), o_.test_problems));
      const std::string name = ood ? "ood" : "test";
      for (const CurvePoint& c : BudgetCurves(policy_.get(), &orm, prm, ps, o_.max_samples, o_.mcts_max_samples, o_.temperature,
                                                e.train.seed + 9, policy_opts_.text)) {
        csv << name << "," << c.strategy << "," << c.n << "," << c.tokens << "," << c.accuracy << "\n";
        points.push_back({name, c});
        std::snprintf(line, sizeof(line), "| %s | %s | %ld | %.0f | %.1f%% |\n",
                      ood ? "out of distribution" : "held out", c.strategy.c_str(), long(c.n), c.tokens, 100.0 * c.accuracy);
        md += line;
        std::printf("%s", line);
      }
    }
    csv.close();
    Status plot = Plot(e.train.run_dir, points);
    if (!plot.ok()) std::printf("no plot: %s\n", std::string(plot.message()).c_str());
    else md += "\n![accuracy against tokens](budget.png)\n";
    std::ofstream(e.train.run_dir + "/report.md") << md;
    std::printf("report: %s/report.md\n", e.train.run_dir.c_str());
    return absl::OkStatus();
  }

 private:
  Status Prepare(const EngineOptions& e) {
    if (outcomes_) return absl::OkStatus();
    DB_ASSIGN_OR_RETURN(CountdownPolicy loaded, LoadCountdownPolicy(o_.policy));
    policy_opts_ = loaded.options;
    policy_opts_.text.calculator |= o_.calculator;
    policy_ = std::move(loaded.gpt);
    // The policy's own split (same seed as its training); the verifiers learn on training-split
    // problems: fresh ones (never the policy's) or the policy's own.
    CountdownLabOptions d = policy_opts_;
    d.test_limit = o_.test_problems;
    DB_ASSIGN_OR_RETURN(data_, BuildCountdownData(d, e.train.seed));
    std::vector<CountdownProblem> train =
        o_.fresh ? FreshCountdownProblems(d, *data_, o_.train_problems, e.train.seed * 7919 + 2003)
                 : std::vector<CountdownProblem>(data_->train.begin(),
                                                 data_->train.begin() + std::min<size_t>(data_->train.size(), o_.train_problems));
    auto outcomes = std::make_shared<std::vector<OrmExample>>(
        CollectOrmExamples(policy_.get(), train, o_.samples_per_problem, o_.temperature, e.train.seed, policy_opts_.text));
    for (const OrmExample& x : *outcomes) positives_ += x.correct;
    outcome_examples_ = outcomes->size();
    // Process examples: partial solutions labelled by rollouts (Math-Shepherd), for the PRM.
    auto steps = std::make_shared<std::vector<OrmExample>>(
        CollectStepExamples(policy_.get(), train, o_.step_samples, o_.rollouts, o_.temperature, e.train.seed + 3, policy_opts_.text));
    size_t good_steps = 0;
    for (const OrmExample& x : *steps) good_steps += x.correct;
    std::printf("verifier data: %zu complete samples of %zu %s problems (%zu right), %zu partial solutions (%zu "
                "good by %ld rollouts)\n", outcome_examples_, train.size(),
                o_.fresh ? "fresh training" : "the policy's training", positives_, steps->size(), good_steps,
                long(o_.rollouts));
    if (steps->empty() && o_.separate)
      return absl::InvalidArgumentError("verifier.separate: no partial solutions to train a PRM on (step_samples = 0?)");
    if (!o_.separate) {  // one verifier learns both kinds of label
      auto both = std::make_shared<std::vector<OrmExample>>(*outcomes);
      both->insert(both->end(), steps->begin(), steps->end());
      both_ = std::move(both);
    }
    outcomes_ = std::move(outcomes);
    steps_ = std::move(steps);
    return absl::OkStatus();
  }
  // One data file per test and strategy (so each curve is one line), then one gnuplot script.
  Status Plot(const std::string& dir, const std::vector<std::pair<std::string, CurvePoint>>& points) {
    const std::vector<std::string> strategies = {"best-of-N (verifier)", "weighted vote (verifier)", "PRM beam search",
                                                 "PRM MCTS", "pass@N (exact verifier)", "greedy", "tree search",
                                                 "PRM MCTS + rules"};
    std::string script = "set terminal pngcairo size 1000,450 noenhanced\nset output '" + dir + "/budget.png'\n"
                         "set logscale x 2\nset xlabel 'generated tokens per problem'\nset ylabel 'accuracy'\n"
                         "set yrange [0:1]\nset key bottom right\nset grid\nset multiplot layout 1,2\n";
    for (const char* t : {"test", "ood"}) {
      script += std::string("set title '") + (std::string(t) == "test" ? "held-out problems" : "one more number") + "'\nplot ";
      for (size_t i = 0; i < strategies.size(); ++i) {
        const std::string file = dir + "/budget_" + t + "_" + std::to_string(i) + ".dat";
        std::ofstream f(file);
        for (const auto& [test, c] : points)
          if (test == t && c.strategy == strategies[i]) f << c.tokens << " " << c.accuracy << "\n";
        script += std::string(i ? ", " : "") + "'" + file + "' with linespoints title '" + strategies[i] + "'";
      }
      script += "\n";
    }
    script += "unset multiplot\n";
    return RunGnuplot(script, dir + "/budget.gp");
  }

  VerifierLabOptions o_;
  CountdownLabOptions policy_opts_;
  std::unique_ptr<Gpt> policy_;
  std::shared_ptr<const CountdownData> data_;
  std::shared_ptr<const std::vector<OrmExample>> outcomes_, steps_, both_;
  size_t positives_ = 0, outcome_examples_ = 0;
};

}  // namespace

StatusOr<VerifierLabOptions> ParseVerifierLabOptions(ConfigFile* file) {
  VerifierLabOptions o;
  Section& s = file->section("verifier");
  DB_RETURN_IF_ERROR(s.String("policy", &o.policy));
  if (o.policy.empty()) return s.Error("policy", "is required: a Countdown policy's checkpoint");
  DB_RETURN_IF_ERROR(s.Int("train_problems", &o.train_problems, 1, 1 << 24));
  DB_RETURN_IF_ERROR(s.Int("samples_per_problem", &o.samples_per_problem, 1, 1024));
  DB_RETURN_IF_ERROR(s.Int("orm_steps", &o.orm_steps, 1, int64_t{1} << 30));
  DB_RETURN_IF_ERROR(s.Int("step_samples", &o.step_samples, 0, 1024));
  DB_RETURN_IF_ERROR(s.Int("rollouts", &o.rollouts, 1, 1024));
  DB_RETURN_IF_ERROR(s.Int("batch", &o.batch, 1, 1 << 16));
  DB_RETURN_IF_ERROR(s.Int("test_problems", &o.test_problems, 1, 100000));
  DB_RETURN_IF_ERROR(s.Int("max_samples", &o.max_samples, 1, 4096));
  DB_RETURN_IF_ERROR(s.Int("mcts_max_samples", &o.mcts_max_samples, 1, 4096));
  DB_RETURN_IF_ERROR(s.Float("temperature", &o.temperature, 0.01, 10.0));
  DB_RETURN_IF_ERROR(s.Bool("fresh", &o.fresh));
  DB_RETURN_IF_ERROR(s.Bool("separate", &o.separate));
  DB_RETURN_IF_ERROR(s.Bool("calculator", &o.calculator));
  return o;
}

std::vector<OrmExample> CollectOrmExamples(Gpt* policy, const std::vector<CountdownProblem>& problems,
                                           int64_t samples, float temperature, uint64_t seed, const CountdownPolicyText& text) {
  Random rng(seed);
  std::vector<OrmExample> out;
  int64_t tokens = 0;
  for (const CountdownProblem& p : problems) {
    const std::string prompt = CountdownPrompt(p);
    for (const std::string& t : SampleCountdown(policy, prompt, samples, temperature, &rng, &tokens, ".", text))
      out.push_back({OrmInput(p, t), VerifySteps(p, SolutionPart(prompt + t)).ok});
  }
  return out;
}

namespace {

// Math-Shepherd's label of a prefix: does any of `rollouts` continuations verify?
bool RolloutLabel(Gpt* policy, const CountdownProblem& p, const std::string& prefix, int64_t rollouts, float temperature,
                  Random* rng, int64_t* tokens, const CountdownPolicyText& text) {
  for (const std::string& c : SampleCountdown(policy, prefix, rollouts, temperature, rng, tokens, ".", text))
    if (VerifySteps(p, SolutionPart(prefix + c)).ok) return true;
  return false;
}

}  // namespace

std::vector<OrmExample> CollectStepExamples(Gpt* policy, const std::vector<CountdownProblem>& problems, int64_t samples,
                                            int64_t rollouts, float temperature, uint64_t seed, const CountdownPolicyText& text) {
  Random rng(seed);
  std::vector<OrmExample> out;
  int64_t tokens = 0;
  for (const CountdownProblem& p : problems) {
    if (p.numbers.size() < 3) continue;
    const std::string prompt = CountdownPrompt(p);
    for (const std::string& t : SampleCountdown(policy, prompt, samples, temperature, &rng, &tokens, ".", text)) {
      // Every prefix that ends a step ("prompt + steps,"), up to the first illegal step.
      std::vector<int64_t> left = p.numbers;
      for (size_t from = 0, comma; (comma = t.find(',', from)) != std::string::npos; from = comma + 1) {
        const bool legal = ApplyCountdownStep(std::string_view(t).substr(from, comma - from), &left).ok();
        const std::string prefix = prompt + t.substr(0, comma + 1);
        out.push_back({prefix, legal && RolloutLabel(policy, p, prefix, rollouts, temperature, &rng, &tokens, text)});
        if (!legal) break;
      }
    }
  }
  return out;
}

StepLabelAgreement CheckStepLabels(Gpt* policy, const std::vector<CountdownProblem>& problems, int64_t samples,
                                   int64_t rollouts, float temperature, uint64_t seed, const CountdownPolicyText& text) {
  StepLabelAgreement a;
  Random rng(seed);
  int64_t tokens = 0;
  for (const CountdownProblem& p : problems) {
    if (p.numbers.size() < 3) continue;  // one step: nothing between the prompt and the answer
    const std::string prompt = CountdownPrompt(p);
    for (const std::string& t : SampleCountdown(policy, prompt, samples, temperature, &rng, &tokens, ".", text)) {
      const size_t comma = t.find(',');
      if (comma == std::string::npos) continue;
      ++a.prefixes;
      const std::string first = t.substr(0, comma);
      std::vector<int64_t> left = p.numbers;
      if (!ApplyCountdownStep(first, &left).ok()) {
        ++a.invalid;
        continue;
      }
      const bool exact = IsSolvable(CountdownProblem{left, p.target});
      const bool mc = RolloutLabel(policy, p, prompt + first + ",", rollouts, temperature, &rng, &tokens, text);
      if (mc && exact) ++a.both;
      else if (mc) ++a.mc_only;
      else if (exact) ++a.exact_only;
      else ++a.neither;
    }
  }
  return a;
}

CountdownAnswer PrmBeamSearch(Gpt* policy, Gpt* prm, Gpt* orm, const CountdownProblem& p, int64_t beam, int64_t expand,
                              float temperature, Random* rng, const CountdownPolicyText& text) {
  CountdownAnswer best;
  double best_score = -1.0;
  std::vector<std::string> beams = {CountdownPrompt(p)};
  const int64_t context = policy->options().context;
  for (size_t depth = 0; !beams.empty() && depth < p.numbers.size(); ++depth) {
    std::vector<std::pair<double, std::string>> next;
    for (const std::string& b : beams)
      for (const std::string& step : SampleCountdown(policy, b, expand, temperature, rng, &best.tokens, ",.", text)) {
        if (step.empty()) continue;
        const std::string text = b + step;
        const bool complete = text.back() == '.' || static_cast<int64_t>(text.size()) >= context;
        next.push_back({OrmScore(complete ? orm : prm, text), text});
      }
    std::stable_sort(next.begin(), next.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
    beams.clear();
    int64_t kept = 0;
    for (const auto& [score, text] : next) {
      if (kept++ >= beam) break;
      const bool complete = text.back() == '.' || static_cast<int64_t>(text.size()) >= context;
      if (!complete) {
        beams.push_back(text);
        continue;
      }
      ++best.tries;
      if (score > best_score) {
        best_score = score;
        const CountdownVerdict v = VerifySteps(p, SolutionPart(text));
        best.text = text.substr(CountdownPrompt(p).size());
        best.steps = std::string(SolutionPart(text));
        best.verified = v.ok;
        best.expression = v.ok ? StepsExpression(p, v.steps) : "";
      }
    }
  }
  return best;
}

CountdownAnswer MctsCountdown(Gpt* policy, const CountdownProblem& p, const MctsOptions& o, const TextScore& score,
                              Random* rng, const CountdownPolicyText& text) {
  CountdownAnswer best;
  double best_score = -1.0;
  const std::string prompt = CountdownPrompt(p);
  const int64_t context = policy->options().context;
  auto consider = [&](const std::string& full, double score) {
    ++best.tries;
    if (score <= best_score) return;
    best_score = score;
    const CountdownVerdict v = VerifySteps(p, SolutionPart(full));
    best.text = full.substr(prompt.size());
    best.steps = std::string(SolutionPart(full));
    best.verified = v.ok;
    best.expression = v.ok ? StepsExpression(p, v.steps) : "";
  };
  const std::string greedy = prompt + SampleCountdown(policy, prompt, 1, 0.0f, rng, &best.tokens, ".", text)[0];
  consider(greedy, score(greedy, true));
  if (best_score >= o.stop_score) return best;
  constexpr size_t kPruned = static_cast<size_t>(-1);
  struct Node {
    std::string text;
    double value_sum = 0.0;
    int64_t visits = 0;
    int64_t draws = 0;    // times its step was drawn at its parent: its prior is draws / the parent's samples
    int64_t samples = 0;  // next steps drawn here so far
    bool complete = false, expanded = false;
    std::vector<size_t> kids;
    std::map<std::string, size_t> drawn;  // every next step drawn here: its child, or kPruned
  };
  std::vector<Node> tree(1);
  tree[0].text = prompt;
  bool stop = false;
  // Draws `expand` more next steps at `at`: new distinct ones become children (scored), known
  // ones gain prior. Adds the new children's values to *sum and their count to *added.
  auto expand = [&](size_t at, double* sum, int64_t* added) {
    tree[at].expanded = true;
    const std::vector<std::string> steps =
        SampleCountdown(policy, tree[at].text, o.expand, o.temperature, rng, &best.tokens, ",.", text);
    tree[at].samples += static_cast<int64_t>(steps.size());
    for (const std::string& step : steps) {
      if (step.empty() || stop) continue;
      if (auto known = tree[at].drawn.find(step); known != tree[at].drawn.end()) {
        if (known->second != kPruned) ++tree[known->second].draws;
        continue;
      }
      Node kid;
      kid.text = tree[at].text + step;
      kid.complete = kid.text.back() == '.' || static_cast<int64_t>(kid.text.size()) >= context;
      kid.expanded = kid.complete;
      const double v = score(kid.text, kid.complete);
      if (v < 0.0) {  // pruned
        tree[at].drawn[step] = kPruned;
        continue;
      }
      if (kid.complete) {
        consider(kid.text, v);
        stop = v >= o.stop_score;
      }
      kid.value_sum = v;
      kid.visits = 1;
      kid.draws = 1;
      *sum += v;
      ++*added;
      tree.push_back(std::move(kid));
      tree[at].kids.push_back(tree.size() - 1);
      tree[at].drawn[step] = tree.size() - 1;
    }
  };
  for (int64_t sim = 0; !stop && best.tokens < o.max_tokens && sim < o.max_tokens; ++sim) {
    std::vector<size_t> path{0};
    while (tree[path.back()].expanded && !tree[path.back()].kids.empty()) {
      const Node& node = tree[path.back()];
      const double explore = o.c_puct * std::sqrt(static_cast<double>(node.visits));
      size_t pick = node.kids[0];
      double top = -INFINITY;
      for (size_t k : node.kids) {
        const Node& c = tree[k];
        const double prior = static_cast<double>(c.draws) / static_cast<double>(node.samples);
        const double u = c.value_sum / static_cast<double>(c.visits) + explore * prior / static_cast<double>(1 + c.visits);
        if (u > top) top = u, pick = k;
      }
      path.push_back(pick);
    }
    // A new leaf is expanded; a complete one reached again widens its parent (more samples there,
    // as the tree search draws twice the children once its tree is exhausted); a dead end is drawn
    // from again. What nothing new comes of backs up its own value (0 for a dead end).
    double sum = 0.0;
    int64_t added = 0;
    if (tree[path.back()].complete) path.pop_back();
    expand(path.back(), &sum, &added);
    if (added == 0) {
      const Node& n = tree[path.back()];
      sum = n.kids.empty() ? 0.0 : n.value_sum / static_cast<double>(n.visits);
      added = 1;
    }
    for (size_t i : path) {
      tree[i].visits += added;
      tree[i].value_sum += sum;
    }
  }
  return best;
}

CountdownAnswer PrmMcts(Gpt* policy, Gpt* prm, Gpt* orm, const CountdownProblem& p, MctsOptions o, bool rules,
                        Random* rng, const CountdownPolicyText& text) {
  if (!rules)
    return MctsCountdown(
        policy, p, o, [&](const std::string& t, bool complete) { return OrmScore(complete ? orm : prm, t); }, rng, text);
  o.stop_score = 1.0;
  const size_t prompt = CountdownPrompt(p).size();
  return MctsCountdown(
      policy, p, o,
      [&](const std::string& t, bool complete) {
        if (complete) return VerifySteps(p, SolutionPart(t)).ok ? 1.0 : 0.0;
        if (!CountdownNumbersLeft(p, std::string_view(t).substr(prompt)).ok()) return -1.0;
        return OrmScore(prm, t);
      },
      rng, text);
}

double OrmScore(Gpt* orm, const std::string& text) {
  const int64_t T = std::min<int64_t>(static_cast<int64_t>(text.size()), orm->options().context);
  if (T < 1) return 0.0;
  Tensor x({1, T}), y({1, T});
  y.Fill(-1.0f);
  for (int64_t j = 0; j < T; ++j) x[j] = static_cast<float>(std::max(0, CountdownId(text[j])));
  orm->Forward(x, y);
  const Tensor& l = orm->logits();
  const int64_t V = orm->options().vocab;
  const double a = l[(T - 1) * V + CountdownId(kRight)], b = l[(T - 1) * V + CountdownId(kWrong)];
  return 1.0 / (1.0 + std::exp(b - a));
}

StatusOr<std::unique_ptr<Workload>> MakeVerifierWorkload(ConfigFile* file) {
  DB_ASSIGN_OR_RETURN(VerifierLabOptions o, ParseVerifierLabOptions(file));
  return std::unique_ptr<Workload>(new VerifierWorkload(std::move(o)));
}

}  // namespace distbelief
