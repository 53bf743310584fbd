// The process's one thread pool. distbelief runs its own loops and oneDNN's GEMM on the same
// OpenMP (libgomp) team, so no two pools spin against each other on a small machine.
//
// ParallelFor uses a static schedule: with the same thread count, every index range goes to the
// same thread in the same order, so reductions written per chunk are bit-reproducible.
#pragma once

#include <cstdint>

namespace distbelief {

// Sets the number of threads of the pool (>= 1). 0 leaves OpenMP's default (OMP_NUM_THREADS or
// the number of cores).
void SetNumThreads(int n);
int NumThreads();
// Index of the calling thread within a parallel region, 0 outside one.
int ThreadIndex();
// Number of threads in the current parallel region, 1 outside one.
int TeamSize();

// While it lives, the loops and GEMMs the calling thread starts run on that thread alone, when
// `serial` (work too small to share: a thread's wake-up costs more than it saves). Restores the
// thread count on destruction. Not for use inside a parallel region.
class SerialScope {
 public:
  explicit SerialScope(bool serial);
  ~SerialScope();
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  int saved_ = 0;  // the thread count to restore, 0 when nothing was changed
};

// Calls fn(begin, end) on disjoint chunks covering [0, n), in parallel. Each chunk holds at least
// `grain` indices (the loop runs serially when n <= grain). Chunk boundaries depend only on n,
// grain and the thread count.
template <typename Fn>
void ParallelFor(int64_t n, int64_t grain, Fn&& fn) {
  if (n <= 0) return;
  if (n <= grain || NumThreads() == 1) {
    fn(int64_t{0}, n);
    return;
  }
  const int64_t max_chunks = (n + grain - 1) / grain;
#pragma omp parallel
  {
    const int64_t nt = TeamSize();
    const int64_t chunks = nt < max_chunks ? nt : max_chunks;
    const int64_t t = ThreadIndex();
    if (t < chunks) {
      const int64_t begin = n * t / chunks;
      const int64_t end = n * (t + 1) / chunks;
      if (begin < end) fn(begin, end);
    }
  }
}

}  // namespace distbelief
