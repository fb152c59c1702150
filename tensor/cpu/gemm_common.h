#pragma once
// Internal: what the float32/float64 GEMM (gemm.cpp) and the bfloat16 GEMM (gemm_bf16.cpp) drivers share:
// per-thread packing buffers, the empty products, and the split of C over threads.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace dl::cpu::detail {

// Per thread, 64-byte aligned, grown on demand and kept (OpenMP reuses its threads). Each driver keeps its own
// (the tensor/cpu/scratch.h slots belong to the kernels that call the GEMMs).
struct PackBuffer {
  void* p = nullptr;
  size_t bytes = 0;
  ~PackBuffer() { std::free(p); }
  void* get(size_t want) {
    if (want > bytes) {
      std::free(p);
      bytes = (want + 4095) / 4096 * 4096;
      p = std::aligned_alloc(64, bytes);
      if (p == nullptr) {
        bytes = 0;
        throw std::bad_alloc();
      }
    }
    return p;
  }
};

// The calling thread's buffer for Tag (one per driver and operand: the drivers never share one).
template <typename Tag>
PackBuffer& thread_pack_buffer() {
  static thread_local PackBuffer b;
  return b;
}

// C = beta * C (beta == 0: C is not read).
template <typename T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    T* c = C + i * ldc;
    if (beta == T(0))
      std::fill(c, c + N, T(0));
    else if (beta != T(1))
      for (int64_t j = 0; j < N; ++j) c[j] *= beta;
  }
}

// C split into a tm x tn grid of rectangles (in units of MR rows / NR columns), one per thread. Each thread packs
// its own A rows and B columns, so the grid minimises the largest rectangle's work plus its packing: cost =
// rows * cols + 16 * (pack_a * rows + pack_b * cols), pack_* the packing cost per value relative to a multiply-add.
struct Grid {
  int tm = 1, tn = 1;
};

inline Grid choose_grid(int nt, int64_t M, int64_t N, int MR, int NR, double pack_a, double pack_b) {
  const int64_t mu = (M + MR - 1) / MR, nu = (N + NR - 1) / NR;
  Grid best;
  double best_cost = 1e300;
  for (int tm = 1; tm <= nt; ++tm) {
    if (nt % tm != 0) continue;
    const int tn = nt / tm;
    if (tm > mu || tn > nu) continue;
    const double m_t = static_cast<double>((mu + tm - 1) / tm * MR);
    const double n_t = static_cast<double>((nu + tn - 1) / tn * NR);
    const double cost = m_t * n_t + 16.0 * (pack_a * m_t + pack_b * n_t);
    if (cost < best_cost) best_cost = cost, best.tm = tm, best.tn = tn;
  }
  return best;
}

// The products with nothing to multiply: M or N zero (nothing to do), K or alpha zero (C = beta * C). True when
// it handled the call.
template <typename T>
bool empty_product(int64_t M, int64_t N, int64_t K, T alpha, T beta, T* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return true;
  if (K > 0 && alpha != T(0)) return false;
  scale_c(M, N, beta, C, ldc);
  return true;
}

// Runs rect(m0, m1, n0, n1), a serial GEMM on rows [m0, m1) and columns [n0, n1) of C (M x N, in MR x NR
// units), over the threads: all of C on this thread when the product is under min_flops_per_thread per thread
// (the fork/join would cost more) or inside a parallel region; else one rectangle of choose_grid's grid per
// thread, the grid reduced to a thread count it can use (extra threads idle).
template <typename F>
void split_over_threads(int64_t M, int64_t N, int64_t K, int MR, int NR, double min_flops_per_thread, double pack_a,
                        double pack_b, F rect) {
  const int64_t mu = (M + MR - 1) / MR, nu = (N + NR - 1) / NR;
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  nt = static_cast<int>(std::min<double>(nt, std::max(1.0, flops / min_flops_per_thread)));
  nt = static_cast<int>(std::min<int64_t>(nt, mu * nu));
  if (nt <= 1) {
    rect(int64_t{0}, M, int64_t{0}, N);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int p = omp_get_num_threads(), t = omp_get_thread_num();
    int use = p;
    Grid g = choose_grid(use, M, N, MR, NR, pack_a, pack_b);
    while (g.tm * g.tn != use && use > 1) g = choose_grid(--use, M, N, MR, NR, pack_a, pack_b);
    if (g.tm * g.tn != use) g = Grid{};
    if (t < g.tm * g.tn) {
      const int ti = t / g.tn, tj = t % g.tn;
      const int64_t m0 = mu * ti / g.tm * MR, m1 = std::min(M, mu * (ti + 1) / g.tm * MR);
      const int64_t n0 = nu * tj / g.tn * NR, n1 = std::min(N, nu * (tj + 1) / g.tn * NR);
      if (m1 > m0 && n1 > n0) rect(m0, m1, n0, n1);
    }
  }
}

}  // namespace dl::cpu::detail
