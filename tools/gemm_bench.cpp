// GEMM benchmark: GFLOP/s (median of 7 timed runs after 2 warm-up runs) of dl::cpu::sgemm / dgemm on square and
// convolution-like shapes, at 1 and 2 OpenMP threads; then dl::cpu::gemm_bf16 (float32 operands, rounded while
// packing) for every bf16 kernel this machine can run, and the measured bf16 peak of each (see
// dl::cpu::measure_bf16_peak_gflops in tensor/cpu/gemm_bf16.h, which tools/bench.cpp can call too).
// Usage: gemm_bench [runs=7] [bf16]   ("bf16": the bf16 part only)
// Kernel: DL_GEMM_KERNEL=portable|avx2|avx512 forces the float one; the bf16 kernels are all run in turn.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/gemm.h"
#include "tensor/cpu/gemm_bf16.h"

namespace {

struct Case {
  const char* name;
  bool ta, tb;
  int64_t M, N, K;
  bool dbl = false;
  bool bf16 = false;
};

template <typename T>
double run_case(const Case& c, int threads, int runs) {
  const int64_t arows = c.ta ? c.K : c.M, acols = c.ta ? c.M : c.K;
  const int64_t brows = c.tb ? c.N : c.K, bcols = c.tb ? c.K : c.N;
  std::vector<T> A(static_cast<size_t>(arows * acols)), B(static_cast<size_t>(brows * bcols)),
      C(static_cast<size_t>(c.M * c.N));
  std::mt19937 rng(42);
  std::uniform_real_distribution<T> u(-1, 1);
  for (auto& x : A) x = u(rng);
  for (auto& x : B) x = u(rng);
  omp_set_num_threads(threads);
  auto call = [&] {
    if (c.bf16)
      dl::cpu::gemm_bf16(c.ta, c.tb, c.M, c.N, c.K, 1.0f, reinterpret_cast<const float*>(A.data()), acols,
                         reinterpret_cast<const float*>(B.data()), bcols, 0.0f, reinterpret_cast<float*>(C.data()),
                         c.N);
    else if constexpr (sizeof(T) == 4)
      dl::cpu::sgemm(c.ta, c.tb, c.M, c.N, c.K, 1.0f, A.data(), acols, B.data(), bcols, 0.0f, C.data(), c.N);
    else
      dl::cpu::dgemm(c.ta, c.tb, c.M, c.N, c.K, 1.0, A.data(), acols, B.data(), bcols, 0.0, C.data(), c.N);
  };
  const double flops = 2.0 * static_cast<double>(c.M) * static_cast<double>(c.N) * static_cast<double>(c.K);
  // Tiny problems: repeat inside one timing so the clock resolution does not matter.
  const int inner = static_cast<int>(std::clamp(2e8 / flops, 1.0, 10000.0));
  for (int w = 0; w < 2; ++w)
    for (int i = 0; i < inner; ++i) call();
  std::vector<double> t;
  for (int r = 0; r < runs; ++r) {
    const auto s = std::chrono::steady_clock::now();
    for (int i = 0; i < inner; ++i) call();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count() / inner);
  }
  std::sort(t.begin(), t.end());
  return flops / t[t.size() / 2] / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 7;
  const bool bf16_only = argc > 2 && std::string(argv[2]) == "bf16";
  const Case cases[] = {
      {"sgemm 1024^3 NN", false, false, 1024, 1024, 1024},
      {"sgemm 1024^3 TN", true, false, 1024, 1024, 1024},
      {"sgemm 1024^3 NT", false, true, 1024, 1024, 1024},
      {"sgemm conv M=64 N=50176 K=576", false, false, 64, 784 * 64, 576},
      {"sgemm conv M=512 N=1568 K=4608", false, false, 512, 49 * 32, 4608},
      {"sgemm conv M=32 N=10 K=512", false, false, 32, 10, 512},
      {"sgemm 256^3 NN", false, false, 256, 256, 256},
      {"dgemm 512^3 NN", false, false, 512, 512, 512, true},
  };
  std::printf("kernel: %s, max threads %d, median of %d runs\n", dl::cpu::sgemm_kernel_name(), omp_get_max_threads(),
              runs);
  std::printf("blocks: %s; caches: %s\n", dl::cpu::sgemm_blocks().str().c_str(), dl::cpu::cpu_caches().str().c_str());
  std::printf("%-34s %12s %12s\n", "case", "1 thread", "2 threads");
  for (const Case& c : cases) {
    if (bf16_only) break;
    double g[2];
    for (int t = 1; t <= 2; ++t) g[t - 1] = c.dbl ? run_case<double>(c, t, runs) : run_case<float>(c, t, runs);
    std::printf("%-34s %9.1f GF %9.1f GF\n", c.name, g[0], g[1]);
    std::fflush(stdout);
  }

  // bf16: C = op(A) op(B) with float32 A, B, C (each value rounded to bf16 as it is packed).
  const Case bcases[] = {
      {"bf16 1024^3 NN", false, false, 1024, 1024, 1024, false, true},
      {"bf16 1024^3 TN", true, false, 1024, 1024, 1024, false, true},
      {"bf16 1024^3 NT", false, true, 1024, 1024, 1024, false, true},
      {"bf16 2048^3 NN", false, false, 2048, 2048, 2048, false, true},
      {"bf16 conv M=64 N=3136 K=576", false, false, 64, 3136, 576, false, true},
      {"bf16 conv M=128 N=3136 K=1152", false, false, 128, 3136, 1152, false, true},
      {"bf16 conv M=256 N=784 K=2304", false, false, 256, 784, 2304, false, true},
      {"bf16 conv M=512 N=3136 K=4608", false, false, 512, 3136, 4608, false, true},
      {"bf16 256^3 NN", false, false, 256, 256, 256, false, true},
  };
  for (const char* k : {"amx", "avx512_bf16", "portable"}) {
    if (!dl::cpu::gemm_bf16_kernel_available(k)) {
      std::printf("\nbf16 kernel %s: not available on this machine\n", k);
      continue;
    }
    setenv("DL_BF16_KERNEL", k, 1);
    std::printf("\nbf16 kernel: %s\n", dl::cpu::gemm_bf16_kernel_name());
    for (int t = 1; t <= 2; ++t) {
      const double peak = dl::cpu::measure_bf16_peak_gflops(k, t, 0.5);
      if (peak > 0.0)
        std::printf("measured peak, %d thread(s): %.1f GF (%s in a register/tile-only loop, %s; sum over threads)\n",
                    t, peak, std::strcmp(k, "amx") == 0 ? "tdpbf16ps" : "vdpbf16ps zmm",
                    std::strcmp(k, "amx") == 0 ? "16*16*32*2 = 16384 FLOP each" : "16*2*2 = 64 FLOP each");
    }
    std::printf("%-34s %12s %12s\n", "case", "1 thread", "2 threads");
    for (const Case& c : bcases) {
      double g[2];
      for (int t = 1; t <= 2; ++t) g[t - 1] = run_case<float>(c, t, runs);
      std::printf("%-34s %9.1f GF %9.1f GF\n", c.name, g[0], g[1]);
      std::fflush(stdout);
    }
  }
  unsetenv("DL_BF16_KERNEL");
  return 0;
}
