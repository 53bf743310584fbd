// Sums that vectorize and do not depend on scheduling.
#pragma once

#include <cstdint>

namespace distbelief {

// sum_{lo <= i < hi} term(i), term returning double, in 8 independent partial sums added
// pairwise at the end: the compiler vectorizes the loop (one running sum would be a chain of
// dependent adds), and the result depends only on lo, hi and the terms. Header-only; term is
// called once per i, in no particular order.
template <typename Term>
double PartialSum8(int64_t lo, int64_t hi, Term term) {
  double p[8] = {};
  int64_t i = lo;
  for (; i + 8 <= hi; i += 8)
    for (int k = 0; k < 8; ++k) p[k] += term(i + k);
  double s = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
  for (; i < hi; ++i) s += term(i);
  return s;
}

}  // namespace distbelief
