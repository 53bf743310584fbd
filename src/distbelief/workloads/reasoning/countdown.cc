#include "distbelief/workloads/reasoning/countdown.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <functional>
#include <set>

#include "distbelief/base/random.h"

namespace distbelief {
namespace {

constexpr int64_t kMaxNumber = 100, kMinTarget = 10, kMaxTarget = 999;

std::string Join(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? " " : "") + std::to_string(v[i]);
  return s;
}

std::string StepText(const CountdownStep& s) {
  return std::to_string(s.a) + s.op + std::to_string(s.b) + "=" + std::to_string(s.result);
}

// The numbers left after taking i and j from `nums` and adding r (i < j), in a canonical order
// (the untouched numbers as they were, then r).
std::vector<int64_t> After(const std::vector<int64_t>& nums, size_t i, size_t j, int64_t r) {
  std::vector<int64_t> out;
  for (size_t k = 0; k < nums.size(); ++k)
    if (k != i && k != j) out.push_back(nums[k]);
  out.push_back(r);
  return out;
}

// Every allowed step on `nums`: pairs (larger first), + - * /, duplicates of equal pairs once.
struct Child {
  CountdownStep step;
  std::vector<int64_t> left;
};
std::vector<Child> Children(const std::vector<int64_t>& nums) {
  std::vector<Child> out;
  std::set<std::pair<int64_t, int64_t>> seen;
  for (size_t i = 0; i < nums.size(); ++i)
    for (size_t j = i + 1; j < nums.size(); ++j) {
      const int64_t a = std::max(nums[i], nums[j]), b = std::min(nums[i], nums[j]);
      if (!seen.insert({a, b}).second) continue;
      for (char op : {'+', '-', '*', '/'}) {
        int64_t r;
        if (!ApplyCountdownOp(a, op, b, &r)) continue;
        out.push_back({{a, b, r, op}, After(nums, i, j, r)});
      }
    }
  return out;
}

// The distance of a state to the target: its closest number's.
int64_t Distance(const std::vector<int64_t>& nums, int64_t target) {
  int64_t d = INT64_MAX;
  for (int64_t x : nums) d = std::min<int64_t>(d, x > target ? x - target : target - x);
  return d;
}

std::vector<Child> ChildrenByDistance(const std::vector<int64_t>& nums, int64_t target) {
  std::vector<Child> c = Children(nums);
  std::stable_sort(c.begin(), c.end(), [&](const Child& x, const Child& y) {
    return Distance(x.left, target) < Distance(y.left, target);
  });
  return c;
}

// Calls leaf(path, value) for every complete combination; stops when it returns false.
bool Enumerate(const std::vector<int64_t>& nums, std::vector<CountdownStep>* path,
               const std::function<bool(const std::vector<CountdownStep>&, int64_t)>& leaf) {
  if (nums.size() == 1) return leaf(*path, nums[0]);
  for (const Child& c : Children(nums)) {
    path->push_back(c.step);
    const bool go_on = Enumerate(c.left, path, leaf);
    path->pop_back();
    if (!go_on) return false;
  }
  return true;
}

uint64_t Fnv(uint64_t h, int64_t v) {
  for (int k = 0; k < 8; ++k) h = (h ^ static_cast<uint64_t>((v >> (8 * k)) & 0xff)) * 1099511628211ull;
  return h;
}

// A decimal number of at most 12 digits at text[*at].
bool ParseNumber(std::string_view text, size_t* at, int64_t* v) {
  size_t i = *at;
  int64_t x = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) && i - *at < 12)
    x = x * 10 + (text[i++] - '0');
  if (i == *at || (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])))) return false;
  *at = i;
  *v = x;
  return true;
}

void SkipSpaces(std::string_view text, size_t* at) {
  while (*at < text.size() && text[*at] == ' ') ++*at;
}

// Why a op b is not allowed (ApplyCountdownOp said no).
std::string NotAllowed(int64_t a, char op, int64_t b) {
  const std::string e = std::to_string(a) + op + std::to_string(b);
  if (op == '/') return e + " is not an exact division";
  if (op == '-') return e + " is negative";
  return e + " is too large";
}

CountdownVerdict Reject(std::string reason) {
  CountdownVerdict v;
  v.reason = std::move(reason);
  return v;
}

// Removes one x from `left`; false if there is none.
bool Take(std::vector<int64_t>* left, int64_t x) {
  auto it = std::find(left->begin(), left->end(), x);
  if (it == left->end()) return false;
  left->erase(it);
  return true;
}

}  // namespace

Status CheckCountdownProblem(const CountdownProblem& p) {
  if (p.numbers.size() < static_cast<size_t>(kMinSources) || p.numbers.size() > static_cast<size_t>(kMaxSources))
    return absl::InvalidArgumentError("a Countdown problem has " + std::to_string(kMinSources) + " to " +
                                      std::to_string(kMaxSources) + " numbers, not " + std::to_string(p.numbers.size()));
  for (int64_t x : p.numbers)
    if (x < 1 || x > kMaxNumber)
      return absl::InvalidArgumentError("number " + std::to_string(x) + " is outside [1, 100]");
  if (p.target < kMinTarget || p.target > kMaxTarget)
    return absl::InvalidArgumentError("target " + std::to_string(p.target) + " is outside [10, 999]");
  return absl::OkStatus();
}

bool ApplyCountdownOp(int64_t a, char op, int64_t b, int64_t* result) {
  switch (op) {  // a result beyond int64 (from numbers written by hand) is not allowed either
    case '+': return !__builtin_add_overflow(a, b, result);
    case '*': return !__builtin_mul_overflow(a, b, result);
    case '-':
      if (a < b) return false;
      *result = a - b;
      return true;
    case '/':
      if (b == 0 || a % b != 0) return false;
      *result = a / b;
      return true;
    default: return false;
  }
}

std::vector<std::vector<CountdownStep>> SolveCountdown(const CountdownProblem& p, int64_t limit) {
  std::vector<std::vector<CountdownStep>> out;
  std::set<std::string> seen;
  std::vector<CountdownStep> path;
  Enumerate(p.numbers, &path, [&](const std::vector<CountdownStep>& steps, int64_t value) {
    if (value == p.target && seen.insert(StepsText(steps)).second) out.push_back(steps);
    return limit <= 0 || static_cast<int64_t>(out.size()) < limit;
  });
  return out;
}

bool IsSolvable(const CountdownProblem& p) { return !SolveCountdown(p, 1).empty(); }

std::string StepsText(const std::vector<CountdownStep>& steps) {
  std::string s;
  for (size_t i = 0; i < steps.size(); ++i) s += (i ? "," : "") + StepText(steps[i]);
  return s;
}

std::string StepsExpression(const CountdownProblem& p, const std::vector<CountdownStep>& steps) {
  std::vector<std::pair<int64_t, std::string>> left;
  for (int64_t x : p.numbers) left.push_back({x, std::to_string(x)});
  auto take = [&](int64_t v) {
    for (auto it = left.begin(); it != left.end(); ++it)
      if (it->first == v) {
        std::string e = it->second;
        left.erase(it);
        return e;
      }
    return std::to_string(v);  // not left: the steps are not a solution of p
  };
  for (const CountdownStep& s : steps) {
    const std::string a = take(s.a), b = take(s.b);
    left.push_back({s.result, "(" + a + s.op + b + ")"});
  }
  if (left.size() != 1) return "";
  std::string e = left[0].second;
  if (e.size() >= 2 && e.front() == '(' && e.back() == ')') e = e.substr(1, e.size() - 2);
  return e;
}

namespace {

// Parses one step "a op b=r" at *at (spaces allowed around each part), checks its arithmetic and
// takes a and b from *left, adding r. On failure *error names the problem and *left is unchanged.
bool ParseAndApplyStep(std::string_view text, size_t* at, std::vector<int64_t>* left, CountdownStep* s,
                       std::string* error) {
  auto fail = [&](std::string e) { return *error = std::move(e), false; };
  SkipSpaces(text, at);
  if (!ParseNumber(text, at, &s->a)) return fail("expected a number");
  SkipSpaces(text, at);
  if (*at >= text.size() || std::string_view("+-*/").find(text[*at]) == std::string_view::npos)
    return fail("expected one of + - * /");
  s->op = text[(*at)++];
  SkipSpaces(text, at);
  if (!ParseNumber(text, at, &s->b)) return fail(std::string("expected a number after ") + s->op);
  SkipSpaces(text, at);
  if (*at >= text.size() || text[*at] != '=') return fail("expected =");
  ++*at;
  SkipSpaces(text, at);
  if (!ParseNumber(text, at, &s->result)) return fail("expected the result after =");
  int64_t r;
  if (!ApplyCountdownOp(s->a, s->op, s->b, &r)) return fail(NotAllowed(s->a, s->op, s->b));
  if (r != s->result)
    return fail(std::to_string(s->a) + s->op + std::to_string(s->b) + " is " + std::to_string(r) + ", not " +
                std::to_string(s->result));
  std::vector<int64_t> after = *left;
  if (!Take(&after, s->a)) return fail(std::to_string(s->a) + " is not left");
  if (!Take(&after, s->b)) return fail(std::to_string(s->b) + " is not left");
  after.push_back(r);
  *left = std::move(after);
  return true;
}

}  // namespace

Status ApplyCountdownStep(std::string_view text, std::vector<int64_t>* left, CountdownStep* step) {
  size_t at = 0;
  CountdownStep s;
  std::string error;
  std::vector<int64_t> after = *left;
  if (!ParseAndApplyStep(text, &at, &after, &s, &error)) return absl::InvalidArgumentError(error);
  SkipSpaces(text, &at);
  if (at != text.size()) return absl::InvalidArgumentError("unexpected '" + std::string(1, text[at]) + "' after the step");
  *left = std::move(after);
  if (step) *step = s;
  return absl::OkStatus();
}

StatusOr<std::vector<int64_t>> CountdownNumbersLeft(const CountdownProblem& p, std::string_view steps) {
  std::vector<int64_t> left = p.numbers;
  int step = 1;
  for (size_t comma; (comma = steps.find(',')) != std::string_view::npos; steps.remove_prefix(comma + 1), ++step) {
    Status s = ApplyCountdownStep(steps.substr(0, comma), &left);
    if (!s.ok()) return absl::InvalidArgumentError("step " + std::to_string(step) + ": " + std::string(s.message()));
  }
  return left;
}

CountdownVerdict VerifySteps(const CountdownProblem& p, std::string_view text) {
  CountdownVerdict v;
  std::vector<int64_t> left = p.numbers;
  size_t at = 0;
  SkipSpaces(text, &at);
  if (at == text.size()) return Reject("no steps");
  for (int n = 1;; ++n) {
    CountdownStep s;
    std::string error;
    const std::string where = "step " + std::to_string(n) + ": ";
    if (!ParseAndApplyStep(text, &at, &left, &s, &error)) return Reject(where + error);
    v.steps.push_back(s);
    SkipSpaces(text, &at);
    if (at == text.size()) break;
    if (text[at] != ',') return Reject(where + "unexpected '" + std::string(1, text[at]) + "'");
    ++at;
  }
  if (left.size() != 1) return Reject(std::to_string(left.size()) + " numbers are left, not 1 (every number is used once)");
  if (left[0] != p.target) return Reject("ends at " + std::to_string(left[0]) + ", not " + std::to_string(p.target));
  v.ok = true;
  return v;
}

CountdownVerdict VerifyExpression(const CountdownProblem& p, std::string_view text) {
  // Recursive descent: expr = term {(+|-) term}; term = factor {(*|/) factor};
  // factor = number | "(" expr ")". Each operation becomes a step.
  CountdownVerdict v;
  size_t at = 0;
  std::string error;
  std::vector<int64_t> used;
  std::function<bool(int64_t*, int)> expr, term, factor;
  auto binary = [&](int64_t a, char op, int64_t b, int64_t* r) {
    if (!ApplyCountdownOp(a, op, b, r)) {
      error = NotAllowed(a, op, b);
      return false;
    }
    v.steps.push_back({a, b, *r, op});
    return true;
  };
  factor = [&](int64_t* x, int depth) {
    if (depth > 64) return error = "nested too deeply", false;
    SkipSpaces(text, &at);
    if (at < text.size() && text[at] == '(') {
      ++at;
      if (!expr(x, depth + 1)) return false;
      SkipSpaces(text, &at);
      if (at >= text.size() || text[at] != ')') return error = "expected ) at character " + std::to_string(at + 1), false;
      ++at;
      return true;
    }
    if (!ParseNumber(text, &at, x)) return error = "expected a number at character " + std::to_string(at + 1), false;
    used.push_back(*x);
    return true;
  };
  term = [&](int64_t* x, int depth) {
    if (!factor(x, depth)) return false;
    for (;;) {
      SkipSpaces(text, &at);
      if (at >= text.size() || (text[at] != '*' && text[at] != '/')) return true;
      const char op = text[at++];
      int64_t y;
      if (!factor(&y, depth) || !binary(*x, op, y, x)) return false;
    }
  };
  expr = [&](int64_t* x, int depth) {
    if (!term(x, depth)) return false;
    for (;;) {
      SkipSpaces(text, &at);
      if (at >= text.size() || (text[at] != '+' && text[at] != '-')) return true;
      const char op = text[at++];
      int64_t y;
      if (!term(&y, depth) || !binary(*x, op, y, x)) return false;
    }
  };
  SkipSpaces(text, &at);
  if (at == text.size()) return Reject("no expression");
  int64_t value = 0;
  if (!expr(&value, 0)) return Reject(error);
  SkipSpaces(text, &at);
  if (at != text.size()) return Reject("unexpected '" + std::string(1, text[at]) + "' at character " + std::to_string(at + 1));
  std::vector<int64_t> want = p.numbers, got = used;
  std::sort(want.begin(), want.end());
  std::sort(got.begin(), got.end());
  if (want != got) return Reject("uses " + Join(got) + ", not each of " + Join(want) + " once");
  if (value != p.target) return Reject("is " + std::to_string(value) + ", not " + std::to_string(p.target));
  v.ok = true;
  return v;
}

std::vector<CountdownProblem> GenerateCountdown(int64_t count, int sources, uint64_t seed) {
  Random rng(seed);
  std::vector<CountdownProblem> out;
  while (static_cast<int64_t>(out.size()) < count) {
    CountdownProblem p;
    for (int i = 0; i < sources; ++i) p.numbers.push_back(1 + static_cast<int64_t>(rng.UniformInt(kMaxNumber)));
    // The targets some combination reaches, one of them uniformly.
    std::set<int64_t> reach;
    std::vector<CountdownStep> path;
    Enumerate(p.numbers, &path, [&](const std::vector<CountdownStep>&, int64_t v) {
      if (v >= kMinTarget && v <= kMaxTarget) reach.insert(v);
      return true;
    });
    if (reach.empty()) continue;
    auto it = reach.begin();
    std::advance(it, static_cast<long>(rng.UniformInt(reach.size())));
    p.target = *it;
    out.push_back(std::move(p));
  }
  return out;
}

int CountdownSplit(const CountdownProblem& p, int test_percent) {
  std::vector<int64_t> sorted = p.numbers;
  std::sort(sorted.begin(), sorted.end());
  uint64_t h = 14695981039346656037ull;
  for (int64_t x : sorted) h = Fnv(h, x);
  h = Fnv(h, -1);
  h = Fnv(h, p.target);
  return static_cast<int>(h % 100) < test_percent ? 1 : 0;
}

std::string CountdownPrompt(const CountdownProblem& p) { return Join(p.numbers) + ">" + std::to_string(p.target) + ":"; }

StatusOr<std::string> OptimalTrace(const CountdownProblem& p) {
  // The first solution depth-first in the heuristic's order: the path the search streams find.
  std::vector<CountdownStep> path, found;
  std::function<bool(const std::vector<int64_t>&)> dfs = [&](const std::vector<int64_t>& nums) {
    if (nums.size() == 1) return nums[0] == p.target;
    for (const Child& c : ChildrenByDistance(nums, p.target)) {
      path.push_back(c.step);
      if (dfs(c.left)) return true;
      path.pop_back();
    }
    return false;
  };
  if (!dfs(p.numbers)) return absl::NotFoundError(CountdownPrompt(p) + " has no solution");
  return CountdownPrompt(p) + StepsText(path) + ".";
}

StatusOr<std::string> SearchTrace(const CountdownProblem& p, SearchOrder order, int64_t max_chars, int beam,
                                  bool leaf_target) {
  std::string t = CountdownPrompt(p);
  const size_t limit = t.size() + static_cast<size_t>(std::max<int64_t>(0, max_chars));
  // A node: its step and the numbers it leaves; a leaf, with leaf_target, its step and the target;
  // a systematic stream's leaf otherwise its step alone.
  auto node = [&](const Child& c) {
    if (c.left.size() == 1 && leaf_target) return StepText(c.step) + ">" + std::to_string(p.target);
    if (c.left.size() == 1 && order == SearchOrder::kSystematic) return StepText(c.step);
    return StepText(c.step) + "[" + Join(c.left) + "]";
  };
  std::vector<CountdownStep> solution;
  if (order != SearchOrder::kBreadthFirst) {
    const bool heuristic = order == SearchOrder::kDepthFirst;
    std::vector<CountdownStep> path;
    std::function<bool(const std::vector<int64_t>&)> dfs = [&](const std::vector<int64_t>& nums) {
      std::vector<Child> children = heuristic ? ChildrenByDistance(nums, p.target) : Children(nums);
      // Two numbers left: the closest result is the only one that can be the target.
      if (heuristic && nums.size() == 2 && children.size() > 1) children.resize(1);
      for (const Child& c : children) {
        if (t.size() > limit) return false;
        t += node(c);
        path.push_back(c.step);
        if (c.left.size() == 1) {
          if (c.left[0] == p.target) return solution = path, true;
          t += "!";
        } else if (dfs(c.left)) {
          return true;
        }
        path.pop_back();
      }
      t += "<";
      return false;
    };
    if (!dfs(p.numbers) || t.size() > limit)
      return absl::NotFoundError(std::string(heuristic ? "depth-first" : "systematic") + " search finds no solution of " +
                                 CountdownPrompt(p) + " within " + std::to_string(max_chars) + " characters");
  } else {
    struct Node {
      std::vector<int64_t> nums;
      std::vector<CountdownStep> path;
    };
    std::vector<Node> frontier = {{p.numbers, {}}};
    bool found = false;
    while (!found && !frontier.empty() && frontier[0].nums.size() > 1) {
      std::vector<std::pair<int64_t, Node>> next;
      for (const Node& n : frontier) {
        std::vector<Child> children = ChildrenByDistance(n.nums, p.target);
        if (n.nums.size() == 2 && children.size() > 1) children.resize(1);  // as depth-first
        for (const Child& c : children) {
          t += node(c);
          Node child{c.left, n.path};
          child.path.push_back(c.step);
          if (c.left.size() == 1) {
            if (c.left[0] == p.target) {
              solution = child.path;
              found = true;
              break;
            }
            t += "!";
          }
          next.push_back({Distance(c.left, p.target), std::move(child)});
          if (t.size() > limit) break;
        }
        if (found || t.size() > limit) break;
      }
      if (found || t.size() > limit) break;
      std::stable_sort(next.begin(), next.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      frontier.clear();
      for (size_t i = 0; i < next.size() && static_cast<int>(i) < beam; ++i) frontier.push_back(std::move(next[i].second));
      t += "|";
    }
    if (!found || t.size() > limit)
      return absl::NotFoundError("breadth-first search (beam " + std::to_string(beam) + ") finds no solution of " +
                                 CountdownPrompt(p) + " within " + std::to_string(max_chars) + " characters");
  }
  return t + "#" + StepsText(solution) + ".";
}

const std::string& CountdownVocabulary() {
  static const std::string* v = new std::string(std::string(1, '\0') + "0123456789+-*/=[] ,>:!<#.|");
  return *v;
}

std::string ReverseDigitRuns(std::string_view text) {
  std::string out(text);
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  for (size_t i = 0; i < out.size();) {
    if (!digit(out[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < out.size() && digit(out[j])) ++j;
    std::reverse(out.begin() + static_cast<std::ptrdiff_t>(i), out.begin() + static_cast<std::ptrdiff_t>(j));
    i = j;
  }
  return out;
}

std::string_view SolutionPart(std::string_view text) {
  size_t from = text.rfind('#');
  if (from == std::string_view::npos) from = text.find(':');
  if (from == std::string_view::npos) return {};
  std::string_view rest = text.substr(from + 1);
  const size_t dot = rest.find('.');
  return dot == std::string_view::npos ? rest : rest.substr(0, dot);
}

}  // namespace distbelief
