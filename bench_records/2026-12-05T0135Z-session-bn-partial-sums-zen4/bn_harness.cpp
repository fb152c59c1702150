// Batch norm timing harness (this record's bn_isolated.txt): g++ -O2 -std=c++20 -fopenmp -I<repo> bn_harness.cpp
// <repo>/build/libdl_tensor.a -lfmt -lz; ./a.out ROUNDS (FLUSH=1: 64 MB written before each call; EVAL=1: eval mode).
#include "tensor/nn_ops.h"
#include "tensor/tensor.h"
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <omp.h>
using namespace dl;
static double med(std::vector<double> v){ std::sort(v.begin(), v.end()); return v[v.size()/2]; }
int main(int argc, char** argv) {
  int reps = atoi(argv[1]); bool flush = getenv("FLUSH");
  int shapes[][4] = {{64,64,32,32},{64,64,16,16},{64,128,8,8},{64,256,4,4},{64,512,2,2}};
  std::vector<float> junk(flush ? (64 << 20) / 4 : 0);
  for (auto& s : shapes) {
    int64_t N=s[0],C=s[1],H=s[2],W=s[3];
    Tensor x = randn({N, C, H, W}), g = randn({N, C, H, W}), w = randn({C}), b = randn({C});
    Tensor rm = zeros({C}), rv = ones({C});
    Tensor y = empty({N,C,H,W});
    std::vector<double> tf, tb, tc;
    for (int r = 0; r < reps; ++r) {
      for (size_t i = 0; i < junk.size(); i += 16) junk[i] += 1;
      auto a = std::chrono::steady_clock::now();
      auto f = ops::batch_norm_relu_forward(x, w, b, rm, rv, !getenv("EVAL"), 0.1, 1e-5);
      tf.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
      for (size_t i = 0; i < junk.size(); i += 16) junk[i] += 1;
      a = std::chrono::steady_clock::now();
      { auto gr = ops::batch_norm_backward(g, x, w, f.mean, f.invstd, true, {true, true, true}); }
      tb.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
      for (size_t i = 0; i < junk.size(); i += 16) junk[i] += 1;
      a = std::chrono::steady_clock::now();
      const float* xs = x.data_ptr<float>(); float* ys = y.data_ptr<float>(); int64_t n = x.numel();
#pragma omp parallel
      { int t = omp_get_thread_num(), k = omp_get_num_threads(); int64_t lo = n * t / k, hi = n * (t + 1) / k;
        std::memcpy(ys + lo, xs + lo, (hi - lo) * 4); }
      tc.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
    }
    double bytes = 4.0 * N * C * H * W;
    printf("%3lldx%3lldx%2lld: bn_relu fwd %.3f ms (%.1f GB/s of 2x), bn bwd %.3f ms (%.1f GB/s of 4x: x,g,gx + ?), copy %.3f ms (%.1f GB/s)\n",
      (long long)C,(long long)H,(long long)W, med(tf)*1e3, 2*bytes/med(tf)/1e9, med(tb)*1e3, 3*bytes/med(tb)/1e9, med(tc)*1e3, 2*bytes/med(tc)/1e9);
  }
}
