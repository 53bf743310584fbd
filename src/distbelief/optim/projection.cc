#include "distbelief/optim/projection.h"

#include <algorithm>
#include <cmath>

#include "distbelief/base/parallel.h"
#include "distbelief/base/sum.h"

namespace distbelief {

namespace {

void ProjectBlocks(std::span<float> v, const NormBound& bound, int64_t first, int64_t last) {
  const KeyBlocks& r = bound.blocks;
  const double max_sq = double(bound.max_norm) * bound.max_norm;
  for (int64_t b = first; b < last; ++b) {
    float* x = v.data() + r.offset + b * r.block;
    const double sq = PartialSum8(0, r.block, [&](int64_t i) { return double(x[i]) * x[i]; });
    if (sq > max_sq) {
      const float scale = static_cast<float>(std::sqrt(max_sq / sq));
      for (int64_t j = 0; j < r.block; ++j) x[j] *= scale;
    }
  }
}

}  // namespace

void ProjectBlockNorms(std::span<float> v, const NormBound& bound) { ProjectBlocks(v, bound, 0, bound.blocks.count); }

void ProjectBlockNormsOnPool(std::span<float> v, const NormBound& bound) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, bound.blocks.block));
  ParallelFor(bound.blocks.count, grain, [&](int64_t lo, int64_t hi) { ProjectBlocks(v, bound, lo, hi); });
}

NormBound RestrictToRange(const NormBound& bound, int64_t begin, int64_t end) {
  const KeyBlocks& r = bound.blocks;
  NormBound out{{0, r.block, 0}, bound.max_norm};
  // First whole block at or after begin, last whole block ending at or before end.
  const int64_t first = std::max<int64_t>(0, (begin - r.offset + r.block - 1) / r.block);
  const int64_t last = std::min<int64_t>(r.count, (end - r.offset) / r.block);  // exclusive
  if (last > first) out.blocks = {r.offset + first * r.block - begin, r.block, last - first};
  return out;
}

}  // namespace distbelief
