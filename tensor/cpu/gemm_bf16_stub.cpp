// TEMPORARY portable stand-in until the bf16-gemm branch lands: round, then sgemm.
#include <cstring>
#include <vector>
#include "tensor/cpu/gemm.h"
#include "tensor/cpu/gemm_bf16.h"
namespace dl::cpu {
uint16_t float_to_bf16(float x) {
  uint32_t u; std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float bf16_to_float(uint16_t b) { uint32_t u = uint32_t(b) << 16; float f; std::memcpy(&f, &u, 4); return f; }
const char* gemm_bf16_kernel_name() { return "portable"; }
void gemm_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
  std::vector<float> a(size_t(ar * ac)), b(size_t(br * bc));
  for (int64_t i = 0; i < ar; ++i) for (int64_t j = 0; j < ac; ++j) a[size_t(i * ac + j)] = bf16_to_float(float_to_bf16(A[i * lda + j]));
  for (int64_t i = 0; i < br; ++i) for (int64_t j = 0; j < bc; ++j) b[size_t(i * bc + j)] = bf16_to_float(float_to_bf16(B[i * ldb + j]));
  sgemm(ta, tb, M, N, K, alpha, a.data(), ac > 0 ? ac : 1, b.data(), bc > 0 ? bc : 1, beta, C, ldc);
}
}
namespace dl::cpu {
void float_to_bf16(const float* src, uint16_t* dst, int64_t n) { for (int64_t i = 0; i < n; ++i) dst[i] = float_to_bf16(src[i]); }
void gemm_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t lda,
               const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
  std::vector<float> a(size_t(ar * ac)), b(size_t(br * bc));
  for (int64_t i = 0; i < ar; ++i) for (int64_t j = 0; j < ac; ++j) a[size_t(i * ac + j)] = bf16_to_float(A[i * lda + j]);
  for (int64_t i = 0; i < br; ++i) for (int64_t j = 0; j < bc; ++j) b[size_t(i * bc + j)] = bf16_to_float(B[i * ldb + j]);
  sgemm(ta, tb, M, N, K, alpha, a.data(), ac > 0 ? ac : 1, b.data(), bc > 0 ? bc : 1, beta, C, ldc);
}
}
