#include <immintrin.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
using F = __m256;
template <int MR, int NV>
__attribute__((noinline)) void grad_tile(const float* const* a, long np, long off, const float* d, long ldd, float* acc) {
  F s[MR][NV];
  for (int m = 0; m < MR; ++m) for (int v = 0; v < NV; ++v) s[m][v] = _mm256_loadu_ps(acc + (m * NV + v) * 8);
  for (long p = 0; p < np; ++p, d += ldd) {
    const float* ap = a[p] + off;
    F dv[NV];
    for (int v = 0; v < NV; ++v) dv[v] = _mm256_loadu_ps(d + 8 * v);
    for (int m = 0; m < MR; ++m) {
      const F av = _mm256_set1_ps(ap[m]);
      for (int v = 0; v < NV; ++v) s[m][v] = _mm256_fmadd_ps(av, dv[v], s[m][v]);
    }
  }
  for (int m = 0; m < MR; ++m) for (int v = 0; v < NV; ++v) _mm256_storeu_ps(acc + (m * NV + v) * 8, s[m][v]);
}
int main(int argc, char** argv) {
  // a row of tiles over np units, like the real layer: d rows of O floats, inputs C floats apart; 3 blocks of O
  const long np = 256, O = atol(argv[1]), C = atol(argv[2]); const int rounds = atoi(argv[3]); const long sub = atol(argv[4]);
  const int ntiles = 3 * C / 4;  // a kernel row's run (3 C values) in tiles of 4
  std::vector<float> in((np + 8) * C * 1 + 4096, 0.5f), d(np * O + 64, 0.25f), acc(8 * 24 * ntiles * 3, 0.f);
  std::vector<const float*> a(np);
  for (long p = 0; p < np; ++p) a[p] = in.data() + p * C;
  auto run = [&](bool grouped) {
    auto t0 = std::chrono::steady_clock::now();
    for (int rep = 0; rep < 20; ++rep)
      for (int j = 0; j < O / 24; ++j) {  // blocks of 3 vectors
        const float* dj = d.data() + j * 24;
        if (!grouped) {
          for (int t = 0; t < ntiles; ++t) grad_tile<4, 3>(a.data(), np, t * 4, dj, O, acc.data() + (j * ntiles + t) * 96);
        } else {
          for (int g = 0; g < ntiles; g += 4)
            for (long s0 = 0; s0 < np; s0 += sub)
              for (int t = g; t < std::min(g + 4, ntiles); ++t)
                grad_tile<4, 3>(a.data() + s0, std::min(sub, np - s0), t * 4, dj + s0 * O, O, acc.data() + (j * ntiles + t) * 96);
        }
      }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  std::vector<double> ratio;
  double ta = 0, tb = 0;
  for (int r = 0; r < rounds; ++r) {
    const double x = run(false), y = run(true);
    ratio.push_back(x / y); ta += x; tb += y;
  }
  std::sort(ratio.begin(), ratio.end());
  const double flops = 20.0 * (O / 24) * ntiles * np * 2 * 96;
  printf("O %ld C %ld sub %ld: plain %.1f GF, grouped %.1f GF (1 thread, means); paired speed-up median %.3f [%.3f .. %.3f]\n", O, C, sub,
         flops * rounds / ta / 1e9, flops * rounds / tb / 1e9, ratio[rounds / 2], ratio[0], ratio[rounds - 1]);
}
