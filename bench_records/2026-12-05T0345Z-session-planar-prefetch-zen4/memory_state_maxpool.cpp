#include <omp.h>
#include "tensor/nn_ops.h"
#include <chrono>
#include <cstdio>
#include <vector>
#include <algorithm>
using namespace dl;
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main(int argc, char** argv) {
  int64_t N = atoll(argv[1]), C = atoll(argv[2]), H = atoll(argv[3]), k = atoll(argv[4]), pad = atoll(argv[5]);
  bool flush = getenv("FLUSH");
  Tensor x = randn({N, C, H, H});
  Pool2dParams p; p.kernel = {k, k}; p.stride = {2, 2}; p.padding = {pad, pad};
  std::vector<float> junk(16 << 20);
  std::vector<double> t;
  for (int r = 0; r < 30; ++r) {
    if (flush) for (size_t i = 0; i < junk.size(); i += 16) junk[i] += 1;
    const int mode = getenv("WRITE") ? atoi(getenv("WRITE")) : 0;  // 1: by channels of each image (as batch norm), 2: by image halves
    if (mode) {
      float* xp = x.data_ptr<float>();
      const int64_t plane = H * H;
#pragma omp parallel num_threads(2)
      {
        const int id = omp_get_thread_num();
        for (int64_t n = 0; n < N; ++n)
          for (int64_t c = 0; c < C; ++c) {
            const bool mine = mode == 1 ? (c < C / 2) == (id == 0) : (n < N / 2) == (id == 0);
            if (mine) { float* q = xp + (n * C + c) * plane; for (int64_t i = 0; i < plane; ++i) q[i] = q[i] * 0.5f + 0.25f; }
          }
      }
    }
    double t0 = now();
    auto [o, idx] = ops::max_pool2d_forward(x, p, true);
    t.push_back(now() - t0);
  }
  std::sort(t.begin(), t.end());
  double m = t[t.size() / 2];
  int64_t Ho = (H + 2 * pad - k) / 2 + 1;
  double bytes = 4.0 * N * C * H * H + 12.0 * N * C * Ho * Ho;
  printf("max pool %ldx%ldx%ldx%ld k%ld: %.3f ms, %.1f GB/s (in + out + int64 indices)\n", N, C, H, H, k, m * 1e3, bytes / m * 1e-9);
}
