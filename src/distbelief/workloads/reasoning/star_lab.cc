#include "distbelief/workloads/reasoning/star_lab.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "distbelief/train/checkpointing.h"
#include "distbelief/workloads/reasoning/countdown_lab.h"

namespace distbelief {
namespace {

void CopyWeights(const std::vector<Param*>& from, const std::vector<Param*>& to) {
  for (size_t i = 0; i < from.size(); ++i)
    std::memcpy(to[i]->value.data(), from[i]->value.data(), from[i]->value.size() * sizeof(float));
}

// Greedy pass@1: which problems the policy solves.
std::vector<bool> Solved(Gpt* gpt, const std::vector<CountdownProblem>& problems, const CountdownPolicyText& text) {
  std::vector<bool> out;
  Random rng(1);
  for (const CountdownProblem& p : problems) out.push_back(SearchCountdown(gpt, p, 0, 0.0f, &rng, text).verified);
  return out;
}

// A verified text as training data in the policy's own digit order.
std::string PolicyTrace(const std::string& natural, const CountdownPolicyText& text) {
  return text.reversed_digits ? ReverseDigitRuns(natural) : natural;
}

double Percent(const std::vector<bool>& v) {
  return v.empty() ? 0.0 : 100.0 * static_cast<double>(std::count(v.begin(), v.end(), true)) / v.size();
}

// "68.0%", or with more than one count of numbers "40.5% (3: 68.0%, 4: 13.0%)".
std::string PassCell(const std::vector<bool>& solved, const std::vector<CountdownProblem>& problems) {
  std::map<size_t, std::pair<int, int>> by;  // numbers -> (solved, problems)
  for (size_t i = 0; i < solved.size(); ++i) {
    auto& c = by[problems[i].numbers.size()];
    c.first += solved[i];
    ++c.second;
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.1f%%", Percent(solved));
  std::string out = buf;
  if (by.size() < 2) return out;
  const char* sep = " (";
  for (const auto& [k, c] : by) {
    std::snprintf(buf, sizeof(buf), "%s%zu: %.1f%%", sep, k, 100.0 * c.first / c.second);
    out += buf;
    sep = ", ";
  }
  return out + ")";
}

// How the round's problems are tried, for the report: "4 samples" or "a tree search (...)".
std::string HowSampled(const StarLabOptions& o) {
  if (!o.tree) return std::to_string(o.samples) + " samples";
  return "a tree search (" + std::to_string(o.tree_options.children) + " children, budget " +
         std::to_string(o.tree_options.max_tokens) + " tokens)";
}

// " (with 1 x as many of the policy's own traces)" when the rounds replay them, else "".
std::string ReplayText(const StarLabOptions& o) {
  if (o.replay <= 0) return "";
  char buf[96];
  std::snprintf(buf, sizeof(buf), " (with %g x as many of the policy's own traces)", o.replay);
  return buf;
}

// One STaR sampling step, shared by the rounds and the actors: `samples` continuations of p's
// prompt at `temperature`, or one tree search (o.tree); returns the distinct texts the exact
// verifier accepts (each once, finished with '.'), adding the generated tokens to *tokens.
std::vector<std::string> SampleVerified(Gpt* gpt, const CountdownProblem& p, const std::string& prompt,
                                        const StarLabOptions& o, const CountdownPolicyText& text, Random* rng,
                                        int64_t* tokens) {
  if (o.tree) {
    TreeSearchOptions tree = o.tree_options;
    tree.text = text;
    const CountdownAnswer a = TreeSearchCountdown(gpt, p, tree, rng);
    *tokens += a.tokens;
    if (!a.verified) return {};
    return {a.text};
  }
  std::set<std::string> kept;
  std::vector<std::string> out;
  for (std::string& t : SampleCountdown(gpt, prompt, o.samples, o.temperature, rng, tokens, ".", text)) {
    if (t.empty() || t.back() != '.' || !VerifySteps(p, SolutionPart(prompt + t)).ok || !kept.insert(t).second) continue;
    out.push_back(std::move(t));
  }
  return out;
}

// Counts of all actors together (threads of one process).
struct ActorStats {
  std::atomic<int64_t> sampled{0}, kept{0}, tokens{0}, empty_steps{0};
};

// One actor-learner of mode = "actors": samples its share of each round's problems with the
// weights Downpour last fetched, keeps the verified samples, and learns on them.
class StarActor : public ReplicaModel {
 public:
  StarActor(const CountdownLabOptions& po, const StarLabOptions& o, std::shared_ptr<const std::vector<CountdownProblem>> fresh,
            std::shared_ptr<ActorStats> stats, const std::vector<Tensor>& start, uint64_t seed, int replica, int replicas)
      : po_(po), o_(o), fresh_(std::move(fresh)), stats_(std::move(stats)), gpt_(po.net, seed),
        rng_(seed * 7907 + static_cast<uint64_t>(replica)), replica_(replica), replicas_(replicas) {
    const std::vector<Param*> ps = gpt_.params();
    for (size_t i = 0; i < ps.size(); ++i) std::memcpy(ps[i]->value.data(), start[i].data(), start[i].size() * sizeof(float));
    per_round_ = std::max<int64_t>(1, (o_.steps + replicas - 1) / replicas);
  }
  std::vector<Param*> params(int) override { return gpt_.params(); }
  Gpt& gpt() { return gpt_; }

  StatusOr<StepLoss> ComputeGradient(int64_t step) override {
    const int64_t round = step / per_round_;
    if (step % per_round_ == 0 && round < o_.rounds) Act(round);
    StepLoss l;
    if (traces_.empty()) {  // nothing verified yet: a zero gradient
      gpt_.ZeroGrad();
      ++stats_->empty_steps;
      return l;
    }
    std::vector<int64_t> rows(static_cast<size_t>(po_.batch));
    for (int64_t& r : rows) r = static_cast<int64_t>(rng_.UniformInt(traces_.size()));
    l.total = CountdownBatchLoss(&gpt_, traces_, prompt_chars_, rows, &x_, &y_);
    return l;
  }

 private:
  // This actor's problems of `round`: r, r + R, ... of the round's slice of the fresh problems.
  void Act(int64_t round) {
    const size_t begin = static_cast<size_t>(o_.problems_per_round * round);
    const size_t end = std::min(fresh_->size(), begin + static_cast<size_t>(o_.problems_per_round));
    int64_t tokens = 0;
    for (size_t i = begin + static_cast<size_t>(replica_); i < end; i += static_cast<size_t>(replicas_)) {
      const CountdownProblem& p = (*fresh_)[i];
      const std::string prompt = CountdownPrompt(p);
      stats_->sampled += o_.tree ? 1 : o_.samples;
      for (const std::string& t : SampleVerified(&gpt_, p, prompt, o_, po_.text, &rng_, &tokens)) {
        traces_.push_back(PolicyTrace(prompt + t, po_.text));
        prompt_chars_.push_back(static_cast<int>(prompt.size()));
        ++stats_->kept;
      }
    }
    stats_->tokens += tokens;
  }

  CountdownLabOptions po_;
  StarLabOptions o_;
  std::shared_ptr<const std::vector<CountdownProblem>> fresh_;
  std::shared_ptr<ActorStats> stats_;
  Gpt gpt_;
  Random rng_;
  int replica_, replicas_;
  int64_t per_round_ = 1;
  std::vector<std::string> traces_;
  std::vector<int> prompt_chars_;
  Tensor x_, y_;
};

class StarWorkload : public Workload {
 public:
  explicit StarWorkload(StarLabOptions o) : o_(std::move(o)) {}
  StatusOr<Job> MakeJob(const EngineOptions&) override {
    return absl::UnimplementedError("STaR trains in rounds (sample, verify, fine-tune): use distbelief train");
  }
  Status Report(const EngineOptions&, RunResult*) override { return absl::OkStatus(); }

  Status Train(const EngineOptions& e) override {
    DB_ASSIGN_OR_RETURN(CountdownPolicy policy, LoadCountdownPolicy(o_.policy));
    CountdownLabOptions po = policy.options;
    po.test_limit = o_.test_problems;
    // The policy's own problems and split (same seed as its training) ...
    DB_ASSIGN_OR_RETURN(std::shared_ptr<const CountdownData> all, BuildCountdownData(po, e.train.seed));
    // ... and problems it never trained on for the rounds: drawn from another seed, in the
    // training split (never a held-out problem), none of the policy's training problems. Their
    // only label is the exact verifier's verdict on the policy's own samples.
    // As many of each count of numbers the policy trained on (sources to max_sources), interleaved
    // so every round's slice mixes them.
    std::vector<CountdownProblem> fresh =
        FreshCountdownProblems(po, *all, o_.problems_per_round * o_.rounds, e.train.seed * 7919 + 1009);
    Gpt& gpt = *policy.gpt;
    std::vector<bool> first_test = Solved(&gpt, all->test, po.text), first_ood = Solved(&gpt, all->ood, po.text);
    // The control arm (star.control, mode = "rounds"): a second copy of the policy fine-tuned
    // with the same steps on its own training traces only.
    const bool with_control = o_.control && !o_.actors;
    std::optional<CountdownPolicy> control;
    if (with_control) {
      DB_ASSIGN_OR_RETURN(CountdownPolicy c, LoadCountdownPolicy(o_.policy));
      control.emplace(std::move(c));
    }
    std::string table = std::string("| round | verified samples kept | test pass@1 (greedy) | new vs round 0 | one more number |") +
                        (with_control ? " control: same steps on its own traces, pass@1 |\n|---|---|---|---|---|---|\n"
                                      : "\n|---|---|---|---|---|\n");
    char row[512];
    std::snprintf(row, sizeof(row), "| 0 (the policy) | | %s | | %.1f%% |%s\n", PassCell(first_test, all->test).c_str(),
                  Percent(first_ood), with_control ? (" " + PassCell(first_test, all->test) + " |").c_str() : "");
    table += row;
    std::printf("%s", table.c_str());
    if (o_.actors) return TrainActors(e, policy, po, *all, std::move(fresh), first_test, first_ood, table);
    Random rng(e.train.seed * 977 + 1), control_rng(e.train.seed * 977 + 2);
    auto data = std::make_shared<CountdownData>();  // every verified sample so far
    for (int round = 1; round <= o_.rounds; ++round) {
      // 1. Sample fresh training problems and keep what the exact verifier accepts.
      const size_t begin = static_cast<size_t>(o_.problems_per_round) * (round - 1);
      const size_t end = std::min(fresh.size(), begin + static_cast<size_t>(o_.problems_per_round));
      int64_t tokens = 0;
      const size_t before = data->traces.size();
      for (size_t i = begin; i < end; ++i) {
        const CountdownProblem& p = fresh[i];
        const std::string prompt = CountdownPrompt(p);
        for (const std::string& t : SampleVerified(&gpt, p, prompt, o_, po.text, &rng, &tokens)) {
          data->traces.push_back(PolicyTrace(prompt + t, po.text));
          data->prompt_chars.push_back(static_cast<int>(prompt.size()));
          data->supervised_tokens += static_cast<int64_t>(t.size());
        }
      }
      if (data->traces.empty()) {  // nothing verified yet: nothing to learn from this round
        std::snprintf(row, sizeof(row), "| %d | 0 from %zu problems: no fine-tuning | %s | 0 | %.1f%% |%s\n", round,
                      end - begin, PassCell(first_test, all->test).c_str(), Percent(first_ood),
                      control ? (" " + PassCell(Solved(control->gpt.get(), all->test, po.text), all->test) + " |").c_str() : "");
        table += row;
        std::printf("%s", row);
        continue;
      }
      // 2. Fine-tune on every verified sample so far (and the replayed traces) through the engine,
      // from the current weights.
      auto tune = std::make_shared<CountdownData>(*data);
      const size_t replayed = std::min(all->traces.size(), static_cast<size_t>(o_.replay * static_cast<double>(data->traces.size())));
      for (size_t k = 0; k < replayed; ++k) {
        const size_t j = rng.UniformInt(all->traces.size());
        tune->traces.push_back(all->traces[j]);
        tune->prompt_chars.push_back(all->prompt_chars[j]);
      }
      DB_RETURN_IF_ERROR(FineTune(e, po, tune, round, "star-", &gpt));
      // 2b. The control arm: the same steps on as many of the policy's own training traces,
      // none of the kept samples: what the fine-tuning alone is worth.
      if (control) {
        auto own = std::make_shared<CountdownData>();
        for (size_t k = 0; k < tune->traces.size(); ++k) {
          const size_t j = control_rng.UniformInt(all->traces.size());
          own->traces.push_back(all->traces[j]);
          own->prompt_chars.push_back(all->prompt_chars[j]);
        }
        DB_RETURN_IF_ERROR(FineTune(e, po, own, round, "control-", control->gpt.get()));
      }
      // 3. Greedy pass@1 on held-out problems.
      const std::vector<bool> test = Solved(&gpt, all->test, po.text), ood = Solved(&gpt, all->ood, po.text);
      int64_t fresh = 0;
      for (size_t i = 0; i < test.size(); ++i) fresh += test[i] && !first_test[i];
      std::snprintf(row, sizeof(row), "| %d | %zu from %zu problems (%zu in all; %ld tokens generated) | %s | %ld | %.1f%% |%s\n",
                    round, data->traces.size() - before, end - begin, data->traces.size(), long(tokens),
                    PassCell(test, all->test).c_str(), long(fresh), Percent(ood),
                    control ? (" " + PassCell(Solved(control->gpt.get(), all->test, po.text), all->test) + " |").c_str() : "");
      table += row;
      std::printf("%s", row);
    }
    DB_RETURN_IF_ERROR(SaveModelCheckpoint(RunCheckpointPath(e.train.run_dir), gpt.params(), nullptr,
                                           {o_.rounds, policy.config, ""}));
    std::ofstream(e.train.run_dir + "/report.md")
        << "# Self-improvement (STaR) on Countdown\n\nStarting policy: " << o_.policy << "; " << HowSampled(o_)
        << " for each of " << o_.problems_per_round << " fresh training problems a round, " << o_.steps
        << " fine-tuning steps" << ReplayText(o_)
        << "; pass@1 on " << all->test.size() << " held-out problems and " << all->ood.size()
        << " with one more number.\n\n"
        << table;
    std::printf("report: %s/report.md\ncheckpoint: %s\n", e.train.run_dir.c_str(), RunCheckpointPath(e.train.run_dir).c_str());
    return absl::OkStatus();
  }

  // Fine-tunes *model on `tune` for star.steps steps through the engine, from its current weights
  // (the same replica model as the policy's training).
  Status FineTune(const EngineOptions& e, const CountdownLabOptions& po, std::shared_ptr<const CountdownData> tune,
                  int round, const std::string& name, Gpt* model) {
    DB_ASSIGN_OR_RETURN(Job job, CountdownJob(po, std::move(tune), e));
    job.name = name + std::to_string(round);
    job.steps = o_.steps;
    job.write_checkpoint = false;
    std::vector<Tensor> start;
    for (Param* q : model->params()) start.push_back(q->value);
    auto make = job.make_replica;
    job.make_replica = [make, start](int r, int R) -> StatusOr<std::unique_ptr<ReplicaModel>> {
      DB_ASSIGN_OR_RETURN(auto m, make(r, R));
      const std::vector<Param*> ps = m->params(0);
      for (size_t i = 0; i < ps.size(); ++i) std::memcpy(ps[i]->value.data(), start[i].data(), start[i].size() * sizeof(float));
      return m;
    };
    EngineOptions round_e = e;
    round_e.train.run_dir.clear();  // nothing written per round
    DB_ASSIGN_OR_RETURN(RunResult r, RunJob(round_e, job));
    if (r.diverged) return absl::InternalError("round " + std::to_string(round) + " diverged (lower optimizer.learning_rate)");
    CopyWeights(r.model->params(0), model->params());
    return absl::OkStatus();
  }

 private:
  Status TrainActors(const EngineOptions& e, CountdownPolicy& policy, const CountdownLabOptions& po,
                     const CountdownData& all, std::vector<CountdownProblem> fresh, const std::vector<bool>& first_test,
                     const std::vector<bool>& first_ood, std::string table) {
    if (e.distributed.mode == Mode::kSandblaster)
      return absl::InvalidArgumentError("star.mode = \"actors\" runs under Downpour (or locally), not Sandblaster");
    Gpt& gpt = *policy.gpt;
    std::vector<Tensor> start;
    for (Param* q : gpt.params()) start.push_back(q->value);
    auto problems = std::make_shared<const std::vector<CountdownProblem>>(std::move(fresh));
    auto stats = std::make_shared<ActorStats>();
    const StarLabOptions o = o_;
    const uint64_t seed = e.train.seed;
    Job job;
    job.name = "star-actors";
    job.steps = o.steps * o.rounds;
    job.examples_per_step = po.batch;
    job.write_checkpoint = false;
    job.make_replica = [po, o, problems, stats, start, seed](int r, int R) -> StatusOr<std::unique_ptr<ReplicaModel>> {
      return std::unique_ptr<ReplicaModel>(new StarActor(po, o, problems, stats, start, seed, r, R));
    };
    EngineOptions run_e = e;
    run_e.train.run_dir.clear();
    DB_ASSIGN_OR_RETURN(RunResult r, RunJob(run_e, job));
    if (r.diverged) return absl::InternalError("the actors diverged (lower optimizer.learning_rate)");
    CopyWeights(r.model->params(0), gpt.params());
    const std::vector<bool> test = Solved(&gpt, all.test, po.text), ood = Solved(&gpt, all.ood, po.text);
    int64_t fresh_solved = 0;
    for (size_t i = 0; i < test.size(); ++i) fresh_solved += test[i] && !first_test[i];
    const int replicas = e.distributed.mode == Mode::kDownpour ? e.distributed.downpour.replicas : 1;
    char row[384];
    std::snprintf(row, sizeof(row), "| %d rounds by %d actors (%ld steps) | %ld of %ld samples (%ld tokens); %ld steps had none yet | %s | %ld | %.1f%% |\n",
                  o.rounds, replicas, long(r.steps), long(stats->kept.load()), long(stats->sampled.load()),
                  long(stats->tokens.load()), long(stats->empty_steps.load()), PassCell(test, all.test).c_str(),
                  long(fresh_solved), Percent(ood));
    table += row;
    std::printf("%s", row);
    DB_RETURN_IF_ERROR(SaveModelCheckpoint(RunCheckpointPath(e.train.run_dir), gpt.params(), nullptr,
                                           {o.rounds, policy.config, ""}));
    std::ofstream(e.train.run_dir + "/report.md")
        << "# Self-improvement (STaR) on Countdown, by actors under "
        << (e.distributed.mode == Mode::kDownpour ? "Downpour" : "the local driver") << "\n\nStarting policy: " << o.policy
        << "; " << HowSampled(o) << " for each of " << o.problems_per_round << " fresh training problems a round, shared by "
        << replicas << " actors that pull the weights from the parameter server; " << o.steps
        << " steps a round; pass@1 on " << all.test.size() << " held-out problems and " << all.ood.size()
        << " with one more number.\n\n" << table;
    std::printf("report: %s/report.md\ncheckpoint: %s\n", e.train.run_dir.c_str(), RunCheckpointPath(e.train.run_dir).c_str());
    return absl::OkStatus();
  }

  StarLabOptions o_;
};

}  // namespace

StatusOr<StarLabOptions> ParseStarLabOptions(ConfigFile* file) {
  StarLabOptions o;
  Section& s = file->section("star");
  DB_RETURN_IF_ERROR(s.String("policy", &o.policy));
  if (o.policy.empty()) return s.Error("policy", "is required: a Countdown policy's checkpoint");
  DB_RETURN_IF_ERROR(s.Int("rounds", &o.rounds, 1, 100));
  DB_RETURN_IF_ERROR(s.Int("problems_per_round", &o.problems_per_round, 1, 1 << 22));
  DB_RETURN_IF_ERROR(s.Int("samples", &o.samples, 1, 1024));
  DB_RETURN_IF_ERROR(s.Float("temperature", &o.temperature, 0.01, 10.0));
  DB_RETURN_IF_ERROR(s.Int("steps", &o.steps, 1, int64_t{1} << 30));
  DB_RETURN_IF_ERROR(s.Int("test_problems", &o.test_problems, 1, 100000));
  DB_RETURN_IF_ERROR(s.Enum("mode", &o.actors, {{"rounds", false}, {"actors", true}}));
  DB_RETURN_IF_ERROR(s.Enum("search", &o.tree, {{"samples", false}, {"tree", true}}));
  DB_RETURN_IF_ERROR(s.Float("replay", &o.replay, 0.0, 100.0));
  DB_RETURN_IF_ERROR(s.Bool("control", &o.control));
  if (o.actors && o.control) return s.Error("control", "applies to mode = \"rounds\" only");
  if (o.actors && o.replay > 0) return s.Error("replay", "applies to mode = \"rounds\" only (actors learn online)");
  DB_RETURN_IF_ERROR(s.Int("tree_children", &o.tree_options.children, 1, 256));
  DB_RETURN_IF_ERROR(s.Int("tree_tokens", &o.tree_options.max_tokens, 1, 1 << 20));
  o.tree_options.temperature = o.temperature;
  return o;
}

StatusOr<std::unique_ptr<Workload>> MakeStarWorkload(ConfigFile* file) {
  DB_ASSIGN_OR_RETURN(StarLabOptions o, ParseStarLabOptions(file));
  return std::unique_ptr<Workload>(new StarWorkload(std::move(o)));
}

}  // namespace distbelief
