// per-layer timing: mode 0 fwd, 1 dx, 2 dw; DIRECT=0/2; prints GFLOP/s (dense) of the median of reps
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <immintrin.h>
#include <omp.h>
#define F12(f) f(0) f(1) f(2) f(3) f(4) f(5) f(6) f(7) f(8) f(9) f(10) f(11)
__attribute__((target("avx2,fma"))) float fma_loop(long iters) {
  const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-3f);
#define I(k) __m256 a##k = _mm256_set1_ps(1.0f + 0.01f * (k));
  F12(I)
  for (long i = 0; i < iters; ++i) {
#define S(k) a##k = _mm256_fmadd_ps(a##k, m, c);
    F12(S)
  }
  __m256 s = _mm256_setzero_ps();
#define A(k) s = _mm256_add_ps(s, a##k);
  F12(A)
  return _mm256_cvtss_f32(s);
}
double peak() {
  const long iters = 3000000;
  double best = 0;
  for (int r = 0; r < 3; ++r) {
    float sink = 0;
    auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel reduction(+:sink)
    sink += fma_loop(iters);
    double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (sink == 12345) printf("x");
    best = std::max(best, 2.0 * 8 * 12 * iters * omp_get_max_threads() / t / 1e9);
  }
  return best;
}
#include "tensor/cpu/conv.h"
#include "tensor/nn_ops.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"
using namespace dl;
struct L { int64_t N, C, H, O, k, s, p; };
int main(int argc, char** argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 7, mode = argc > 2 ? atoi(argv[2]) : 0;
  setenv("DL_CONV_ALGO", "heuristic", 1);
  const char* d = getenv("DIRECT");
  cpu::conv_tuning().direct = d ? atoi(d) : 2;
  if (const char* w = getenv("WINO")) cpu::conv_tuning().winograd_min_channels = atoi(w) ? 0 : 100000;
  std::vector<L> ls = {{32, 64, 56, 64, 3, 1, 1}, {32, 128, 28, 128, 3, 1, 1}, {32, 256, 14, 256, 3, 1, 1}, {32, 512, 7, 512, 3, 1, 1},
                       {128, 64, 16, 64, 3, 1, 1}, {128, 128, 8, 128, 3, 1, 1}, {128, 256, 4, 256, 3, 1, 1}, {128, 512, 2, 512, 3, 1, 1},
                       {32, 3, 224, 64, 7, 2, 3}, {128, 3, 64, 64, 7, 2, 3}, {64, 64, 16, 128, 3, 2, 1}};
  if (const char* c = getenv("CUSTOM")) {  // "N C H O"
    L l{}; sscanf(c, "%ld %ld %ld %ld", &l.N, &l.C, &l.H, &l.O); l.k = 3; l.s = 1; l.p = 1; ls = {l};
  }
  const char* only = getenv("ONLY");
  for (size_t i = 0; i < ls.size(); ++i) {
    if (only && atoi(only) != (int)i) continue;
    const L& l = ls[i];
    Conv2dParams p; p.stride = {l.s, l.s}; p.padding = {l.p, l.p};
    int64_t Ho = (l.H + 2 * l.p - l.k) / l.s + 1;
    Tensor x = randn({l.N, l.C, l.H, l.H}), w = randn({l.O, l.C, l.k, l.k});
    Tensor g = randn({l.N, l.O, Ho, Ho});
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      if (mode == 0) ops::conv2d_forward(x, w, Tensor(), p);
      else if (mode == 1) ops::conv2d_backward_input(g, w, x.sizes(), p);
      else ops::conv2d_backward_weight(g, x, w.sizes(), p);
      t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    double fl = 2.0 * l.N * l.O * Ho * Ho * l.C * l.k * l.k;
    const double pk = peak();
    printf("[peak %.0f] %.0f%% ", pk, 100 * fl / t[reps / 2] / 1e9 / pk);
    printf("%2zu %s N%ld C%ld %ldx%ld O%ld k%ld/%ld: %.2f ms %.1f GF\n", i, mode == 0 ? "fwd" : mode == 1 ? "dx " : "dw ", l.N, l.C, l.H, l.H, l.O, l.k, l.s, t[reps / 2] * 1e3, fl / t[reps / 2] / 1e9);
  }
}
