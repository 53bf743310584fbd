// The one shuffle: Fisher-Yates driven by a seeded Random, so an order depends only on its seed
// (a resumed run, every process of a cluster and every replica compute the same permutation).
#pragma once

#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "distbelief/base/random.h"

namespace distbelief {

// Permutes v uniformly at random with rng's stream.
template <typename T>
void Shuffle(std::span<T> v, Random* rng) {
  for (int64_t i = static_cast<int64_t>(v.size()) - 1; i > 0; --i)
    std::swap(v[i], v[rng->UniformInt(static_cast<uint64_t>(i) + 1)]);
}

// 0 .. n-1 in the order of a shuffle seeded by `seed`.
inline std::vector<int64_t> ShuffledRange(int64_t n, uint64_t seed) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  Random rng(seed);
  Shuffle(std::span<int64_t>(order), &rng);
  return order;
}

}  // namespace distbelief
