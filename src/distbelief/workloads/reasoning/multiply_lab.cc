#include "distbelief/workloads/reasoning/multiply_lab.h"

#include <cstdio>
#include <fstream>
#include <set>

#include "distbelief/io/checkpoint.h"
#include "distbelief/train/checkpointing.h"

namespace distbelief {

namespace {

// The longest trace of d-digit problems: every digit of both numbers non-zero.
int64_t LongestTrace(int d) {
  int64_t n = 0;
  for (int i = 0; i < d; ++i) n = n * 10 + 9;
  const MultiplyProblem p{n, n};
  return static_cast<int64_t>(MultiplyPrompt(p).size() + SolveMultiply(p).size());
}

// The number after the text's last '=' (up to '.', ',' or the end); -1 if there is none.
int64_t FinalNumber(const std::string& text) {
  const size_t eq = text.rfind('=');
  if (eq == std::string::npos) return -1;
  int64_t v = 0;
  size_t i = eq + 1, digits = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9' && digits < 18; ++i, ++digits) v = v * 10 + (text[i] - '0');
  const bool ends = i == text.size() || text[i] == '.';
  return digits > 0 && ends ? v : -1;
}

}  // namespace

StatusOr<MultiplyLabOptions> ParseMultiplyLabOptions(ConfigFile* file) {
  MultiplyLabOptions o;
  Section& s = file->section("multiply");
  DB_RETURN_IF_ERROR(s.Int("digits", &o.digits, 1, kMaxMultiplyDigits - 1));
  DB_RETURN_IF_ERROR(s.Int("problems", &o.problems, 10, int64_t{1} << 24));
  DB_RETURN_IF_ERROR(s.Int("test_percent", &o.test_percent, 1, 90));
  DB_RETURN_IF_ERROR(s.Int("test_limit", &o.test_limit, 1, 100000));
  DB_RETURN_IF_ERROR(s.Int("context", &o.net.context, 16, 8192));
  DB_RETURN_IF_ERROR(s.Int("width", &o.net.width, 8, 4096));
  DB_RETURN_IF_ERROR(s.Int("layers", &o.net.layers, 1, 64));
  DB_RETURN_IF_ERROR(s.Int("heads", &o.net.heads, 1, 64));
  if (o.net.width % o.net.heads != 0)
    return s.Error("heads", "= " + std::to_string(o.net.heads) + " does not divide multiply.width = " +
                                std::to_string(o.net.width));
  DB_RETURN_IF_ERROR(s.Int("batch", &o.batch, 1, 1 << 16));
  DB_RETURN_IF_ERROR(s.Int("train_tokens", &o.train_tokens, 1, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(s.Int("samples", &o.samples, 1, 4096));
  DB_RETURN_IF_ERROR(s.Float("temperature", &o.temperature, 0.0, 10.0));
  o.net.vocab = static_cast<int64_t>(CountdownVocabulary().size());
  // The out-of-distribution answers (one more digit) must fit, with the end of text.
  const int64_t longest = LongestTrace(o.digits + 1);
  if (longest + 1 > o.net.context)
    return s.Error("context", "= " + std::to_string(o.net.context) + " cannot hold a " + std::to_string(o.digits + 1) +
                                  "-digit problem and its answer (" + std::to_string(longest) + " characters)");
  return o;
}

bool MultiplySplit(const MultiplyProblem& p, int test_percent) {
  uint64_t h = static_cast<uint64_t>(p.a) * 1000000007ull + static_cast<uint64_t>(p.b);
  h ^= h >> 33;  // a 64-bit finalizer (MurmurHash3's)
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return static_cast<int>(h % 100) < test_percent;
}

StatusOr<MultiplyData> BuildMultiplyData(const MultiplyLabOptions& o, uint64_t seed) {
  auto train = std::make_shared<CountdownData>();
  std::vector<std::vector<MultiplyProblem>> held(static_cast<size_t>(o.digits));
  std::set<std::pair<int64_t, int64_t>> seen;
  for (int d = 1; d <= o.digits; ++d) {
    const int64_t n = o.problems / o.digits + (d - 1 < o.problems % o.digits);
    for (const MultiplyProblem& p : GenerateMultiply(n, d, seed * 7919 + 101 + uint64_t(d) * 1000003)) {
      if (!seen.insert({p.a, p.b}).second) continue;  // small digit counts repeat
      auto& h = held[static_cast<size_t>(d - 1)];
      if (MultiplySplit(p, o.test_percent)) {
        if (static_cast<int64_t>(h.size()) < o.test_limit) h.push_back(p);
        continue;
      }
      const std::string prompt = MultiplyPrompt(p);
      train->traces.push_back(prompt + SolveMultiply(p));
      train->prompt_chars.push_back(static_cast<int>(prompt.size()));
      train->supervised_tokens += static_cast<int64_t>(train->traces.back().size() - prompt.size());
    }
  }
  MultiplyData data;
  for (size_t i = 0; i < static_cast<size_t>(o.test_limit); ++i)
    for (const auto& h : held)
      if (i < h.size()) data.test.push_back(h[i]);
  for (const MultiplyProblem& p : GenerateMultiply(o.test_limit * 4, o.digits + 1, seed * 7919 + 29))
    if (static_cast<int64_t>(data.ood.size()) < o.test_limit && seen.insert({p.a, p.b}).second) data.ood.push_back(p);
  if (train->traces.empty()) return absl::InvalidArgumentError("no multiplication problem left for training: raise multiply.problems");
  if (data.test.empty()) return absl::InvalidArgumentError("no multiplication problem is held out: raise multiply.problems");
  data.train = std::move(train);
  return data;
}

MultiplyAnswer SearchMultiply(Gpt* gpt, const MultiplyProblem& p, int64_t samples, float temperature, Random* rng) {
  MultiplyAnswer a;
  const std::string prompt = MultiplyPrompt(p);
  a.text = SampleCountdown(gpt, prompt, 1, 0.0f, rng, &a.tokens)[0];
  a.greedy_tokens = a.tokens;
  if (VerifyMultiply(p, a.text).ok) {
    a.verified = a.greedy_verified = true;
    return a;
  }
  a.right_product_rejected = FinalNumber(a.text) == p.a * p.b;
  for (int64_t left = samples; left > 0 && temperature > 0.0f;) {
    const int64_t n = std::min<int64_t>(16, left);
    left -= n;
    for (const std::string& t : SampleCountdown(gpt, prompt, n, temperature, rng, &a.tokens))
      if (VerifyMultiply(p, t).ok) {
        a.verified = true;
        a.text = t;
        return a;
      }
  }
  return a;
}

namespace {

class MultiplyWorkload : public Workload {
 public:
  explicit MultiplyWorkload(MultiplyLabOptions o) : o_(std::move(o)) {}
  StatusOr<Job> MakeJob(const EngineOptions& e) override {
    DB_RETURN_IF_ERROR(LoadData(e));
    CountdownLabOptions policy;  // the policy trainer's options: the same GPT, batch and budget
    policy.net = o_.net;
    policy.batch = o_.batch;
    policy.train_tokens = o_.train_tokens;
    DB_ASSIGN_OR_RETURN(Job job, CountdownJob(policy, data_->train, e));
    job.name = "multiply";
    return job;
  }
  Status Report(const EngineOptions& e, RunResult* r) override {
    if (r->diverged) return absl::InternalError("training diverged (lower optimizer.learning_rate)");
    std::printf("steps: %ld in %.1f s; train loss first %.4f, last %.4f\n", long(r->steps), r->seconds,
                r->first_loss.total, r->last_loss.total);
    Gpt& gpt = static_cast<CountdownReplica*>(r->model.get())->gpt();
    const std::string table = ScoreTable(&gpt, e.train.seed);
    std::printf("%s", table.c_str());
    std::ofstream md(e.train.run_dir + "/report.md");
    md << "# Long multiplication policy\n\n" << DataLine() << "\n\n" << table;
    std::printf("report: %s/report.md\ncheckpoint: %s\n", e.train.run_dir.c_str(), RunCheckpointPath(e.train.run_dir).c_str());
    return absl::OkStatus();
  }
  Status Evaluate(const EngineOptions& e, const EvalRequest& request) override {
    if (!request.flags.empty()) return absl::InvalidArgumentError("eval of multiply takes no flag --" + request.flags.begin()->first);
    DB_RETURN_IF_ERROR(LoadData(e));
    Gpt gpt(o_.net, 1);
    DB_RETURN_IF_ERROR(LoadModelCheckpoint(request.checkpoint, gpt.params()).status());
    std::printf("%s", ScoreTable(&gpt, e.train.seed).c_str());
    return absl::OkStatus();
  }

 private:
  Status LoadData(const EngineOptions& e) {
    if (data_) return absl::OkStatus();
    DB_ASSIGN_OR_RETURN(MultiplyData d, BuildMultiplyData(o_, e.train.seed));
    data_ = std::make_unique<MultiplyData>(std::move(d));
    std::printf("%s\n", DataLine().c_str());
    return absl::OkStatus();
  }
  std::string DataLine() const {
    char buf[400];
    std::snprintf(buf, sizeof(buf),
                  "Long multiplication, 1-%d digits: %zu training traces (%ld supervised tokens), %zu held-out problems, "
                  "%zu out of distribution (%d digits)",
                  o_.digits, data_->train->traces.size(), long(data_->train->supervised_tokens), data_->test.size(),
                  data_->ood.size(), o_.digits + 1);
    return buf;
  }
  std::string ScoreTable(Gpt* gpt, uint64_t seed) const {
    std::string t = "| test (a has d digits, b 1 to d) | greedy (step verifier) | right product, steps rejected | "
                    "tokens/problem | best of " + std::to_string(o_.samples) +
                    " (step verifier) | tokens/problem |\n|---|---|---|---|---|---|\n";
    for (int d = 1; d <= o_.digits + 1; ++d) {
      const bool ood = d > o_.digits;
      std::vector<MultiplyProblem> problems;
      for (const MultiplyProblem& p : ood ? data_->ood : data_->test)
        if (std::to_string(p.a).size() == static_cast<size_t>(d)) problems.push_back(p);
      if (problems.empty()) continue;
      int64_t greedy = 0, rejected = 0, greedy_tokens = 0, best = 0, best_tokens = 0;
      Random rng(seed + 1);
      for (const MultiplyProblem& p : problems) {
        const MultiplyAnswer a = SearchMultiply(gpt, p, o_.samples, o_.temperature, &rng);
        greedy += a.greedy_verified;
        rejected += a.right_product_rejected;
        greedy_tokens += a.greedy_tokens;
        best += a.verified;
        best_tokens += a.tokens;
      }
      const double n = static_cast<double>(problems.size());
      char row[320];
      std::snprintf(row, sizeof(row), "| %d digits%s, %zu problems | %.1f%% | %ld | %.0f | %.1f%% | %.0f |\n", d,
                    ood ? " (out of distribution)" : "", problems.size(), 100.0 * greedy / n, long(rejected),
                    greedy_tokens / n, 100.0 * best / n, best_tokens / n);
      t += row;
    }
    return t;
  }
  MultiplyLabOptions o_;
  std::unique_ptr<MultiplyData> data_;
};

}  // namespace

StatusOr<std::unique_ptr<Workload>> MakeMultiplyWorkload(ConfigFile* file) {
  DB_ASSIGN_OR_RETURN(MultiplyLabOptions o, ParseMultiplyLabOptions(file));
  return std::unique_ptr<Workload>(new MultiplyWorkload(std::move(o)));
}

}  // namespace distbelief
