#pragma once
// OpenMP's thread queries, answering one thread where OpenMP is off. The functions are static (one copy per
// file): conv_direct.cpp is compiled with AVX-512 flags, and an inline function it shared with other files could
// be merged into theirs by the linker.
#ifdef _OPENMP
#include <omp.h>
#endif

namespace dl::cpu {

static inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
static inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
static inline int num_threads() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

}  // namespace dl::cpu
