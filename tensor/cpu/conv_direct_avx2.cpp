// The direct convolution (conv_direct.inc) for AVX2 and FMA: 8 float32 values a vector, tiles of 8 positions x 1
// vector, 6 x 2 or 4 x 3 (12 of the 16 registers hold sums); float32, and bfloat16 emulated (operands rounded to
// bfloat16 in float32 copies, multiplied and summed in float32). Compiled with -mavx2 -mfma; conv_direct.cpp calls
// it only where CPUID has both.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include <immintrin.h>

#include "tensor/cpu/conv_direct.h"
#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/omp_threads.h"
#include "tensor/cpu/scratch.h"

namespace dl::cpu {
namespace direct_avx2 {
namespace {
struct V {
  static constexpr int W = 8, kMaxNv = 3;
  using F = __m256;
  static constexpr int mr_for(int nv) { return nv == 1 ? 8 : nv == 2 ? 6 : 4; }
  static F zero() { return _mm256_setzero_ps(); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static F set1(float x) { return _mm256_set1_ps(x); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  // lanes [0, n) all ones (n <= 8): vmaskmovps's mask
  static __m256i mask(int64_t n) {
    static const int32_t ones[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ones + 8 - n));
  }
  // the first n values (n <= 8), zeros after them; and their store
  static F load_n(const float* p, int64_t n) { return n == W ? load(p) : _mm256_maskload_ps(p, mask(n)); }
  static void store_n(float* p, F v, int64_t n) { _mm256_maskstore_ps(p, mask(n), v); }
  // each value rounded to the nearest bfloat16 (ties to even; a NaN stays a NaN), as round_bf16
  static F round_bf16(F v) {
    const __m256i b = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
    const __m256i up = _mm256_add_epi32(b, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
    const __m256i quiet = _mm256_or_si256(b, _mm256_set1_epi32(0x00400000));
    const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    const __m256i r = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(up), _mm256_castsi256_ps(quiet), nan));
    return _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  // r[i] lane j -> r[j] lane i
  static void transpose(F r[W]) {
    F t[8], u[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; ++h) {  // rows 4h..4h+3
      u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
      u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xee);
      u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
      u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xee);
    }
    for (int i = 0; i < 4; ++i) {
      r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
      r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
    }
  }
};
}  // namespace
#define DL_DIRECT_BF16 0
#define DL_DIRECT_NAME "avx2"
#define DL_DIRECT_KERNELS kernels
#include "tensor/cpu/conv_direct.inc"
}  // namespace direct_avx2

const DirectKernels& direct_kernels_avx2() { return direct_avx2::kernels(); }
}  // namespace dl::cpu
