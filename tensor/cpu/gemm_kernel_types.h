#pragma once
// Internal: the float32/float64 GEMM's micro-kernel and packing function types, and the functions with which
// gemm_avx2.cpp and gemm_avx512.cpp (compiled with their ISA flags) hand theirs to the driver (gemm.cpp). Types and
// declarations only: no inline code, which would be compiled with a different ISA in each file that includes it.
#include <cstdint>

namespace dl::cpu::detail {

// Micro-kernel: C[mr x nr] (beta == 0: =, else scaled by beta and +=) alpha * (packed A panel) * (packed B panel).
// During its first pf_n iterations it also prefetches one cache line per iteration: pf_lines lines (64 bytes
// apart) from pf, then from pf + pf_ld, ...: the driver uses this to fetch the next block of op(B) from memory while
// the FMAs run (prefetches issued in bursts are mostly dropped).
using SgemmUkr = void (*)(int64_t mr, int64_t nr, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                          float alpha, float beta, const void* pf, int64_t pf_ld, int64_t pf_lines, int64_t pf_n);
using DgemmUkr = void (*)(int64_t mr, int64_t nr, int64_t kc, const double* a, const double* b, double* c,
                          int64_t ldc, double alpha, double beta, const void* pf, int64_t pf_ld, int64_t pf_lines,
                          int64_t pf_n);
// The same with op(A)'s mr rows in place, row i at a + i * lda (gemm.cpp: gemm_prepacked_b).
using SgemmRowsUkr = void (*)(int64_t mr, int64_t nr, int64_t kc, const float* a, int64_t lda, const float* b,
                              float* c, int64_t ldc, float alpha, float beta);
using DgemmRowsUkr = void (*)(int64_t mr, int64_t nr, int64_t kc, const double* a, int64_t lda, const double* b,
                              double* c, int64_t ldc, double alpha, double beta);
// pack_a(trans, A, lda, mc, kc, dst); pack_b(trans, B, ldb, kc, nc, panel_stride, dst): see pack_a_generic and
// pack_b_generic.
using SPackA = void (*)(bool trans, const float* A, int64_t lda, int64_t mc, int64_t kc, float* dst);
using DPackA = void (*)(bool trans, const double* A, int64_t lda, int64_t mc, int64_t kc, double* dst);
using SPackB = void (*)(bool trans, const float* B, int64_t ldb, int64_t kc, int64_t nc, int64_t ps, float* dst);
using DPackB = void (*)(bool trans, const double* B, int64_t ldb, int64_t kc, int64_t nc, int64_t ps, double* dst);

#if defined(__x86_64__) || defined(_M_X64)
// Defined in gemm_avx512.cpp / gemm_avx2.cpp: register block MR x NR, micro-kernel, packing of op(A) into MR-row
// panels and of op(B) into NR-column panels (and, on AVX2, the micro-kernel on op(A)'s rows in place).
void gemm_avx512_sgemm(int* mr, int* nr, SgemmUkr* ukr, SPackA* pack_a, SPackB* pack_b);
void gemm_avx512_dgemm(int* mr, int* nr, DgemmUkr* ukr, DPackA* pack_a, DPackB* pack_b);
void gemm_avx2_sgemm(int* mr, int* nr, SgemmUkr* ukr, SPackA* pack_a, SPackB* pack_b, SgemmRowsUkr* ukr_rows);
void gemm_avx2_dgemm(int* mr, int* nr, DgemmUkr* ukr, DPackA* pack_a, DPackB* pack_b, DgemmRowsUkr* ukr_rows);
#endif

}  // namespace dl::cpu::detail
