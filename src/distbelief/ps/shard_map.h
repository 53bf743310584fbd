// ShardMap: how the flat parameter vector of a model (all Params concatenated in model order) is
// split into key ranges over S shards. By default shard s owns [s N / S, (s + 1) N / S); Aligned
// moves each cut to the nearest point that does not split a block of a constrained region (so a
// shard can apply a per-block constraint, such as a norm bound, on its own). Immutable, so
// thread-safe.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "distbelief/optim/projection.h"

namespace distbelief {

class ShardMap {
 public:
  ShardMap(int64_t total, int num_shards) {
    for (int s = 0; s <= num_shards; ++s) bounds_.push_back(total * s / num_shards);
  }
  // Even cuts moved to the nearest block boundary of any region they fall inside.
  static ShardMap Aligned(int64_t total, int num_shards, const std::vector<KeyBlocks>& regions) {
    ShardMap m(total, num_shards);
    for (int s = 1; s < num_shards; ++s) {
      int64_t& cut = m.bounds_[s];
      for (const KeyBlocks& r : regions) {
        const int64_t end = r.offset + r.block * r.count;
        if (cut <= r.offset || cut >= end) continue;
        const int64_t i = (cut - r.offset + r.block / 2) / r.block;
        cut = r.offset + i * r.block;
      }
      if (cut < m.bounds_[s - 1]) cut = m.bounds_[s - 1];
    }
    return m;
  }
  int num_shards() const { return static_cast<int>(bounds_.size()) - 1; }
  int64_t total() const { return bounds_.back(); }
  int64_t begin(int s) const { return bounds_[s]; }
  int64_t end(int s) const { return bounds_[s + 1]; }
  int64_t size(int s) const { return end(s) - begin(s); }

 private:
  std::vector<int64_t> bounds_;
};

}  // namespace distbelief
