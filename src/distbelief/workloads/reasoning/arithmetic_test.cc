#include "distbelief/workloads/reasoning/arithmetic.h"

#include <gtest/gtest.h>

#include "distbelief/workloads/reasoning/countdown_lab.h"

namespace distbelief {
namespace {

TEST(Multiply, TheSolverWritesLongMultiplicationAndTheVerifierAcceptsIt) {
  const MultiplyProblem p{4821, 307};
  EXPECT_EQ(MultiplyPrompt(p), "4821*307=");
  EXPECT_EQ(SolveMultiply(p), "4821*7=33747,4821*300=1446300,33747+1446300=1480047.");
  const MultiplyVerdict v = VerifyMultiply(p, SolveMultiply(p));
  EXPECT_TRUE(v.ok) << v.reason;
  EXPECT_EQ(v.answer, 4821 * 307);
  // One non-zero digit: one step. The order of the place terms and of a sum's operands is free.
  EXPECT_TRUE(VerifyMultiply({12, 5000}, "12*5000=60000.").ok);
  EXPECT_TRUE(VerifyMultiply(p, "4821*300=1446300,4821*7=33747,33747+1446300=1480047").ok);
  for (int digits = 1; digits <= kMaxMultiplyDigits; ++digits)
    for (const MultiplyProblem& q : GenerateMultiply(50, digits, 7 + digits)) {
      ASSERT_TRUE(CheckMultiplyProblem(q).ok()) << q.a << "*" << q.b;
      const MultiplyVerdict w = VerifyMultiply(q, SolveMultiply(q));
      ASSERT_TRUE(w.ok) << MultiplyPrompt(q) << SolveMultiply(q) << ": " << w.reason;
      ASSERT_EQ(w.answer, q.a * q.b);
      // Every character is one the Countdown policy can write.
      for (char c : MultiplyPrompt(q) + SolveMultiply(q)) ASSERT_GE(CountdownId(c), 1) << c;
    }
  EXPECT_EQ(GenerateMultiply(20, 4, 3), GenerateMultiply(20, 4, 3));
  EXPECT_NE(GenerateMultiply(20, 4, 3), GenerateMultiply(20, 4, 4));
  EXPECT_TRUE(GenerateMultiply(5, 0, 1).empty());
}

TEST(Multiply, TheVerifierRejectsWrongStepsEvenWithTheRightAnswer) {
  const MultiplyProblem p{4821, 307};
  struct Case {
    const char* text;
    const char* reason;  // a part of the reason
  } cases[] = {
      {"", "no steps"},
      {"1480047.", "not x*y=z"},                                              // the answer alone
      {"4821*307=1480047.", "not a place term"},                              // skipped the steps
      {"4821*7=33747,4821*300=1446301,33747+1446301=1480048.", "is not 1446301"},
      {"4821*7=33747,4821*300=1446300,33747+1446300=1480048.", "is not 1480048"},
      {"4821*7=33747,4821*7=33747,33747+33747=67494.", "not a place term"},  // a term twice
      {"4821*7=33747,33747+33747=67494.", "is not an unused earlier result"},
      {"4821*7=33747.", "300 of 307 was never multiplied"},
      {"4821*7=33747,4821*300=1446300.", "2 results are left"},
      {"4821*7=33747,4821*300=1446300,33747+1446300=1480047,", "not x*y=z"},  // a trailing comma
      {"4820*7=33740,4820*300=1446000,33740+1446000=1479740.", "does not multiply 4821"},
      {"4821*7=33747,4821*300=1446300,33747+1446300=1480047x.", "not a number"},
      {"4821*7=-33747.", "not a number"},
      {"4821*7=99999999999999999999.", "not a number"},                       // 20 digits
      {"4821*7=33747,,", "not x*y=z"},
      {"=,*,+,.", "not x*y=z"},
      {"*=,4821*7=33747.", "not a number"},
  };
  for (const Case& c : cases) {
    const MultiplyVerdict v = VerifyMultiply(p, c.text);
    EXPECT_FALSE(v.ok) << c.text;
    EXPECT_NE(v.reason.find(c.reason), std::string::npos) << c.text << ": " << v.reason;
  }
  // Out-of-range problems: a named error, and any text is rejected rather than computed.
  EXPECT_NE(CheckMultiplyProblem({0, 5}).message().find("a must be"), std::string_view::npos);
  EXPECT_NE(CheckMultiplyProblem({5, 1000000000}).message().find("b must be"), std::string_view::npos);
  EXPECT_FALSE(VerifyMultiply({5, 1000000000}, "5*1000000000=5000000000.").ok);
}

}  // namespace
}  // namespace distbelief
