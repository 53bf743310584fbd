// Norm bounds on blocks of a flat parameter vector: the projection that keeps the cat network's
// decoding bases at norm <= 1 (Le et al. 2012: the usual dictionary-norm constraint). The local
// driver applies it after each update, and a parameter-server shard after each push it applies to
// the blocks of its own range, so it lives below both.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace distbelief {

// Blocks [offset + i * block, offset + (i + 1) * block) for i < count, in flat-vector keys.
struct KeyBlocks {
  int64_t offset = 0, block = 1, count = 0;
};

// Blocks of a model's flat vector to keep at L2 norm <= max_norm after every update.
struct NormBound {
  KeyBlocks blocks;
  float max_norm = 1.0f;
};

// Rescales each block of `bound` inside v (offsets relative to v's start) whose L2 norm exceeds
// bound.max_norm down to it. REQUIRES: the blocks lie inside v.
void ProjectBlockNorms(std::span<float> v, const NormBound& bound);
// The same, blocks over the process's thread pool (base/parallel.h); bitwise ProjectBlockNorms'
// result. Only from a thread that owns the pool (the local driver, not a shard's threads).
void ProjectBlockNormsOnPool(std::span<float> v, const NormBound& bound);

// The part of `bound` that falls in the flat range [begin, end), relative to begin: whole blocks
// only (a cut inside a block drops that block). Empty blocks (count 0) if none.
NormBound RestrictToRange(const NormBound& bound, int64_t begin, int64_t end);

}  // namespace distbelief
