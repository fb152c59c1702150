#pragma once
#include <cstdint>
#include <functional>
#include <string>
namespace dl::cpu {
struct CacheInfo;
// Row-major GEMM: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
// op(A) = A (M x K, row stride lda) or, when trans_a, A^T where A is stored K x M with row stride lda.
// Same for B. ldc is C's row stride. beta == 0 means C is not read (may hold NaN).
// Threads: OpenMP, using omp_get_max_threads() unless called inside a parallel region.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
           const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc);
// sgemm with op(B) (K x N) written by the caller straight into the GEMM's packed layout:
// pack(k0, kc, j0, nc, nr, ps, dst) stores rows [k0, k0 + kc) and columns [j0, j0 + nc) of op(B) as panels of nr
// columns: panel p starts at dst + p * nr * ps and holds, for each k, nr values (dst[p*nr*ps + k*nr + j]), zero
// past column nc. It may be called from several threads at once (on disjoint columns) and must not throw. The
// convolution uses it to pack its im2col matrix from the image without writing it (tensor/cpu/conv.cpp).
using SgemmPackB = std::function<void(int64_t k0, int64_t kc, int64_t j0, int64_t nc, int64_t nr, int64_t ps, float* dst)>;
void sgemm_packed_b(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                    const SgemmPackB& pack_b, float beta, float* C, int64_t ldc);
// The panel width nr the packing function is asked for on this CPU (the micro-kernel's NR).
int sgemm_panel_width();
// One B for many products (Winograd's transformed weights, multiplied by block after block of tiles): B (K x N,
// row stride ldb) packed once into the micro-kernel's panels, then C (M x N) = A (M x K, row stride lda) @ B on the
// calling thread (serial: callers run it on their own threads), with only A packed per call. The packing belongs
// to the kernel chosen when it was made (nr); gemm_prepacked_b throws if the kernel in force has another width.
template <typename T>
struct GemmPackedB {
  const T* panels = nullptr;  // panel p (nr columns) at panels + p * nr * K, row k at + k * nr
  int64_t K = 0, N = 0;
  int nr = 0;
};
// Values the packing of a K x N matrix takes (N rounded up to the panel width).
template <typename T>
int64_t gemm_packed_b_size(int64_t K, int64_t N);
// dst: gemm_packed_b_size values, 64-byte aligned (the micro-kernels load panels with aligned loads; a misaligned
// dst is refused).
template <typename T>
GemmPackedB<T> gemm_pack_b(const T* B, int64_t ldb, int64_t K, int64_t N, T* dst);
// The same layout for a caller that writes the panels itself (Winograd's weight transform, which computes each
// panel row in place rather than writing B and packing it): the panel width of the kernel in force, for dst (64-byte
// aligned, gemm_packed_b_size values). The caller fills every panel row, the columns past N with zeros.
template <typename T>
GemmPackedB<T> gemm_packed_b_layout(T* dst, int64_t K, int64_t N);
// trans_a: op(A) = A^T, A stored K x M with row stride lda (as sgemm's). beta: C = A @ B + beta C (beta 0 never
// reads C).
template <typename T>
void gemm_prepacked_b(int64_t M, const T* A, int64_t lda, const GemmPackedB<T>& B, T* C, int64_t ldc,
                      bool trans_a = false, T beta = T(0));
// Which micro-kernel sgemm uses on this CPU: "avx512", "avx2" or "portable". Env DL_GEMM_KERNEL=portable|avx2|avx512 forces one (never one the CPU lacks).
const char* sgemm_kernel_name();
// The micro-kernel's shape and the cache blocks sgemm uses on this CPU: derived from the cache sizes Linux
// reports (cpu_info.h; the formulas are at set_blocks in gemm.cpp), unless DL_GEMM_BLOCKS=kc,mc,nc overrides
// them. sgemm_blocks_for: what the formulas give for another kernel shape and other caches (for tests).
struct SgemmBlocks {
  int mr = 0, nr = 0;
  int64_t kc = 0, mc = 0, nc = 0;
  std::string str() const;  // "14x32 kernel, kc 256, mc 252, nc 4096"
};
SgemmBlocks sgemm_blocks();
SgemmBlocks sgemm_blocks_for(int mr, int nr, const CacheInfo& caches);
// The simple reference (triple loop, blocked for cache, no SIMD), kept for tests.
void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
}
