#pragma once
// Internal: an in-register transpose of an 8 x 8 block of floats, and the even elements of two vectors, on AVX2;
// shared by the AVX2 kernels (simd_avx2.cpp, gemm_avx2.cpp, compiled with -mavx2) and the AVX2 paths of conv.cpp
// and winograd.cpp (functions with target("avx2,fma")). Call them only where the CPU has AVX2.
#include <immintrin.h>

namespace dl::cpu::detail {

// r[i] lane j -> r[j] lane i. Every loop here, and every loop of a caller over r, runs a fixed number of times and
// is unrolled (its bounds constants, `#pragma GCC unroll`), so that r, t and u live in registers: at -O2 GCC had
// kept these loops and all three arrays on the stack, and the callers' transposes ran 1.5-1.8x slower (Winograd's
// NCHW -> NHWC copies; AVX2 Zen 4 guest).
__attribute__((target("avx2"), always_inline)) inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);      // r0_0 r1_0 r0_1 r1_1 | r0_4 r1_4 r0_5 r1_5
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);  // r0_2 r1_2 r0_3 r1_3 | r0_6 r1_6 r0_7 r1_7
  }
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {  // rows 4h..4h+3: columns 0|4, 1|5, 2|6, 3|7
    u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
    u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xee);
    u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xee);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
    r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
  }
}

// The even elements of lo then of hi: lo0 lo2 lo4 lo6 hi0 hi2 hi4 hi6.
__attribute__((target("avx2"), always_inline)) inline __m256 even8(__m256 lo, __m256 hi) {
  // [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6] -> 64-bit lanes 0, 2, 1, 3
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
}

}  // namespace dl::cpu::detail
