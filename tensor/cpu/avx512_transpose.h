#pragma once
// Internal: an in-register transpose of a 16 x 16 block of 32-bit values, shared by the float32 GEMM's and the
// bfloat16 GEMM's AVX-512 packing (gemm_avx512.cpp, gemm_bf16_avx512.cpp). Include only from files compiled with
// -mavx512f (the callers are chosen at run time from CPUID).
#include <immintrin.h>

namespace dl::cpu::detail {

// In-register transpose of 16 x 16 32-bit values: r[i] lane j -> r[j] lane i. Its loops are unrolled, as
// transpose8's are (avx2_transpose.h: at -O2 GCC had kept them, and the arrays, on the stack), so that the arrays
// can stay in registers where the caller's loops over r are unrolled too. (Not measured on an AVX-512 CPU.)
[[gnu::always_inline]] inline void transpose16(__m512i r[16]) {
  __m512i t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  __m512i u[16];
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {
    u[4 * q + 0] = _mm512_unpacklo_epi64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 1] = _mm512_unpackhi_epi64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 2] = _mm512_unpacklo_epi64(t[4 * q + 1], t[4 * q + 3]);
    u[4 * q + 3] = _mm512_unpackhi_epi64(t[4 * q + 1], t[4 * q + 3]);
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m512i w0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88);
    const __m512i w1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
    const __m512i w2 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xdd);
    const __m512i w3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xdd);
    r[c] = _mm512_shuffle_i32x4(w0, w1, 0x88);
    r[8 + c] = _mm512_shuffle_i32x4(w0, w1, 0xdd);
    r[4 + c] = _mm512_shuffle_i32x4(w2, w3, 0x88);
    r[12 + c] = _mm512_shuffle_i32x4(w2, w3, 0xdd);
  }
}

// The same on floats (the shuffles only move bits).
[[gnu::always_inline]] inline void transpose16(__m512 r[16]) {
  __m512i v[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) v[i] = _mm512_castps_si512(r[i]);
  transpose16(v);
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = _mm512_castsi512_ps(v[i]);
}

}  // namespace dl::cpu::detail
