#include "distbelief/workloads/reasoning/countdown.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <set>

namespace distbelief {
namespace {

CountdownProblem P(std::vector<int64_t> numbers, int64_t target) { return {std::move(numbers), target}; }

TEST(Countdown, OperationsAreExactAndNonNegative) {
  int64_t r = 0;
  EXPECT_TRUE(ApplyCountdownOp(7, '-', 7, &r));
  EXPECT_EQ(r, 0);
  EXPECT_FALSE(ApplyCountdownOp(3, '-', 7, &r));
  EXPECT_FALSE(ApplyCountdownOp(7, '/', 2, &r));
  EXPECT_FALSE(ApplyCountdownOp(7, '/', 0, &r));
  EXPECT_TRUE(ApplyCountdownOp(0, '/', 7, &r));
  EXPECT_EQ(r, 0);
  EXPECT_FALSE(ApplyCountdownOp(7, 'x', 2, &r));
  // Found by fuzz/countdown_fuzz: numbers written by hand can overflow int64.
  EXPECT_FALSE(ApplyCountdownOp(int64_t{164875876171776}, '*', 1580544, &r));
  EXPECT_FALSE(ApplyCountdownOp(INT64_MAX, '+', 1, &r));
  EXPECT_NE(VerifyExpression({{1, 2}, 10}, "999999999999*999999999999*999999999999").reason.find("too large"),
            std::string::npos);
}

TEST(Countdown, SolverFindsEverySolutionOnceAndOnlySolutions) {
  EXPECT_EQ(SolveCountdown(P({2, 3}, 6)).size(), 1u);  // 3*2
  EXPECT_EQ(SolveCountdown(P({4, 2}, 2)).size(), 2u);  // 4-2, 4/2
  EXPECT_TRUE(SolveCountdown(P({1, 1, 1}, 10)).empty());
  EXPECT_FALSE(IsSolvable(P({1, 1, 1}, 10)));
  // Every solution of 4-number problems verifies, as steps and as an expression, and they are all
  // different.
  size_t solutions = 0;
  for (const CountdownProblem& p : GenerateCountdown(20, 4, 11)) {
    const auto all = SolveCountdown(p);
    solutions += all.size();
    std::set<std::string> texts;
    for (const auto& s : all) {
      const std::string text = StepsText(s);
      EXPECT_TRUE(texts.insert(text).second) << text;
      const CountdownVerdict v = VerifySteps(p, text);
      EXPECT_TRUE(v.ok) << text << ": " << v.reason;
      const std::string e = StepsExpression(p, s);
      const CountdownVerdict ve = VerifyExpression(p, e);
      EXPECT_TRUE(ve.ok) << e << ": " << ve.reason;
    }
  }
  EXPECT_GT(solutions, 40u);
  // Exhaustive cross-check on small problems: the solver finds a solution exactly when some
  // expression over the numbers (every split into two groups, recursively) reaches the target.
  std::function<std::set<int64_t>(std::vector<int64_t>)> values = [&](std::vector<int64_t> v) {
    if (v.size() == 1) return std::set<int64_t>{v[0]};
    std::set<int64_t> out;
    const int n = static_cast<int>(v.size());
    for (int mask = 1; mask < (1 << n) - 1; ++mask) {
      std::vector<int64_t> a, b;
      for (int i = 0; i < n; ++i) (mask >> i & 1 ? a : b).push_back(v[i]);
      for (int64_t x : values(a))
        for (int64_t y : values(b))
          for (char op : {'+', '-', '*', '/'}) {
            int64_t r;
            if (ApplyCountdownOp(x, op, y, &r)) out.insert(r);
          }
    }
    return out;
  };
  for (const CountdownProblem& q : {P({3, 8, 11}, 41), P({2, 9, 13, 5}, 117), P({6, 6, 1}, 37), P({100, 1, 50, 7}, 998)}) {
    const auto reach = values(q.numbers);
    for (int64_t t = 10; t <= 200; t += 3) {
      CountdownProblem r = q;
      r.target = t;
      EXPECT_EQ(IsSolvable(r), reach.count(t) > 0) << CountdownPrompt(r);
    }
  }
}

TEST(Countdown, VerifierNamesWhatIsWrong) {
  const CountdownProblem p = P({53, 21, 3, 4}, 100);
  EXPECT_TRUE(VerifySteps(p, "53-21=32,32*3=96,96+4=100").ok);
  EXPECT_TRUE(VerifySteps(p, " 53 - 21 = 32 , 3 * 32 = 96 , 4 + 96 = 100 ").ok);
  auto reason = [&](std::string_view t) { return VerifySteps(p, t).reason; };
  EXPECT_EQ(reason(""), "no steps");
  EXPECT_NE(reason("53-21=32,32*3=96").find("2 numbers are left"), std::string::npos);
  EXPECT_NE(reason("53-21=31,31*3=93,93+4=97").find("is 32, not 31"), std::string::npos);
  EXPECT_NE(reason("53-21=32,32*3=96,96+5=101").find("5 is not left"), std::string::npos);
  EXPECT_NE(reason("53-21=32,32-96=0").find("negative"), std::string::npos);
  EXPECT_NE(reason("53/21=2").find("exact"), std::string::npos);
  EXPECT_NE(reason("53+21=74,74+3=77,77+4=81").find("ends at 81, not 100"), std::string::npos);
  EXPECT_NE(reason("53-21=32;").find("unexpected"), std::string::npos);
  EXPECT_NE(reason("hello").find("expected a number"), std::string::npos);
  EXPECT_NE(reason("99999999999999999999+1=2").find("expected"), std::string::npos);
  // Using a number twice when it appears once.
  EXPECT_NE(reason("53-21=32,53-3=50").find("53 is not left"), std::string::npos);

  // One step on the numbers left: taken and added on success, untouched on failure.
  std::vector<int64_t> left = p.numbers;
  CountdownStep st;
  ASSERT_TRUE(ApplyCountdownStep(" 53 - 21 = 32 ", &left, &st).ok());
  EXPECT_EQ(left, (std::vector<int64_t>{3, 4, 32}));
  EXPECT_EQ(st, (CountdownStep{53, 21, 32, '-'}));
  for (const char* bad : {"53-21=32", "32*3=97", "32*3=96,", "32*3", "", "3/4=0", "4-32=0", "32 * 3 = 96 x"}) {
    const std::vector<int64_t> before = left;
    EXPECT_FALSE(ApplyCountdownStep(bad, &left).ok()) << bad;
    EXPECT_EQ(left, before) << bad;
  }
  EXPECT_NE(std::string(ApplyCountdownStep("53-21=32", &left).message()).find("53 is not left"), std::string::npos);
  EXPECT_NE(std::string(ApplyCountdownStep("32*3=96 x", &left).message()).find("unexpected 'x'"), std::string::npos);

  EXPECT_TRUE(VerifyExpression(p, "((53-21)*3)+4").ok);
  EXPECT_TRUE(VerifyExpression(p, "(53 - 21) * 3 + 4").ok);
  EXPECT_NE(VerifyExpression(p, "(53-21)*3").reason.find("not each of"), std::string::npos);
  EXPECT_NE(VerifyExpression(p, "(53-21)*3+4+4-4").reason.find("not each of"), std::string::npos);
  EXPECT_NE(VerifyExpression(p, "3-4+53+21").reason.find("negative"), std::string::npos);
  EXPECT_NE(VerifyExpression(p, "53/3*21+4").reason.find("exact"), std::string::npos);
  EXPECT_NE(VerifyExpression(p, "53+21+3+4").reason.find("is 81"), std::string::npos);
  EXPECT_NE(VerifyExpression(p, "(53-21)*(3+4").reason.find("expected )"), std::string::npos);
  EXPECT_NE(VerifyExpression(p, "53x21").reason.find("unexpected 'x'"), std::string::npos);
  EXPECT_EQ(VerifyExpression(p, "").reason, "no expression");
  EXPECT_NE(VerifyExpression(p, std::string(5000, '(') + "1").reason.find("nested too deeply"), std::string::npos);
}

TEST(Countdown, NumbersLeftFollowThePartialSolutionAndNameItsFirstBadStep) {
  const CountdownProblem p{{25, 3, 4, 7}, 97};
  auto none = CountdownNumbersLeft(p, "");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, p.numbers);
  auto two = CountdownNumbersLeft(p, "25*4=100,100-3=97,7+9");  // text after the last ',' is not a step yet
  ASSERT_TRUE(two.ok()) << two.status();
  std::vector<int64_t> left = *two;
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<int64_t>{7, 97}));
  auto reused = CountdownNumbersLeft(p, "25*4=100,25+3=28,");
  ASSERT_FALSE(reused.ok());
  EXPECT_NE(std::string(reused.status().message()).find("step 2"), std::string::npos) << reused.status();
  auto wrong = CountdownNumbersLeft(p, "25*4=99,");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(std::string(wrong.status().message()).find("step 1"), std::string::npos) << wrong.status();
}

TEST(Countdown, ProblemsAreCheckedAgainstTheTaskRanges) {
  EXPECT_TRUE(CheckCountdownProblem(P({1, 100, 50}, 999)).ok());
  EXPECT_FALSE(CheckCountdownProblem(P({1}, 10)).ok());
  EXPECT_FALSE(CheckCountdownProblem(P({1, 2, 3, 4, 5, 6, 7}, 10)).ok());
  EXPECT_NE(CheckCountdownProblem(P({0, 5, 6}, 30)).message().find("number 0"), std::string::npos);
  EXPECT_NE(CheckCountdownProblem(P({101, 5, 6}, 30)).message().find("101"), std::string::npos);
  EXPECT_NE(CheckCountdownProblem(P({1, 5, 6}, 9)).message().find("target 9"), std::string::npos);
  EXPECT_NE(CheckCountdownProblem(P({1, 5, 6}, 1000)).message().find("target 1000"), std::string::npos);
}

TEST(Countdown, GeneratorIsSeededSolvableAndSplitsByProblem) {
  const auto a = GenerateCountdown(300, 4, 7), b = GenerateCountdown(300, 4, 7), c = GenerateCountdown(300, 4, 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::set<int64_t> targets;
  int test = 0;
  for (const auto& p : a) {
    EXPECT_TRUE(CheckCountdownProblem(p).ok()) << CountdownPrompt(p);
    EXPECT_EQ(p.numbers.size(), 4u);
    EXPECT_TRUE(IsSolvable(p)) << CountdownPrompt(p);
    targets.insert(p.target);
    // The split depends on the problem, not on the order of its numbers.
    CountdownProblem r = p;
    std::reverse(r.numbers.begin(), r.numbers.end());
    EXPECT_EQ(CountdownSplit(p, 20), CountdownSplit(r, 20));
    test += CountdownSplit(p, 20);
  }
  EXPECT_GT(targets.size(), 150u) << "targets spread over [10, 999]";
  EXPECT_GT(test, 30);
  EXPECT_LT(test, 90);
}

TEST(Countdown, TracesEndInAVerifiedSolutionInTheVocabulary) {
  const std::string& vocab = CountdownVocabulary();
  int with_dead_ends = 0, found = 0;
  for (const auto& p : GenerateCountdown(60, 3, 3)) {
    auto opt = OptimalTrace(p);
    ASSERT_TRUE(opt.ok()) << opt.status();
    EXPECT_EQ(opt->rfind(CountdownPrompt(p), 0), 0u);
    EXPECT_TRUE(VerifySteps(p, SolutionPart(*opt)).ok) << *opt;
    for (SearchOrder order : {SearchOrder::kDepthFirst, SearchOrder::kBreadthFirst}) {
      auto t = SearchTrace(p, order, 400, 5);
      if (!t.ok()) {
        EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
        continue;
      }
      ++found;
      EXPECT_LE(t->size(), CountdownPrompt(p).size() + 400 + 40);
      EXPECT_EQ(t->back(), '.');
      const CountdownVerdict v = VerifySteps(p, SolutionPart(*t));
      EXPECT_TRUE(v.ok) << *t << ": " << v.reason;
      with_dead_ends += t->find('!') != std::string::npos;
      // Two numbers left: one result written, the closest; after a depth-first dead end, back up.
      if (order == SearchOrder::kDepthFirst) {
        for (size_t at = t->find('!'); at != std::string::npos; at = t->find('!', at + 1)) {
          EXPECT_EQ(t->at(at + 1), '<') << *t;
        }
      }
      for (char ch : *t) EXPECT_NE(vocab.find(ch), std::string::npos) << "'" << ch << "' in " << *t;
    }
  }
  EXPECT_GT(found, 80) << "of 120 searches of 3-number problems within 400 characters";
  EXPECT_GT(with_dead_ends, 40) << "streams of search show dead ends";
  // With room enough, depth-first search solves every solvable problem.
  for (const auto& p : GenerateCountdown(5, 4, 4)) EXPECT_TRUE(SearchTrace(p, SearchOrder::kDepthFirst, 1 << 20).ok());
  EXPECT_EQ(SearchTrace(P({1, 1, 1}, 10), SearchOrder::kDepthFirst, 10000).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(OptimalTrace(P({1, 1, 1}, 10)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(SolutionPart("3 4>12:4*3=12."), "4*3=12");
  EXPECT_EQ(SolutionPart("3 4>12:4+3=7[7]!4*3=12[12]#4*3=12."), "4*3=12");
  EXPECT_EQ(SolutionPart("no prompt"), "");
}

TEST(Countdown, SystematicStreamsTryEveryStepInOrder) {
  // Pairs in order, larger first, + - * / (4/5 and 5/4 are not exact, so not tried); with
  // leaf_target a leaf is its step and the target beside its result.
  EXPECT_EQ(*SearchTrace(P({2, 3, 4}, 24), SearchOrder::kSystematic, 1000, 3, true),
            "2 3 4>24:3+2=5[4 5]5+4=9>24!5-4=1>24!5*4=20>24!<3-2=1[4 1]4+1=5>24!4-1=3>24!4*1=4>24!4/1=4>24!<"
            "3*2=6[4 6]6+4=10>24!6-4=2>24!6*4=24>24#3*2=6,6*4=24.");
  EXPECT_EQ(*SearchTrace(P({2, 3, 4}, 24), SearchOrder::kSystematic, 1000),
            "2 3 4>24:3+2=5[4 5]5+4=9!5-4=1!5*4=20!<3-2=1[4 1]4+1=5!4-1=3!4*1=4!4/1=4!<"
            "3*2=6[4 6]6+4=10!6-4=2!6*4=24#3*2=6,6*4=24.");
  // The heuristic's order with the target beside each leaf: the closest result of two numbers only.
  EXPECT_EQ(*SearchTrace(P({2, 3, 4}, 24), SearchOrder::kDepthFirst, 1000, 3, true),
            "2 3 4>24:4*3=12[2 12]12*2=24>24#4*3=12,12*2=24.");
  EXPECT_EQ(SearchTrace(P({2, 3, 4}, 24), SearchOrder::kSystematic, 40).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(SearchTrace(P({1, 1, 1}, 10), SearchOrder::kSystematic, 1 << 20).status().code(),
            absl::StatusCode::kNotFound);
  // With room enough it solves every solvable problem, and finds the solver's first solution.
  for (const auto& p : GenerateCountdown(40, 3, 11)) {
    auto t = SearchTrace(p, SearchOrder::kSystematic, 1 << 20);
    ASSERT_TRUE(t.ok()) << t.status();
    auto all = SolveCountdown(p, 1);
    ASSERT_FALSE(all.empty());
    EXPECT_TRUE(VerifySteps(p, SolutionPart(*t)).ok) << *t;
    EXPECT_EQ(std::string(SolutionPart(*t)), StepsText(all[0])) << *t;
    EXPECT_EQ(t->find('|'), std::string::npos);
  }
}

TEST(Countdown, DigitRunsTurnRoundAndBack) {
  EXPECT_EQ(ReverseDigitRuns("12 5 70>605:12*5=60[60 70]!<"), "21 5 07>506:21*5=06[06 07]!<");
  EXPECT_EQ(ReverseDigitRuns("100"), "001");
  EXPECT_EQ(ReverseDigitRuns(""), "");
  EXPECT_EQ(ReverseDigitRuns("#,."), "#,.");
  for (const auto& p : GenerateCountdown(20, 4, 9)) {
    const std::string t = *SearchTrace(p, SearchOrder::kDepthFirst, 1 << 16);
    const std::string r = ReverseDigitRuns(t);
    EXPECT_EQ(r.size(), t.size());
    EXPECT_EQ(ReverseDigitRuns(r), t);
    // Only the digits move: every other character stays where it was.
    for (size_t i = 0; i < t.size(); ++i)
      if (!std::isdigit(static_cast<unsigned char>(t[i]))) EXPECT_EQ(r[i], t[i]) << t;
  }
}

}  // namespace
}  // namespace distbelief
