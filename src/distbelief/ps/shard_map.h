// ShardMap: how the flat parameter vector of a model (all Params concatenated in model order) is
// split into key ranges over S shards: shard s owns [s N / S, (s + 1) N / S). Immutable, so
// thread-safe.
#pragma once

#include <cstdint>
#include <vector>

namespace distbelief {

class ShardMap {
 public:
  ShardMap(int64_t total, int num_shards) : total_(total), shards_(num_shards) {}
  int num_shards() const { return shards_; }
  int64_t total() const { return total_; }
  int64_t begin(int s) const { return total_ * s / shards_; }
  int64_t end(int s) const { return total_ * (s + 1) / shards_; }
  int64_t size(int s) const { return end(s) - begin(s); }

 private:
  int64_t total_;
  int shards_;
};

}  // namespace distbelief
