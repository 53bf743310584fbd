#include "distbelief/base/parallel.h"

#include <omp.h>

namespace distbelief {

int TeamSize() { return omp_get_num_threads(); }

void SetNumThreads(int n) {
  if (n > 0) omp_set_num_threads(n);
}
int NumThreads() { return omp_get_max_threads(); }
int ThreadIndex() { return omp_get_thread_num(); }

SerialScope::SerialScope(bool serial) {
  if (!serial || omp_get_max_threads() == 1) return;
  saved_ = omp_get_max_threads();
  omp_set_num_threads(1);
}
SerialScope::~SerialScope() {
  if (saved_ > 0) omp_set_num_threads(saved_);
}

}  // namespace distbelief
