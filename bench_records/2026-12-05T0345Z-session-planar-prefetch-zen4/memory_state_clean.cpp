#include <sys/mman.h>
#include <omp.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <algorithm>
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main(int argc, char** argv) {
  size_t bytes = (argc > 1 ? atol(argv[1]) : 10) << 20;
  char* raw = (char*)mmap(nullptr, bytes + (2 << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  float* a = (float*)(((uintptr_t)raw + (2 << 20) - 1) & ~(uintptr_t)((2 << 20) - 1));
  madvise(a, bytes, MADV_HUGEPAGE);
  size_t n = bytes / 4;
  for (size_t i = 0; i < n; ++i) a[i] = 0.5f;
  std::vector<float> junk(64 << 18);
  const char* names[] = {"flushed", "flushed, read by this core", "flushed, read by the other core", "flushed, read by both", "written by this core (dirty)", "stripes written+read by both"};
  for (int rep = 0; rep < 2; ++rep)
  for (int how = 0; how < 6; ++how) {
    double t = 0;
#pragma omp parallel num_threads(2)
    {
      int id = omp_get_thread_num();
      if (id == 0) for (size_t i = 0; i < junk.size(); i += 16) junk[i] += 1;
#pragma omp barrier
      if (id == 0 && how == 4) for (size_t i = 0; i < n; ++i) a[i] = 3.0f;
      if (how == 5) {  // 75 KB stripes, alternating threads: written, then read by their writer
        const size_t stripe = 75 * 256;
        for (size_t s0 = id * stripe; s0 < n; s0 += 2 * stripe) for (size_t i = s0; i < std::min(n, s0 + stripe); ++i) a[i] = 2.0f;
        volatile float z = 0;
        for (size_t s0 = id * stripe; s0 < n; s0 += 2 * stripe) for (size_t i = s0; i < std::min(n, s0 + stripe); i += 16) z += a[i];
      }
      if ((how == 1 && id == 0) || (how == 2 && id == 1) || how == 3) { volatile float z = 0; for (size_t i = 0; i < n; i += 16) z += a[i]; }
#pragma omp barrier
      if (id == 0) {
        double t0 = now();
        for (size_t i = 0; i < n; ++i) a[i] = 1.0f + how;
        t = now() - t0;
      }
    }
    printf("%zu MB %-34s then written by this core: %.2f ms, %.1f GB/s\n", bytes >> 20, names[how], t * 1e3, bytes / t * 1e-9);
  }
}
