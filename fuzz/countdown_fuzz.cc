// libFuzzer harness: the reasoning lab's parsers of outside input (workloads/reasoning): a line of
// `distbelief search` (JSON), a written solution through the step and expression verifiers, a
// written long multiplication through its verifier (arithmetic.h), and a partial solution through
// CountdownNumbersLeft (as search at test time reads the policy's steps). The first byte picks one.
// A verdict is checked against the arithmetic it claims.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "distbelief/workloads/reasoning/arithmetic.h"
#include "distbelief/workloads/reasoning/countdown_lab.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
  const distbelief::CountdownProblem p{{25, 3, 4, 7}, 100};
  switch (data[0] % 5) {
    case 0: {
      auto q = distbelief::ParseCountdownProblemLine(in);
      if (q.ok() && !distbelief::CheckCountdownProblem(*q).ok()) std::abort();
      break;
    }
    case 4: {  // the numbers left: one fewer per step, and never more than the problem had
      auto left = distbelief::CountdownNumbersLeft(p, in);
      if (left.ok()) {
        size_t steps = 0;
        for (char c : in.substr(0, in.rfind(',') == std::string::npos ? 0 : in.rfind(',') + 1)) steps += c == ',';
        if (left->size() + steps != p.numbers.size()) std::abort();
      } else if (left.status().message().empty()) {
        std::abort();
      }
      break;
    }
    case 3: {
      const distbelief::MultiplyProblem m{4821, 307};
      const auto v = distbelief::VerifyMultiply(m, in);
      if (v.ok != v.reason.empty()) std::abort();
      if (v.ok && v.answer != m.a * m.b) std::abort();
      break;
    }
    case 1:
    case 2: {
      const auto v = data[0] % 5 == 1 ? distbelief::VerifySteps(p, in) : distbelief::VerifyExpression(p, in);
      if (v.ok != v.reason.empty()) std::abort();
      if (v.ok) {  // an accepted solution: every step's arithmetic holds and it ends at the target
        int64_t r = 0;
        for (const auto& s : v.steps)
          if (!distbelief::ApplyCountdownOp(s.a, s.op, s.b, &r) || r != s.result) std::abort();
        if (v.steps.size() != p.numbers.size() - 1 || v.steps.back().result != p.target) std::abort();
      }
      break;
    }
  }
  return 0;
}
