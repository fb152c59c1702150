// The kernels written once over a vector type, compiled for AVX2 and FMA (-mavx2 -mfma; conv_direct.cpp and
// pool.cpp call them only where CPUID has both): 8 float32 values a vector.
// - The direct convolution (conv_direct.inc): tiles of 8 positions x 1 vector, 6 x 2 or 4 x 3 (12 of the 16
//   registers hold sums); float32, and bfloat16 emulated (operands rounded to bfloat16 in float32 copies,
//   multiplied and summed in float32).
// - The max pool's vector paths (pool_max.inc).
#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include <immintrin.h>

#include "tensor/cpu/avx2_transpose.h"

#include "tensor/cpu/conv_direct.h"
#include "tensor/cpu/convert16.h"
#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/omp_threads.h"
#include "tensor/cpu/pool_max.h"
#include "tensor/cpu/scratch.h"

namespace dl::cpu {
namespace avx2 {
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
  // (a partial vector through a small buffer: vmaskmovps's store is slow on AMD CPUs, and store_n writes the tails
  // of output rows, index rows and tiles)
  static void store_n(float* p, F v, int64_t n) {
    if (n == W) {
      store(p, v);
      return;
    }
    alignas(32) float t[W];
    _mm256_store_ps(t, v);
    for (int64_t i = 0; i < n; ++i) p[i] = t[i];
  }
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
  // p[0], p[stride], ..., p[7 stride]
  static F gather(const float* p, int64_t stride) {
    return _mm256_i32gather_ps(p, _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                                     _mm256_set1_epi32(static_cast<int32_t>(stride))), 4);
  }
  // r[i] lane j -> r[j] lane i
  [[gnu::always_inline]] static void transpose(F r[W]) { detail::transpose8(r); }

  // for pool_max.inc (the members it lists); masks are the compares' all-ones lanes
  using M = __m256;
  using I = __m256i;
  static F ninf() { return _mm256_set1_ps(-std::numeric_limits<float>::infinity()); }
  static F load_or_ninf(const float* p, int64_t n) {
    if (n >= W) return load(p);
    const __m256i m = mask(std::max<int64_t>(n, 0));
    return _mm256_blendv_ps(ninf(), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static F nan_max(F a, F b) { return _mm256_blendv_ps(_mm256_max_ps(a, b), a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q)); }
  static F even(F lo, F hi) { return detail::even8(lo, hi); }
  static F odd(F lo, F hi) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
  }
  static F next(F a, F b) {
    return _mm256_blend_ps(_mm256_permutevar8x32_ps(a, _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0)),
                           _mm256_permutevar8x32_ps(b, _mm256_setzero_si256()), 0x80);
  }
  static M takes(F v, F best) { return _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q)); }
  static F select(M m, F a, F b) { return _mm256_blendv_ps(a, b, m); }
  static I iselect(M m, I a, I b) {
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), m));
  }
  static I iset1(int32_t v) { return _mm256_set1_epi32(v); }
  static I iset_first(I a, int32_t v) { return _mm256_blend_epi32(a, _mm256_set1_epi32(v), 1); }
  static void store_index(int64_t* d, int64_t base, I off, int64_t n) {
    const __m256i b = _mm256_add_epi64(_mm256_set1_epi64x(base), _mm256_setr_epi64x(0, 2, 4, 6));
    const __m256i i0 = _mm256_add_epi64(b, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(off)));
    const __m256i i1 = _mm256_add_epi64(_mm256_add_epi64(b, _mm256_set1_epi64x(8)),
                                        _mm256_cvtepi32_epi64(_mm256_extracti128_si256(off, 1)));
    // plain stores, a partial vector through a small buffer (vpmaskmovq's store is slow on AMD CPUs: the 64x32x32
    // 3x3/2 pool with indices ran 1.13-1.37x faster without it on the Zen 4 guest)
    if (n >= 8) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), i0);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + 4), i1);
      return;
    }
    alignas(32) int64_t t[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(t), i0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(t + 4), i1);
    for (int64_t i = 0; i < n; ++i) d[i] = t[i];
  }
};
}  // namespace
#define DL_SIMD_NAME "avx2"
#define DL_DIRECT_BF16 0
namespace direct {
#include "tensor/cpu/conv_direct.inc"
}  // namespace direct
namespace pool {
#include "tensor/cpu/pool_max.inc"
}  // namespace pool
}  // namespace avx2

const DirectKernels& direct_kernels_avx2() { return avx2::direct::kernels(); }
const MaxPoolKernels& max_pool_kernels_avx2() { return avx2::pool::kernels(); }
}  // namespace dl::cpu
