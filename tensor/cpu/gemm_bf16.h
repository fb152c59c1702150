#pragma once
#include <cstdint>
namespace dl::cpu {
// bfloat16 GEMM with float32 accumulation, row-major, same conventions as sgemm (tensor/cpu/gemm.h):
// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, where op(A) and op(B) are rounded to bfloat16
// (round to nearest even, NaN kept NaN) as they are packed; each product of two bfloat16 values is exact in
// float32 and the products are summed in float32. beta == 0: C is not read.
// Threads: OpenMP, omp_get_max_threads() unless called inside a parallel region (then single-threaded).
// The amx and avx512_bf16 kernels treat bfloat16 denormals as zero (the hardware does); the portable one does not.
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// The same with operands already stored as bfloat16 (raw bits: the upper 16 bits of a float32).
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);
// The kernel in use: "amx", "avx512_bf16" or "portable". Env DL_BF16_KERNEL=amx|avx512_bf16|portable forces one
// (never one the CPU or the OS lacks; read on every call so tests can setenv).
// The same with op(B) given by row pointers: row k of B (N bfloat16 values, contiguous) starts at b_rows[k].
// The convolution's implicit im2col: each row of its column matrix is a shifted view of a padded input plane,
// so the matrix is never copied (tensor/cpu/conv.cpp).
void gemm_bf16_rows(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t lda,
                    const uint16_t* const* b_rows, float beta, float* C, int64_t ldc);
const char* gemm_bf16_kernel_name();
// Whether this CPU (and, for AMX, the Linux kernel via arch_prctl) can run the named kernel.
bool gemm_bf16_kernel_available(const char* name);
// Reference: rounds the operands to bfloat16, sums the products in double, no SIMD; for tests.
void gemm_bf16_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                         int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// float32 -> bfloat16 bits, round to nearest even (NaN stays a quiet NaN); and back (exact).
uint16_t float_to_bf16(float x);
float bf16_to_float(uint16_t b);
// Whole arrays, bit-identical to the scalar functions (denormals kept, not flushed); AVX-512 (vcvtne2ps2bf16
// where the CPU has AVX512_BF16) when available. Single-threaded.
void float_to_bf16(const float* src, uint16_t* dst, int64_t n);
void bf16_to_float(const uint16_t* src, float* dst, int64_t n);
// Measured bfloat16 peak in GFLOP/s of the named kernel's instruction ("amx": _tile_dpbf16ps, 16*16*32*2 = 16384
// FLOP each; "avx512_bf16": 512-bit vdpbf16ps, 16*2*2 = 64 FLOP each) in a register/tile-only loop of independent
// accumulators, run on `threads` OpenMP threads for about `seconds`; the sum over threads. 0 when the kernel is
// not available or has no peak loop ("portable").
double measure_bf16_peak_gflops(const char* kernel, int threads, double seconds);
}  // namespace dl::cpu
