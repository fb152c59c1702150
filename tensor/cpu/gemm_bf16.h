#pragma once
#include <cstdint>
namespace dl::cpu {
// bfloat16 GEMM with float32 accumulation, row-major, same conventions as sgemm (tensor/cpu/gemm.h):
// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, where op(A) and op(B) are rounded to bfloat16
// (round to nearest even, NaN kept NaN) as they are packed; each product of two bfloat16 values is exact in
// float32 and the products are summed in float32. beta == 0: C is not read.
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
const char* gemm_bf16_kernel_name();
uint16_t float_to_bf16(float x);
float bf16_to_float(uint16_t b);
}
namespace dl::cpu {
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);
void float_to_bf16(const float* src, uint16_t* dst, int64_t n);
}
