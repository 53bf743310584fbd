#include "distbelief/workloads/reasoning/arithmetic.h"

#include <charconv>
#include <map>
#include <set>

#include "distbelief/base/random.h"

namespace distbelief {
namespace {

constexpr int64_t kLimit = 1000000000;  // 10^kMaxMultiplyDigits

// The whole of `s` as a decimal below 10^18 (so any sum of two fits in int64): no sign, no spaces.
bool ParseNumber(std::string_view s, int64_t* out) {
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v >= 1000000000000000000ull) return false;
  *out = static_cast<int64_t>(v);
  return true;
}

// The place terms of b (digit x 10^k, the non-zero ones), lowest place first.
std::vector<int64_t> PlaceTerms(int64_t b) {
  std::vector<int64_t> out;
  for (int64_t place = 1; b > 0; b /= 10, place *= 10)
    if (b % 10) out.push_back((b % 10) * place);
  return out;
}

MultiplyVerdict Reject(std::string reason) {
  MultiplyVerdict v;
  v.reason = std::move(reason);
  return v;
}

}  // namespace

Status CheckMultiplyProblem(const MultiplyProblem& p) {
  if (p.a < 1 || p.a >= kLimit) return absl::InvalidArgumentError("a must be in [1, 999999999], got " + std::to_string(p.a));
  if (p.b < 1 || p.b >= kLimit) return absl::InvalidArgumentError("b must be in [1, 999999999], got " + std::to_string(p.b));
  return absl::OkStatus();
}

std::string MultiplyPrompt(const MultiplyProblem& p) { return std::to_string(p.a) + "*" + std::to_string(p.b) + "="; }

std::string SolveMultiply(const MultiplyProblem& p) {
  std::string out;
  std::vector<int64_t> products;
  for (int64_t t : PlaceTerms(p.b)) {
    products.push_back(p.a * t);
    out += std::to_string(p.a) + "*" + std::to_string(t) + "=" + std::to_string(p.a * t) + ",";
  }
  int64_t sum = products.empty() ? 0 : products[0];
  for (size_t i = 1; i < products.size(); ++i) {
    out += std::to_string(sum) + "+" + std::to_string(products[i]) + "=" + std::to_string(sum + products[i]) + ",";
    sum += products[i];
  }
  if (!out.empty()) out.back() = '.';
  return out;
}

MultiplyVerdict VerifyMultiply(const MultiplyProblem& p, std::string_view text) {
  if (!CheckMultiplyProblem(p).ok()) return Reject("the problem is out of range");
  if (!text.empty() && text.back() == '.') text.remove_suffix(1);
  if (text.empty()) return Reject("no steps");
  std::map<int64_t, int> terms_left;  // place terms of b not yet multiplied
  for (int64_t t : PlaceTerms(p.b)) ++terms_left[t];
  std::multiset<int64_t> results;  // results not yet used by a sum
  int64_t last = 0;
  int step = 0;
  for (size_t from = 0; from <= text.size();) {
    size_t comma = text.find(',', from);
    if (comma == std::string_view::npos) comma = text.size();
    const std::string_view s = text.substr(from, comma - from);
    from = comma + 1;
    const std::string where = "step " + std::to_string(++step) + ": ";
    if (step > 64) return Reject("more than 64 steps");
    const size_t eq = s.find('=');
    const size_t op = s.find_first_of("*+");
    if (eq == std::string_view::npos || op == std::string_view::npos || op > eq)
      return Reject(where + "'" + std::string(s) + "' is not x*y=z or x+y=z");
    int64_t x, y, z;
    if (!ParseNumber(s.substr(0, op), &x) || !ParseNumber(s.substr(op + 1, eq - op - 1), &y) ||
        !ParseNumber(s.substr(eq + 1), &z))
      return Reject(where + "'" + std::string(s) + "' has a part that is not a number (at most 18 digits)");
    const std::string lhs(s.substr(0, eq));
    if (s[op] == '*') {
      if (x != p.a) return Reject(where + lhs + " does not multiply " + std::to_string(p.a));
      auto it = terms_left.find(y);
      if (it == terms_left.end()) return Reject(where + lhs + ": " + std::to_string(y) + " is not a place term of " + std::to_string(p.b) + " left");
      if (x * y != z) return Reject(where + lhs + " is not " + std::to_string(z));
      if (--it->second == 0) terms_left.erase(it);
    } else {
      auto ix = results.find(x);
      if (ix == results.end()) return Reject(where + std::to_string(x) + " is not an unused earlier result");
      results.erase(ix);
      auto iy = results.find(y);
      if (iy == results.end()) return Reject(where + std::to_string(y) + " is not an unused earlier result");
      results.erase(iy);
      if (x + y != z) return Reject(where + lhs + " is not " + std::to_string(z));
    }
    results.insert(z);
    last = z;
    if (comma == text.size()) break;
  }
  if (!terms_left.empty()) return Reject(std::to_string(terms_left.begin()->first) + " of " + std::to_string(p.b) + " was never multiplied");
  if (results.size() != 1) return Reject(std::to_string(results.size()) + " results are left, not one");
  if (last != p.a * p.b) return Reject("ends at " + std::to_string(last) + ", not " + std::to_string(p.a * p.b));
  MultiplyVerdict v;
  v.ok = true;
  v.answer = last;
  return v;
}

std::vector<MultiplyProblem> GenerateMultiply(int64_t count, int digits, uint64_t seed) {
  std::vector<MultiplyProblem> out;
  if (digits < 1 || digits > kMaxMultiplyDigits) return out;
  Random rng(seed);
  // A number of d digits: uniform in [10^(d-1), 10^d) (1-9 for one digit).
  auto draw = [&rng](int d) {
    int64_t lo = 1;
    for (int k = 1; k < d; ++k) lo *= 10;
    return lo + static_cast<int64_t>(rng.UniformInt(static_cast<uint64_t>(9 * lo)));
  };
  for (int64_t i = 0; i < count; ++i) {
    MultiplyProblem p;
    p.a = draw(digits);
    p.b = draw(1 + static_cast<int>(rng.UniformInt(static_cast<uint64_t>(digits))));
    out.push_back(p);
  }
  return out;
}

}  // namespace distbelief
