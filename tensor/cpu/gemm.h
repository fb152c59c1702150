#pragma once
#include <cstdint>
namespace dl::cpu {
// Row-major GEMM: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
// op(A) = A (M x K, row stride lda) or, when trans_a, A^T where A is stored K x M with row stride lda.
// Same for B. ldc is C's row stride. beta == 0 means C is not read (may hold NaN).
// Threads: OpenMP, using omp_get_max_threads() unless called inside a parallel region.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
           const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc);
// Which micro-kernel sgemm uses on this CPU: "avx512", "avx2" or "portable". Env DL_GEMM_KERNEL=portable|avx2|avx512 forces one (never one the CPU lacks).
const char* sgemm_kernel_name();
// The simple reference (triple loop, blocked for cache, no SIMD), kept for tests.
void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
}
