// The kernels written once over a vector type, compiled for AVX-512F and BW (-mavx512f -mavx512bw -mavx512bf16;
// conv_direct.cpp and pool.cpp call them only where CPUID has AVX-512F and BW, and the bfloat16 forms only where it
// has AVX512_BF16): 16 float32 values a vector.
// - The direct convolution (conv_direct.inc): tiles of up to 8 positions x 4 vectors (6 x 4: 24 of the 32
//   registers hold sums), and the bfloat16 forms (vdpbf16ps).
// - The max pool's vector paths (pool_max.inc).
#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include <immintrin.h>

#include "tensor/cpu/avx512_transpose.h"
#include "tensor/cpu/conv_direct.h"
#include "tensor/cpu/convert16.h"
#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/omp_threads.h"
#include "tensor/cpu/pool_max.h"
#include "tensor/cpu/scratch.h"
#include "tensor/half.h"

namespace dl::cpu {
namespace avx512 {
namespace {
struct V {
  static constexpr int W = 16, kMaxNv = 4;
  using F = __m512;
  static constexpr int mr_for(int nv) { return nv == 4 ? 6 : 8; }
  static F zero() { return _mm512_setzero_ps(); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static F set1(float x) { return _mm512_set1_ps(x); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  // the first n values (n <= 16), zeros after them; and their store
  static F load_n(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p); }
  static void store_n(float* p, F v, int64_t n) { _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v); }
  // p[0], p[stride], ..., p[15 stride]
  static F gather(const float* p, int64_t stride) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i at = _mm512_mullo_epi32(lane, _mm512_set1_epi32(static_cast<int32_t>(stride)));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xFFFF, at, p, 4);
  }
  [[gnu::always_inline]] static void transpose(F r[W]) { detail::transpose16(r); }
  // (the emulated bfloat16 of conv_direct.inc, which this file never takes: it pairs bfloat16 values instead)
  static F round_bf16(F v) { return _mm512_cvtpbh_ps(_mm512_cvtneps_pbh(v)); }

  // for pool_max.inc (the members it lists)
  using M = __mmask16;
  using I = __m512i;
  static __mmask16 first(int64_t n) {  // lanes [0, n), n clamped to [0, 16]
    n = std::clamp<int64_t>(n, 0, W);
    return static_cast<__mmask16>(n == W ? 0xFFFF : (1u << n) - 1);
  }
  static F ninf() { return _mm512_set1_ps(-std::numeric_limits<float>::infinity()); }
  static F load_or_ninf(const float* p, int64_t n) { return _mm512_mask_loadu_ps(ninf(), first(n), p); }
  static F nan_max(F a, F b) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), _mm512_max_ps(a, b), a);
  }
  static F even(F lo, F hi) {
    return _mm512_permutex2var_ps(lo, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), hi);
  }
  static F odd(F lo, F hi) {
    return _mm512_permutex2var_ps(lo, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), hi);
  }
  static F next(F a, F b) {
    return _mm512_permutex2var_ps(a, _mm512_setr_epi32(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16), b);
  }
  static M takes(F v, F best) { return _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q); }
  static F select(M m, F a, F b) { return _mm512_mask_mov_ps(a, m, b); }
  static I iselect(M m, I a, I b) { return _mm512_mask_mov_epi32(a, m, b); }
  static I iset1(int32_t v) { return _mm512_set1_epi32(v); }
  static I iset_first(I a, int32_t v) { return _mm512_mask_set1_epi32(a, 1, v); }
  static void store_index(int64_t* d, int64_t base, I off, int64_t n) {
    const __m512i b = _mm512_add_epi64(_mm512_set1_epi64(base), _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14));
    const __m512i i0 = _mm512_add_epi64(b, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(off)));
    const __m512i i1 = _mm512_add_epi64(_mm512_add_epi64(b, _mm512_set1_epi64(16)),
                                        _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(off, 1)));
    const __mmask16 m = first(n);
    _mm512_mask_storeu_epi64(d, static_cast<__mmask8>(m & 0xFF), i0);
    _mm512_mask_storeu_epi64(d + 8, static_cast<__mmask8>(m >> 8), i1);
  }
};
}  // namespace
#define DL_SIMD_NAME "avx512"
#define DL_DIRECT_BF16 1
namespace direct {
#include "tensor/cpu/conv_direct.inc"
}  // namespace direct
namespace pool {
#include "tensor/cpu/pool_max.inc"
}  // namespace pool
}  // namespace avx512

const DirectKernels& direct_kernels_avx512() { return avx512::direct::kernels(); }
const MaxPoolKernels& max_pool_kernels_avx512() { return avx512::pool::kernels(); }
}  // namespace dl::cpu
