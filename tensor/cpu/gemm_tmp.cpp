// TEMPORARY naive GEMM until the fast one lands.
#include "tensor/cpu/gemm.h"
namespace dl::cpu {
template <typename T>
static void gemm_naive(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
                       int64_t ldb, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(ta ? A[k * lda + i] : A[i * lda + k]) * double(tb ? B[j * ldb + k] : B[k * ldb + j]);
      C[i * ldc + j] = T(alpha * s + (beta == T(0) ? 0 : beta * C[i * ldc + j]));
    }
}
void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
           int64_t ldb, float beta, float* C, int64_t ldc) { gemm_naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); }
void dgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda, const double* B,
           int64_t ldb, double beta, double* C, int64_t ldc) { gemm_naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); }
}
