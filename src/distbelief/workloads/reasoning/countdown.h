// Countdown (the task of Stream of Search, Gandhi et al. 2024): combine every source number exactly
// once with + - * / to reach the target. Exact division only, no negative intermediate (0 is
// allowed, dividing by it is not). A solution is written as steps, one operation each, on the
// numbers still left: "53-21=32,32*3=96,96+4=100" (an operation takes two numbers left, removes
// them and leaves its result; after the last step one number is left: the target). The same
// solution as one expression: "((53-21)*3)+4".
//
// Everything here is exact and deterministic: the solver enumerates every solution, the verifier
// checks a written one (steps or an expression), the generator draws solvable problems from a
// seed, and the trace writers turn the solver's search into training text for a policy
// (optimal paths, or streams of search with dead ends and backtracking).
// Thread-safe: free functions on values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "distbelief/base/status.h"

namespace distbelief {

struct CountdownProblem {
  std::vector<int64_t> numbers;  // the source numbers, in the order given
  int64_t target = 0;
  bool operator==(const CountdownProblem&) const = default;
};

// The ranges of the task: 3-5 (kMaxSources) numbers from 1-100, a target from 10-999. Inputs from
// outside (`distbelief search`) are checked against them: kInvalidArgument naming what is wrong.
inline constexpr int kMinSources = 2, kMaxSources = 6;
Status CheckCountdownProblem(const CountdownProblem& p);

// One operation: a op b = result, with a >= b for - and / (no negative results), exact /.
struct CountdownStep {
  int64_t a = 0, b = 0, result = 0;
  char op = '+';  // + - * /
  bool operator==(const CountdownStep&) const = default;
};
// The result of a op b, or false when the operation is not allowed (negative, inexact, / 0).
bool ApplyCountdownOp(int64_t a, char op, int64_t b, int64_t* result);

// Every solution (sequences of steps, one per source number but one), each once: operand pairs are
// ordered (larger first) so a + b and b + a count once, and steps are taken on the multiset of
// numbers left. `limit` stops the enumeration early (0: all).
std::vector<std::vector<CountdownStep>> SolveCountdown(const CountdownProblem& p, int64_t limit = 0);
bool IsSolvable(const CountdownProblem& p);

// "53-21=32,32*3=96,96+4=100"; and "((53-21)*3)+4" for the same steps (each step's operands are
// the expressions that made them, or source numbers).
std::string StepsText(const std::vector<CountdownStep>& steps);
std::string StepsExpression(const CountdownProblem& p, const std::vector<CountdownStep>& steps);

// The verdict on a written solution. Never fails: any text gets a verdict and, when rejected, the
// reason ("no steps", "step 2: 7 is not left", "3/2 is not exact", "ends at 95, not 100", ...).
struct CountdownVerdict {
  bool ok = false;
  std::string reason;  // "" when ok
  std::vector<CountdownStep> steps;  // as parsed (ok: the whole solution)
};
CountdownVerdict VerifySteps(const CountdownProblem& p, std::string_view text);
// One step, the whole of `text` ("53-21=32", spaces allowed), taken on the numbers `left`: on
// success a and b are taken from *left and the result added (and *step set when given); else
// kInvalidArgument naming what is wrong (as VerifySteps's reasons) and *left unchanged.
Status ApplyCountdownStep(std::string_view text, std::vector<int64_t>* left, CountdownStep* step = nullptr);
// The numbers left after a partial solution: `steps` is steps each ended by ',' ("a op b=c,d op
// e=f,"; text after the last ',' is ignored), taken in turn from the problem's numbers. Fails,
// naming the step, at the first step that is not legal.
StatusOr<std::vector<int64_t>> CountdownNumbersLeft(const CountdownProblem& p, std::string_view steps);
// An infix expression over the source numbers with + - * / and parentheses (x and the Unicode
// signs are not accepted): each source number used exactly once, every intermediate value exact
// and non-negative, the value the target.
CountdownVerdict VerifyExpression(const CountdownProblem& p, std::string_view text);

// Solvable problems drawn from a seed: `sources` numbers uniform in [1, 100], a target uniform in
// [10, 999] that some combination reaches (drawn again until one does). Deterministic per seed.
std::vector<CountdownProblem> GenerateCountdown(int64_t count, int sources, uint64_t seed);
// Which split a problem belongs to, by a hash of its sorted numbers and target: the same problem
// always lands in the same split, whatever order its numbers came in. 0 = train, 1 = test
// (test_percent of problems).
int CountdownSplit(const CountdownProblem& p, int test_percent);

// Training text for a policy, character by character (vocabulary: CountdownVocabulary()).
// The prompt: "12 5 7 3>60:" (numbers, '>', target, ':'), then the policy's text, then '.' ends it.
std::string CountdownPrompt(const CountdownProblem& p);
// The optimal path: the prompt then the first solution's steps: "12 5 7 3>60:12*5=60,...=60."
// kNotFound if the problem has no solution.
StatusOr<std::string> OptimalTrace(const CountdownProblem& p);
// A stream of search (Gandhi et al. 2024): the solver's own exploration written out, dead ends
// and backtracking included, then the solution found. Each node visited is written as its step
// and the numbers it leaves, "12*5=60[60 7 3]"; a leaf that is not the target is followed by "!"
// (a dead end). Depth-first tries children closest to the target first (the smallest distance of
// a number left to the target) and writes "<" when it goes back up from a node whose children are
// exhausted; with two numbers left only the closest result is written (children come closest
// first, so if it is not the target none is); breadth-first expands, depth by depth, the `beam`
// nodes closest to the target, "|" between depths. When a solution is found the stream ends
// with "#", the solution's steps and ".". Systematic is depth-first with no heuristic: every child
// in the fixed order of the numbers left (pairs in order, larger first, then + - * /; an equal pair
// once), every result of the last two numbers written (a leaf as its step alone), so each next step
// follows from the text by a local rule. With `leaf_target` a leaf (in any order) is written as its
// step and the target beside its result ("3+57=60>61!", as Stream of Search writes "60,61
// unequal"), so the goal test compares two neighbouring numbers. kNotFound when the search,
// limited to `max_chars` characters of trace, finds none (such traces are not training data).
enum class SearchOrder { kDepthFirst, kBreadthFirst, kSystematic };
StatusOr<std::string> SearchTrace(const CountdownProblem& p, SearchOrder order, int64_t max_chars, int beam = 3,
                                  bool leaf_target = false);
// Every maximal run of digits written backwards: "12*5=60" <-> "21*5=06" (its own inverse). A
// policy with countdown.digits = "reversed" reads and writes numbers least-significant digit first,
// the order in which carries are computed (which helps small transformers' arithmetic: Lee et al.
// 2023, "Teaching Arithmetic to Small Transformers"); its text goes through this at the edge.
std::string ReverseDigitRuns(std::string_view text);
// The characters the policy writes and reads, in id order (id 0 pads).
const std::string& CountdownVocabulary();
// The solution part of a policy's text: after the last '#' of a stream (or after the prompt's ':'
// for an optimal path), up to the first '.' after it (or the end).
std::string_view SolutionPart(std::string_view text);

}  // namespace distbelief
