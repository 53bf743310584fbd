// The reasoning lab's second verifiable task: multi-digit multiplication written as steps (the
// scratchpad of long multiplication). The problem "4821*307=" is solved by one partial product per
// non-zero digit of the multiplier, lowest place first, then a running sum:
//   "4821*7=33747,4821*300=1446300,33747+1446300=1480047."
// A written solution is accepted only when every step is true arithmetic and the steps are a long
// multiplication of this problem: each product step multiplies the multiplicand by one place term
// of the multiplier (a digit times a power of ten), every non-zero place term exactly once; each
// sum step adds two earlier results not used before; and one result is left, the product. A
// right final number reached by a wrong or skipped step is rejected, as a process verifier
// should. The text uses only characters of the Countdown policy's vocabulary, so the same GPT can
// learn both tasks.
//
// Everything is exact and deterministic; free functions on values (thread-safe).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "distbelief/base/status.h"

namespace distbelief {

struct MultiplyProblem {
  int64_t a = 0, b = 0;  // a * b, each in [1, 10^kMaxMultiplyDigits)
  bool operator==(const MultiplyProblem&) const = default;
};
inline constexpr int kMaxMultiplyDigits = 9;  // so every product and sum fits in int64
// kInvalidArgument naming what is out of range.
Status CheckMultiplyProblem(const MultiplyProblem& p);

// "4821*307=".
std::string MultiplyPrompt(const MultiplyProblem& p);
// The canonical solution (without the prompt): as in the header comment, ending in '.'.
std::string SolveMultiply(const MultiplyProblem& p);

// The verdict on a written solution (the text after the prompt, up to and with an optional '.').
// Never fails: any text gets a verdict and, when rejected, the reason ("step 2: 4821*30 is not a
// place term of 307", "step 3: 33747+1446301 is not 1480048", "2 results are left", ...).
struct MultiplyVerdict {
  bool ok = false;
  std::string reason;  // "" when ok
  int64_t answer = 0;  // the product the steps reach, when ok
};
MultiplyVerdict VerifyMultiply(const MultiplyProblem& p, std::string_view text);

// Problems drawn from a seed: a with `digits` digits, b with 1 to `digits` digits (uniform),
// deterministic per seed. digits in [1, kMaxMultiplyDigits].
std::vector<MultiplyProblem> GenerateMultiply(int64_t count, int digits, uint64_t seed);

}  // namespace distbelief
