#pragma once
// Internal: the contract between the bfloat16 GEMM driver (gemm_bf16.cpp) and its ISA-specific kernels
// (gemm_bf16_avx512.cpp, gemm_bf16_amx.cpp, each compiled with its own ISA flags and only reached after the
// driver checked CPUID). Not part of the public API (that is tensor/cpu/gemm_bf16.h).
//
// Packed operands are bfloat16 bits. A K block of kc values is packed as kcp = kc rounded up to a multiple of
// ku (the kernel's K unit), zero padded in BOTH operands, so the padding adds exact zeros (0 * 0; never 0 * NaN).
//   op(A) rows [0, mc) -> panels of mr rows (the last one zero padded to mr rows): panel p at dst + p * mr * kcp.
//   op(B) cols [0, nc) -> panels of nr cols (zero padded): panel p at dst + p * nr * kcp.
// The layout inside a panel is the kernel's own business (AMX: tiles; AVX512_BF16: pairs of k).
// pack_*(trans, X, ld, rows_or_cols, kc, dst): X points at op(X)(0, 0); element (i, k) of op(A) is A[i*lda + k],
// or A[k*lda + i] when trans; element (k, j) of op(B) is B[k*ldb + j], or B[j*ldb + k] when trans.
#include <cstdint>

namespace dl::cpu::detail {

struct Bf16Kernel {
  int mr = 0, nr = 0, ku = 1;  // register block and K unit
  void (*pack_a_f32)(bool trans, const float* A, int64_t lda, int64_t mc, int64_t kc, uint16_t* dst) = nullptr;
  void (*pack_a_b16)(bool trans, const uint16_t* A, int64_t lda, int64_t mc, int64_t kc, uint16_t* dst) = nullptr;
  void (*pack_b_f32)(bool trans, const float* B, int64_t ldb, int64_t nc, int64_t kc, uint16_t* dst) = nullptr;
  void (*pack_b_b16)(bool trans, const uint16_t* B, int64_t ldb, int64_t nc, int64_t kc, uint16_t* dst) = nullptr;
  // B given by row pointers (gemm_bf16_rows): element (k, j) of op(B) is rows[k][col + j].
  void (*pack_b_rows)(const uint16_t* const* rows, int64_t col, int64_t nc, int64_t kc, uint16_t* dst) = nullptr;
  // One K block [pc, pc + kcp) of the C block C[mr x nr] = alpha * sum_k Apanel * Bpanel + beta * C (beta == 0: C
  // not read). first / last: whether this is the first / last K block of the product. acc: a 64-byte aligned
  // scratch of mr_max * nr_max floats owned by this C block for the duration of its K blocks: a kernel may keep the
  // partial sums there between K blocks (AMX does, so C itself is read and written once, at the last block), or
  // ignore it and accumulate into C (beta on the first block, 1 after: AVX512_BF16 does).
  void (*ukr)(int64_t mr, int64_t nr, int64_t kcp, const uint16_t* a, const uint16_t* b, float* c, int64_t ldc,
              float alpha, float beta, float* acc, bool first, bool last) = nullptr;
  // Per thread, around each thread's share of one GEMM (AMX: load the tile configuration / release the tiles).
  void (*begin)() = nullptr;
  void (*end)() = nullptr;
};

// gemm_bf16_avx512.cpp (needs AVX-512 F/BW/VL + AVX512_BF16).
void bf16_avx512_kernel(Bf16Kernel* k);
// Packing into the AMX layout (used by the AMX kernel; lives with the other AVX-512 packing code).
void bf16_amx_packing(Bf16Kernel* k);
double bf16_avx512_peak_loop(double seconds, double* flops);  // one thread: seconds spent, FLOPs done
// gemm_bf16_amx.cpp (also needs AMX-TILE/AMX-BF16 and the kernel's permission, see gemm_bf16.cpp).
void bf16_amx_kernel(Bf16Kernel* k);
double bf16_amx_peak_loop(double seconds, double* flops);

}  // namespace dl::cpu::detail
