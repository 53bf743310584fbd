#include "distbelief/workloads/reasoning/countdown_lab.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "distbelief/base/logging.h"
#include "distbelief/base/shuffle.h"
#include "distbelief/io/checkpoint.h"
#include "distbelief/train/checkpointing.h"

namespace distbelief {

StatusOr<CountdownLabOptions> ParseCountdownLabOptions(ConfigFile* file) {
  CountdownLabOptions o;
  Section& s = file->section("countdown");
  DB_RETURN_IF_ERROR(s.Int("sources", &o.sources, kMinSources, kMaxSources - 1));
  o.max_sources = o.sources;
  DB_RETURN_IF_ERROR(s.Int("max_sources", &o.max_sources, o.sources, kMaxSources - 1));
  DB_RETURN_IF_ERROR(s.Int("problems", &o.problems, 10, int64_t{1} << 24));
  DB_RETURN_IF_ERROR(s.Int("test_percent", &o.test_percent, 1, 90));
  DB_RETURN_IF_ERROR(s.Int("test_limit", &o.test_limit, 1, 100000));
  DB_RETURN_IF_ERROR(s.Enum("traces", &o.traces, {{"optimal", CountdownTraces::kOptimal},
                                                {"streams", CountdownTraces::kStreams},
                                                {"depth_first", CountdownTraces::kDepthFirst},
                                                {"breadth_first", CountdownTraces::kBreadthFirst},
                                                {"systematic", CountdownTraces::kSystematic}}));
  DB_RETURN_IF_ERROR(s.Int("max_chars", &o.max_chars, 16, 1 << 16));
  DB_RETURN_IF_ERROR(s.Int("beam", &o.beam, 1, 1000));
  DB_RETURN_IF_ERROR(s.Bool("leaf_target", &o.leaf_target));
  DB_RETURN_IF_ERROR(s.Float("verdict_weight", &o.verdict_weight, 0.0, 1000.0));
  DB_RETURN_IF_ERROR(s.Enum("digits", &o.text.reversed_digits, {{"natural", false}, {"reversed", true}}));
  DB_RETURN_IF_ERROR(s.Bool("calculator", &o.text.calculator));
  DB_RETURN_IF_ERROR(s.Bool("goal_test", &o.text.goal_test));
  DB_RETURN_IF_ERROR(s.Int("context", &o.net.context, 16, 8192));
  DB_RETURN_IF_ERROR(s.Int("width", &o.net.width, 8, 4096));
  DB_RETURN_IF_ERROR(s.Int("layers", &o.net.layers, 1, 64));
  DB_RETURN_IF_ERROR(s.Int("heads", &o.net.heads, 1, 64));
  if (o.net.width % o.net.heads != 0)
    return s.Error("heads", "= " + std::to_string(o.net.heads) + " does not divide countdown.width = " +
                                std::to_string(o.net.width));
  DB_RETURN_IF_ERROR(s.Int("batch", &o.batch, 1, 1 << 16));
  DB_RETURN_IF_ERROR(s.Int("train_tokens", &o.train_tokens, 1, int64_t{1} << 40));
  DB_RETURN_IF_ERROR(s.Int("samples", &o.samples, 1, 4096));
  DB_RETURN_IF_ERROR(s.Float("temperature", &o.temperature, 0.0, 10.0));
  DB_RETURN_IF_ERROR(s.Int("tree_children", &o.tree.children, 1, 256));
  DB_RETURN_IF_ERROR(s.Int("tree_tokens", &o.tree.max_tokens, 1, 1 << 20));
  o.tree.temperature = o.temperature;
  o.tree.text = o.text;
  o.net.vocab = static_cast<int64_t>(CountdownVocabulary().size());
  // A prompt of the out-of-distribution test (one more number) must fit with room to answer.
  const int64_t prompt = 4 * (o.max_sources + 1) + 5;
  if (o.max_chars + 24 > o.net.context || prompt + 16 > o.net.context)
    return s.Error("context", "= " + std::to_string(o.net.context) + " cannot hold a prompt and a trace of " +
                                  "countdown.max_chars = " + std::to_string(o.max_chars) + " characters");
  return o;
}

const char* CountdownTracesName(CountdownTraces t) {
  switch (t) {
    case CountdownTraces::kOptimal: return "optimal paths";
    case CountdownTraces::kStreams: return "depth- and breadth-first streams";
    case CountdownTraces::kDepthFirst: return "depth-first streams";
    case CountdownTraces::kBreadthFirst: return "breadth-first streams";
    case CountdownTraces::kSystematic: return "systematic depth-first streams";
  }
  return "?";
}

int CountdownId(char c) {
  if (c == '\0') return -1;
  const size_t at = CountdownVocabulary().find(c);
  return at == std::string::npos ? -1 : static_cast<int>(at);
}

std::vector<CountdownProblem> FreshCountdownProblems(const CountdownLabOptions& o, const CountdownData& data,
                                                     int64_t count, uint64_t seed) {
  std::set<std::string> seen;
  for (const CountdownProblem& p : data.train) seen.insert(CountdownPrompt(p));
  const int counts = o.max_sources - o.sources + 1;
  std::vector<std::vector<CountdownProblem>> by_count(static_cast<size_t>(counts));
  const size_t want = static_cast<size_t>((count + counts - 1) / counts);
  for (int k = o.sources; k <= o.max_sources; ++k) {
    auto& bucket = by_count[static_cast<size_t>(k - o.sources)];
    for (uint64_t draw = 0; bucket.size() < want; ++draw)
      for (CountdownProblem& p : GenerateCountdown(std::max<int64_t>(count, 64), k,
                                                   seed + draw + uint64_t(k - o.sources) * 1000003))
        if (bucket.size() < want && !CountdownSplit(p, o.test_percent) && seen.insert(CountdownPrompt(p)).second)
          bucket.push_back(std::move(p));
  }
  std::vector<CountdownProblem> out;
  for (size_t i = 0; static_cast<int64_t>(out.size()) < count; ++i)
    for (auto& bucket : by_count)
      if (i < bucket.size() && static_cast<int64_t>(out.size()) < count) out.push_back(std::move(bucket[i]));
  return out;
}

StatusOr<std::shared_ptr<const CountdownData>> BuildCountdownData(const CountdownLabOptions& o, uint64_t seed) {
  auto d = std::make_shared<CountdownData>();
  const int counts = o.max_sources - o.sources + 1;
  std::vector<std::vector<CountdownProblem>> held(static_cast<size_t>(counts));
  for (int k = o.sources; k <= o.max_sources; ++k) {
    const int64_t n = o.problems / counts + (k - o.sources < o.problems % counts);
    for (CountdownProblem& p : GenerateCountdown(n, k, seed * 7919 + 17 + uint64_t(k - o.sources) * 1000003)) {
      auto& h = held[static_cast<size_t>(k - o.sources)];
      if (!CountdownSplit(p, o.test_percent)) d->train.push_back(std::move(p));
      else if (static_cast<int64_t>(h.size()) < o.test_limit) h.push_back(std::move(p));
    }
  }
  // Held-out problems of each count in turn, so any prefix of them mixes the counts.
  for (size_t i = 0; i < static_cast<size_t>(o.test_limit); ++i)
    for (const auto& h : held)
      if (i < h.size()) d->test.push_back(h[i]);
  // Out of distribution: one more number, held-out problems only.
  for (CountdownProblem& p : GenerateCountdown(o.test_limit * 100 / o.test_percent + 100, o.max_sources + 1, seed * 7919 + 29))
    if (CountdownSplit(p, o.test_percent) && static_cast<int64_t>(d->ood.size()) < o.test_limit) d->ood.push_back(std::move(p));
  int64_t k = 0;
  for (const CountdownProblem& p : d->train) {
    const bool breadth = o.traces == CountdownTraces::kBreadthFirst || (o.traces == CountdownTraces::kStreams && k++ % 2);
    const SearchOrder order = o.traces == CountdownTraces::kSystematic ? SearchOrder::kSystematic
                              : breadth                                 ? SearchOrder::kBreadthFirst
                                                                        : SearchOrder::kDepthFirst;
    StatusOr<std::string> t =
        o.traces == CountdownTraces::kOptimal ? OptimalTrace(p)
                                              : SearchTrace(p, order, o.max_chars, o.beam, o.leaf_target);
    const int64_t prompt = static_cast<int64_t>(CountdownPrompt(p).size());
    if (!t.ok() || static_cast<int64_t>(t->size()) > o.net.context) {
      ++d->dropped;
      continue;
    }
    d->supervised_tokens += static_cast<int64_t>(t->size()) - prompt;
    d->traces.push_back(o.text.reversed_digits ? ReverseDigitRuns(*t) : std::move(*t));
    d->prompt_chars.push_back(static_cast<int>(prompt));
  }
  if (d->traces.empty()) return absl::InvalidArgumentError("no Countdown training problem has a trace within countdown.max_chars");
  if (d->test.empty()) return absl::InvalidArgumentError("no Countdown problem is held out: raise countdown.problems");
  return std::shared_ptr<const CountdownData>(std::move(d));
}

std::string CountdownCalculator(std::string_view text, bool reversed) {
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (text.empty() || text.back() != '=') return "";
  size_t end = text.size() - 1, at = end;
  while (at > 0 && digit(text[at - 1])) --at;
  const size_t b_from = at, b_len = end - at;
  if (b_len == 0 || b_len > 9 || at == 0) return "";
  const char op = text[--at];
  if (op != '+' && op != '-' && op != '*' && op != '/') return "";
  end = at;
  while (at > 0 && digit(text[at - 1])) --at;
  const size_t a_len = end - at;
  if (a_len == 0 || a_len > 9) return "";
  auto value = [&](size_t from, size_t len) {
    std::string s(text.substr(from, len));
    if (reversed) std::reverse(s.begin(), s.end());
    return std::stoll(s);
  };
  int64_t r = 0;
  if (!ApplyCountdownOp(value(at, a_len), op, value(b_from, b_len), &r)) return "";
  std::string out = std::to_string(r);
  if (reversed) std::reverse(out.begin(), out.end());
  return out;
}

std::string CountdownGoalTest(std::string_view text, std::string_view target) {
  if (text.size() < 3 || text.back() != '>') return "";
  size_t at = text.size() - 1;
  while (at > 0 && text[at - 1] >= '0' && text[at - 1] <= '9') --at;
  if (at == text.size() - 1 || at == 0 || text[at - 1] != '=') return "";
  const bool hit = text.substr(at, text.size() - 1 - at) == target;
  return std::string(target) + (hit ? "#" : "!");
}

std::vector<std::string> SampleCountdown(Gpt* gpt, const std::string& prompt, int64_t n, float temperature,
                                         Random* rng, int64_t* tokens, std::string_view stops,
                                         const CountdownPolicyText& text) {
  const GptOptions& g = gpt->options();
  if (temperature <= 0.0f) n = 1;
  std::vector<std::string> out(static_cast<size_t>(n));
  if (prompt.empty() || static_cast<int64_t>(prompt.size()) >= g.context) return out;
  Gpt::Cache cache = gpt->NewCache(n);
  Tensor tok({n}), logits;
  // The prompt, one position at a time (its last logits start the text).
  for (char c : text.reversed_digits ? ReverseDigitRuns(prompt) : prompt) {
    tok.Fill(static_cast<float>(std::max(0, CountdownId(c))));
    gpt->Step(tok, &cache, &logits);
  }
  std::vector<bool> done(static_cast<size_t>(n), false);
  // The calculator's digits (or the goal test's characters) still to write; once a forced number
  // is written, the next character is not a digit.
  std::vector<std::string> forced(static_cast<size_t>(n));
  std::vector<char> end_number(static_cast<size_t>(n), false);
  std::string target;  // the prompt's, in the policy's digit order, for the goal test
  if (const size_t gt = prompt.rfind('>'); gt != std::string::npos && prompt.back() == ':')
    target = prompt.substr(gt + 1, prompt.size() - gt - 2);
  if (text.reversed_digits) target = ReverseDigitRuns(target);
  std::vector<float> masked;
  int64_t open = n;
  std::vector<double> p(static_cast<size_t>(g.vocab));
  while (open > 0 && cache.pos < g.context) {
    for (int64_t r = 0; r < n; ++r) {
      const float* l = logits.data() + r * g.vocab;
      std::string& f = forced[static_cast<size_t>(r)];
      if (end_number[static_cast<size_t>(r)]) {  // the calculator's digits are written: the number ends
        masked.assign(l, l + g.vocab);
        for (char d = '0'; d <= '9'; ++d) masked[static_cast<size_t>(CountdownId(d))] = -INFINITY;
        l = masked.data();
        end_number[static_cast<size_t>(r)] = false;
      }
      int64_t pick = 0;
      if (temperature <= 0.0f) {
        pick = std::max_element(l + 1, l + g.vocab) - l;  // never the pad id
      } else {
        double mx = -INFINITY, sum = 0.0;
        for (int64_t v = 1; v < g.vocab; ++v) mx = std::max(mx, static_cast<double>(l[v]));
        for (int64_t v = 1; v < g.vocab; ++v) sum += p[v] = std::exp((l[v] - mx) / temperature);
        double u = rng->Uniform() * sum;
        pick = g.vocab - 1;
        for (int64_t v = 1; v < g.vocab; ++v)
          if ((u -= p[v]) <= 0.0) {
            pick = v;
            break;
          }
      }
      if (!done[r] && !f.empty()) {
        const char fc = f.front();
        pick = CountdownId(fc);
        f.erase(0, 1);
        end_number[static_cast<size_t>(r)] = f.empty() && fc >= '0' && fc <= '9';
      }
      tok[r] = static_cast<float>(pick);
      if (done[r]) continue;
      ++*tokens;
      const char c = CountdownVocabulary()[static_cast<size_t>(pick)];
      out[r] += c;
      if (text.calculator && c == '=') f = CountdownCalculator(out[r], text.reversed_digits);
      if (text.goal_test && c == '>') f = CountdownGoalTest(out[r], target);
      if (stops.find(c) != std::string_view::npos) done[r] = true, --open;
    }
    if (open == 0 || cache.pos >= g.context) break;
    gpt->Step(tok, &cache, &logits);
  }
  if (text.reversed_digits)
    for (std::string& t : out) t = ReverseDigitRuns(t);
  return out;
}

CountdownAnswer SearchCountdown(Gpt* gpt, const CountdownProblem& p, int64_t samples, float temperature, Random* rng,
                                const CountdownPolicyText& text) {
  CountdownAnswer a;
  const std::string prompt = CountdownPrompt(p);
  auto consider = [&](const std::string& text) {
    ++a.tries;
    const std::string full = prompt + text;
    const std::string steps(SolutionPart(full));
    const CountdownVerdict v = VerifySteps(p, steps);
    if (a.text.empty() || v.ok) a.text = text, a.steps = steps;
    if (v.ok) {
      a.verified = true;
      a.expression = StepsExpression(p, v.steps);
    }
    return v.ok;
  };
  for (const std::string& t : SampleCountdown(gpt, prompt, 1, 0.0f, rng, &a.tokens, ".", text))
    if (consider(t)) return a;
  // Then samples, in rounds of up to 16, until one verifies.
  for (int64_t left = samples; left > 0 && temperature > 0.0f;) {
    const int64_t n = std::min<int64_t>(16, left);
    left -= n;
    for (const std::string& t : SampleCountdown(gpt, prompt, n, temperature, rng, &a.tokens, ".", text))
      if (consider(t)) return a;
  }
  return a;
}

CountdownAnswer TreeSearchCountdown(Gpt* gpt, const CountdownProblem& p, const TreeSearchOptions& o, Random* rng) {
  CountdownAnswer a;
  const std::string prompt = CountdownPrompt(p);
  auto accept = [&](const std::string& text) {
    const CountdownVerdict v = VerifySteps(p, SolutionPart(prompt + text));
    if (!v.ok) return false;
    a.verified = true;
    a.text = text;
    a.steps = StepsText(v.steps);
    a.expression = StepsExpression(p, v.steps);
    return true;
  };
  ++a.tries;
  const std::string greedy = SampleCountdown(gpt, prompt, 1, 0.0f, rng, &a.tokens, ".", o.text)[0];
  a.text = greedy;
  a.steps = std::string(SolutionPart(prompt + greedy));
  if (accept(greedy) || o.temperature <= 0.0f) return a;
  struct Node {
    std::string text;  // the steps so far, each ending in ','
    std::vector<int64_t> left;
  };
  auto key = [](std::vector<int64_t> v) {
    std::sort(v.begin(), v.end());
    std::string k;
    for (int64_t x : v) k += std::to_string(x) + ' ';
    return k;
  };
  // Depth first; a tree exhausted within the budget is searched again with twice the children.
  for (int64_t children = o.children; a.tokens < o.max_tokens && children <= 256; children *= 2) {
    std::set<std::string> seen{key(p.numbers)};
    std::vector<Node> stack{{"", p.numbers}};
    while (!stack.empty() && a.tokens < o.max_tokens) {
      const Node node = std::move(stack.back());
      stack.pop_back();
      // Distinct legal next steps, by how often the policy wrote them.
      std::map<std::string, std::pair<int, std::vector<int64_t>>> next;
      for (const std::string& t :
           SampleCountdown(gpt, prompt + node.text, children, o.temperature, rng, &a.tokens, ",.", o.text)) {
        const bool ended = !t.empty() && (t.back() == ',' || t.back() == '.');
        std::vector<int64_t> left = node.left;
        CountdownStep s;
        if (!ApplyCountdownStep(std::string_view(t).substr(0, t.size() - ended), &left, &s).ok()) continue;
        auto& e = next[StepsText({s})];
        ++e.first;
        e.second = std::move(left);
      }
      std::vector<std::pair<int, Node>> kids;
      for (auto& [step, e] : next) {
        if (e.second.size() == 1) {
          ++a.tries;
          if (accept(node.text + step + ".")) return a;
          continue;
        }
        if (!seen.insert(key(e.second)).second) continue;
        kids.push_back({e.first, Node{node.text + step + ",", std::move(e.second)}});
      }
      // Most sampled on top of the stack (ties: the order of the steps' text, for determinism).
      std::stable_sort(kids.begin(), kids.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
      for (auto& k : kids) stack.push_back(std::move(k.second));
    }
  }
  return a;
}

CountdownReplica::CountdownReplica(const CountdownLabOptions& o, std::shared_ptr<const CountdownData> data,
                                   uint64_t seed, int replica, int replicas)
    : o_(o), data_(std::move(data)), gpt_(o.net, seed), seed_(seed), replica_(replica), replicas_(replicas) {}

float CountdownBatchLoss(Gpt* gpt, const std::vector<std::string>& traces, const std::vector<int>& prompt_chars,
                         const std::vector<int64_t>& rows, Tensor* x, Tensor* y, float verdict_weight, Tensor* w) {
  const bool weighted = verdict_weight != 1.0f;
  CHECK(!weighted || w != nullptr) << "CountdownBatchLoss: verdict_weight " << verdict_weight << " needs scratch w";
  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t T = 1;  // the batch is as long as its longest trace (not the whole context)
  for (int64_t k : rows) T = std::max<int64_t>(T, static_cast<int64_t>(traces[k].size()));
  T = std::min(T, gpt->options().context);
  x->Resize({B, T});
  y->Resize({B, T});
  x->Zero();
  y->Fill(-1.0f);
  if (weighted) w->Resize({B, T}), w->Fill(1.0f);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t k = rows[b];
    const std::string& t = traces[k];
    const int64_t len = static_cast<int64_t>(t.size()), prompt = prompt_chars[k];
    for (int64_t j = 0; j < len && j < T; ++j) (*x)[b * T + j] = static_cast<float>(CountdownId(t[j]));
    for (int64_t j = prompt - 1; j + 1 < len && j < T; ++j) {
      (*y)[b * T + j] = static_cast<float>(CountdownId(t[j + 1]));
      if (weighted && (t[j + 1] == '#' || t[j + 1] == '!')) (*w)[b * T + j] = verdict_weight;
    }
  }
  gpt->ZeroGrad();
  const float loss = gpt->Forward(*x, *y, weighted ? w : nullptr);
  if (std::isfinite(loss)) gpt->Backward();
  return loss;
}

StatusOr<StepLoss> CountdownReplica::ComputeGradient(int64_t step) {
  // Replica r takes examples r, r + R, ... of a seeded order of all traces, reshuffled per epoch.
  const int64_t n = static_cast<int64_t>(data_->traces.size());
  const int64_t first = (step * replicas_ + replica_) * o_.batch;
  std::vector<int64_t> rows(static_cast<size_t>(o_.batch));
  for (int64_t b = 0; b < o_.batch; ++b) {
    const int64_t i = first + b, epoch = i / n;
    if (epoch != epoch_) {
      order_ = ShuffledRange(n, seed_ * 104729 + static_cast<uint64_t>(epoch));
      epoch_ = epoch;
    }
    rows[b] = order_[i % n];
  }
  StepLoss l;
  l.total = CountdownBatchLoss(&gpt_, data_->traces, data_->prompt_chars, rows, &x_, &y_, o_.verdict_weight, &w_);
  return l;
}

StatusOr<Job> CountdownJob(const CountdownLabOptions& o, std::shared_ptr<const CountdownData> data,
                           const EngineOptions& e) {
  if (e.distributed.mode == Mode::kSandblaster)
    return absl::InvalidArgumentError("the Countdown policy trains locally or with Downpour (Sandblaster needs a fixed example set)");
  const double per_trace = static_cast<double>(data->supervised_tokens) / static_cast<double>(data->traces.size());
  Job job;
  job.name = "countdown";
  job.steps = std::max<int64_t>(1, static_cast<int64_t>(std::llround(o.train_tokens / (per_trace * o.batch))));
  job.examples_per_step = o.batch;
  const uint64_t seed = e.train.seed;
  job.make_replica = [o, data, seed](int r, int replicas) -> StatusOr<std::unique_ptr<ReplicaModel>> {
    return std::unique_ptr<ReplicaModel>(new CountdownReplica(o, data, seed, r, replicas));
  };
  return job;
}

namespace {

// ", numbers written backwards, with a calculator" and the like: how the policy's text differs.
std::string TextName(const CountdownPolicyText& t) {
  return std::string(t.reversed_digits ? ", numbers written backwards" : "") + (t.calculator ? ", with a calculator" : "") +
         (t.goal_test ? ", with a goal test" : "");
}

struct Score {
  int64_t solved = 0, problems = 0, tokens = 0;
  double Percent() const { return problems ? 100.0 * solved / problems : 0.0; }
};

Score ScoreOn(Gpt* gpt, const std::vector<CountdownProblem>& problems, int64_t samples, float temperature, uint64_t seed,
              const CountdownPolicyText& text) {
  Score s;
  Random rng(seed);
  for (const CountdownProblem& p : problems) {
    const CountdownAnswer a = SearchCountdown(gpt, p, samples, temperature, &rng, text);
    s.solved += a.verified;
    s.tokens += a.tokens;
    ++s.problems;
  }
  return s;
}

class CountdownWorkload : public Workload {
 public:
  explicit CountdownWorkload(CountdownLabOptions o) : o_(std::move(o)) {}
  StatusOr<Job> MakeJob(const EngineOptions& e) override {
    DB_RETURN_IF_ERROR(LoadData(e));
    return CountdownJob(o_, data_, e);
  }
  Status Report(const EngineOptions& e, RunResult* r) override {
    if (r->diverged) return absl::InternalError("training diverged (lower optimizer.learning_rate)");
    std::printf("steps: %ld in %.1f s; train loss first %.4f, last %.4f\n", long(r->steps), r->seconds,
                r->first_loss.total, r->last_loss.total);
    Gpt& gpt = static_cast<CountdownReplica*>(r->model.get())->gpt();
    const std::string table = ScoreTable(&gpt, e.train.seed);
    std::printf("%s", table.c_str());
    std::ofstream md(e.train.run_dir + "/report.md");
    md << "# Countdown policy (" << CountdownTracesName(o_.traces)
       << ")\n\n" << DataLine() << "\n\n" << table;
    std::printf("report: %s/report.md\ncheckpoint: %s\n", e.train.run_dir.c_str(), RunCheckpointPath(e.train.run_dir).c_str());
    return absl::OkStatus();
  }
  Status Evaluate(const EngineOptions& e, const EvalRequest& request) override {
    if (!request.flags.empty()) return absl::InvalidArgumentError("eval of Countdown takes no flag --" + request.flags.begin()->first);
    DB_RETURN_IF_ERROR(LoadData(e));
    Gpt gpt(o_.net, 1);
    DB_RETURN_IF_ERROR(LoadModelCheckpoint(request.checkpoint, gpt.params()).status());
    std::printf("%s", ScoreTable(&gpt, e.train.seed).c_str());
    return absl::OkStatus();
  }

 private:
  Status LoadData(const EngineOptions& e) {
    if (data_) return absl::OkStatus();
    DB_ASSIGN_OR_RETURN(data_, BuildCountdownData(o_, e.train.seed));
    std::printf("%s\n", DataLine().c_str());
    return absl::OkStatus();
  }
  std::string DataLine() const {
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  "Countdown, %s numbers: %zu training traces (%s%s, %ld supervised tokens, %ld problems without a "
                  "trace within %ld characters), %zu held-out problems, %zu out of distribution (%d numbers)",
                  Counts().c_str(), data_->traces.size(),
                  CountdownTracesName(o_.traces), TextName(o_.text).c_str(),
                  long(data_->supervised_tokens), long(data_->dropped), long(o_.max_chars), data_->test.size(),
                  data_->ood.size(), o_.max_sources + 1);
    return buf;
  }
  std::string Counts() const {
    return o_.max_sources == o_.sources ? std::to_string(o_.sources)
                                        : std::to_string(o_.sources) + "-" + std::to_string(o_.max_sources);
  }
  std::string ScoreTable(Gpt* gpt, uint64_t seed) {
    const TreeSearchOptions& tree = o_.tree;
    std::string t = "| test | greedy | tokens/problem | best of " + std::to_string(o_.samples) +
                    " (exact verifier) | tokens/problem | tree search (" + std::to_string(tree.children) +
                    " children, budget " + std::to_string(tree.max_tokens) + " tokens) | tokens/problem |\n"
                    "|---|---|---|---|---|---|---|\n";
    for (int k = o_.sources; k <= o_.max_sources + 1; ++k) {
      const bool ood = k > o_.max_sources;
      std::vector<CountdownProblem> problems;
      for (const CountdownProblem& p : ood ? data_->ood : data_->test)
        if (static_cast<int>(p.numbers.size()) == k) problems.push_back(p);
      const Score g = ScoreOn(gpt, problems, 0, 0.0f, seed + 1, o_.text);
      const Score b = ScoreOn(gpt, problems, o_.samples, o_.temperature, seed + 2, o_.text);
      Score s;
      Random rng(seed + 3);
      for (const CountdownProblem& p : problems) {
        const CountdownAnswer a = TreeSearchCountdown(gpt, p, tree, &rng);
        s.solved += a.verified;
        s.tokens += a.tokens;
        ++s.problems;
      }
      auto per = [](const Score& x) { return x.problems ? double(x.tokens) / x.problems : 0.0; };
      char row[320];
      std::snprintf(row, sizeof(row), "| %s, %ld problems | %.1f%% | %.0f | %.1f%% | %.0f | %.1f%% | %.0f |\n",
                    (std::to_string(k) + (ood ? " numbers (out of distribution)" : " numbers")).c_str(),
                    long(g.problems), g.Percent(), per(g), b.Percent(), per(b), s.Percent(), per(s));
      t += row;
    }
    return t;
  }
  CountdownLabOptions o_;
  std::shared_ptr<const CountdownData> data_;
};

}  // namespace

StatusOr<CountdownProblem> ParseCountdownProblemLine(const std::string& line) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("not JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  if (!j.contains("numbers")) return absl::InvalidArgumentError("missing \"numbers\"");
  if (!j.contains("target")) return absl::InvalidArgumentError("missing \"target\"");
  const auto& nums = j["numbers"];
  if (!nums.is_array()) return absl::InvalidArgumentError("\"numbers\" is not an array");
  CountdownProblem p;
  for (const auto& x : nums) {
    if (!x.is_number_integer()) return absl::InvalidArgumentError("\"numbers\" holds " + x.dump() + ", not an integer");
    const auto v = x.get<int64_t>();
    p.numbers.push_back(v);
  }
  const auto& t = j["target"];
  if (!t.is_number_integer()) return absl::InvalidArgumentError("\"target\" is " + t.dump() + ", not an integer");
  p.target = t.get<int64_t>();
  DB_RETURN_IF_ERROR(CheckCountdownProblem(p));
  return p;
}

StatusOr<CountdownPolicy> LoadCountdownPolicy(const std::string& checkpoint) {
  DB_ASSIGN_OR_RETURN(Checkpoint ckpt, ReadCheckpoint(checkpoint));
  CountdownPolicy p;
  p.config = ckpt.metadata["config"];
  DB_ASSIGN_OR_RETURN(ConfigFile file, ConfigFile::Parse(p.config, checkpoint + " (its config)"));
  if (!file.Has("countdown"))
    return absl::InvalidArgumentError(checkpoint + " is not a Countdown policy (its config has no [countdown])");
  DB_ASSIGN_OR_RETURN(p.options, ParseCountdownLabOptions(&file));
  p.gpt = std::make_unique<Gpt>(p.options.net, 1);
  DB_RETURN_IF_ERROR(LoadModelCheckpoint(checkpoint, p.gpt->params()).status());
  return p;
}

Status RunCountdownSearch(const std::string& checkpoint, const CountdownSearchOptions& o, FILE* in, FILE* out) {
  DB_ASSIGN_OR_RETURN(CountdownPolicy policy, LoadCountdownPolicy(checkpoint));
  Gpt& gpt = *policy.gpt;
  Random rng(o.seed);
  TreeSearchOptions tree = o.tree_options;
  tree.temperature = o.temperature;
  CountdownPolicyText text = policy.options.text;
  text.calculator |= o.calculator;
  tree.text = text;
  char* buf = nullptr;
  size_t cap = 0;
  int64_t line_no = 0;
  for (ssize_t n; (n = ::getline(&buf, &cap, in)) >= 0;) {
    ++line_no;
    std::string line(buf, static_cast<size_t>(n));
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    nlohmann::json result;
    StatusOr<CountdownProblem> p = ParseCountdownProblemLine(line);
    if (!p.ok()) {
      result = {{"line", line_no}, {"error", std::string(p.status().message())}};
    } else {
      // No answer can verify where the exact solver finds none: such a line shows the policy's
      // greedy attempt only, not a whole budget of search.
      const bool solvable = IsSolvable(*p);
      const CountdownAnswer a = !solvable ? SearchCountdown(&gpt, *p, 0, o.temperature, &rng, text)
                                : o.tree  ? TreeSearchCountdown(&gpt, *p, tree, &rng)
                                          : SearchCountdown(&gpt, *p, o.samples, o.temperature, &rng, text);
      result = {{"numbers", p->numbers}, {"target", p->target}, {"verified", a.verified},
                {"steps", a.steps}, {"text", a.text}, {"solvable", solvable}, {"tokens", a.tokens}};
      result["expression"] = a.verified ? nlohmann::json(a.expression) : nlohmann::json(nullptr);
    }
    std::fprintf(out, "%s\n", result.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    std::fflush(out);
  }
  std::free(buf);
  return absl::OkStatus();
}

StatusOr<std::unique_ptr<Workload>> MakeCountdownWorkload(ConfigFile* file) {
  DB_ASSIGN_OR_RETURN(CountdownLabOptions o, ParseCountdownLabOptions(file));
  return std::unique_ptr<Workload>(new CountdownWorkload(std::move(o)));
}

}  // namespace distbelief
