// Times dl::cpu::winograd_conv (transform of the weights included, as conv.cpp calls it) on ResNet18's 3x3
// stride-1 layers, in "dense" GFLOP/s (2 N K C 9 H W over the time). Configurations alternate round by round
// inside one process, each round the best of 3 calls; prints the median over the rounds per configuration.
//   new build:  g++ -O2 -std=c++20 -fopenmp -I. winograd_layers.cpp build/libdl_tensor.a -lfmt -lz
//   old build (commit 612bd5d, F(2x2) on planes): add -DOLD_API and link that commit's libdl_tensor.a
// Arguments: rounds, then configurations tile:block_KiB:avx2 (the old build ignores all three: F(2x2) only).
// SHAPES="N,C,H,K;..." replaces the default shapes (ResNet18 at 224, batch 32).
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tensor/cpu/conv.h"
#include "tensor/cpu/winograd.h"
using namespace dl::cpu;
struct Cfg {
  int tile = 2;
  long kb = 256;
  int avx2 = 1;
};
int main(int argc, char** argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 5;
  std::vector<Cfg> cfgs;
  for (int i = 2; i < argc; ++i) {
    Cfg c;
    sscanf(argv[i], "%d:%ld:%d", &c.tile, &c.kb, &c.avx2);
    cfgs.push_back(c);
  }
  if (cfgs.empty()) cfgs.push_back(Cfg{});
  std::vector<std::array<long, 4>> shapes = {{32, 64, 56, 64}, {32, 128, 28, 128}, {32, 256, 14, 256}, {32, 512, 7, 512}};
  if (const char* p = getenv("SHAPES")) {
    shapes.clear();
    long a, b, c, d;
    int n;
    while (sscanf(p, "%ld,%ld,%ld,%ld%n", &a, &b, &c, &d, &n) == 4) {
      shapes.push_back({a, b, c, d});
      p += n;
      if (*p != ';') break;
      ++p;
    }
  }
  for (auto [N, C, H, K] : shapes) {
    std::vector<float> x(N * C * H * H), w(K * C * 9), out(N * K * H * H), U(36 * K * C);
    for (auto& v : x) v = (rand() % 1000) / 1000.f;
    for (auto& v : w) v = (rand() % 1000) / 1000.f;
    std::vector<std::vector<double>> res(cfgs.size());
    for (int r = 0; r < rounds; ++r)
      for (size_t ci = 0; ci < cfgs.size(); ++ci) {
#ifndef OLD_API
        conv_tuning().winograd_block_bytes = cfgs[ci].kb << 10;
        conv_tuning().winograd_avx2 = cfgs[ci].avx2;
#endif
        double best = 1e9;
        for (int rep = 0; rep < 3; ++rep) {
          const auto t0 = std::chrono::steady_clock::now();
#ifdef OLD_API
          winograd_transform_weights(w.data(), K, C, false, U.data());
          winograd_conv(out.data(), x.data(), U.data(), (const float*)nullptr, N, C, H, H, K, 1);
#else
          winograd_transform_weights(w.data(), K, C, false, U.data(), cfgs[ci].tile);
          winograd_conv(out.data(), x.data(), U.data(), (const float*)nullptr, N, C, H, H, K, 1, cfgs[ci].tile);
#endif
          best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
        res[ci].push_back(2.0 * N * K * C * 9 * H * H / best / 1e9);
      }
    printf("N%ld C%ld %ldx%ld K%ld:", N, C, H, H, K);
    for (size_t ci = 0; ci < cfgs.size(); ++ci) {
      auto v = res[ci];
      std::sort(v.begin(), v.end());
#ifdef OLD_API
      printf("  old F2 %.0f", v[v.size() / 2]);
#else
      printf("  F%d/%ldK/%s %.0f", cfgs[ci].tile, cfgs[ci].kb, cfgs[ci].avx2 ? "avx2" : "base", v[v.size() / 2]);
#endif
    }
    printf("\n");
    fflush(stdout);
  }
}
