// float32 <-> 16-bit conversion loops (tensor/cpu/convert16.h).
#include "tensor/cpu/convert16.h"

#include <cstdlib>

#include "tensor/cpu/loops.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define DL_HAVE_AVX512_BF16_PATH 1
#endif

namespace dl::cpu {
namespace {

// Bit-level loops on uint16_t/uint32_t views so that `omp simd` sees plain integers.
DL_VECTOR_CLONES void f32_to_bf16_portable(uint16_t* o, const float* a, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = half_detail::float_to_bf16_bits(a[i]);
}

DL_VECTOR_CLONES void bf16_to_f32_loop(float* o, const uint16_t* a, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = half_detail::bf16_bits_to_float(a[i]);
}

DL_VECTOR_CLONES void f32_to_f16_loop(uint16_t* o, const float* a, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = half_detail::float_to_f16_bits(a[i]);
}

DL_VECTOR_CLONES void f16_to_f32_loop(float* o, const uint16_t* a, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = half_detail::f16_bits_to_float(a[i]);
}

#ifdef DL_HAVE_AVX512_BF16_PATH
// 32 floats per step. The instruction rounds to nearest even and quiets NaNs exactly as
// float_to_bf16_bits, but treats float32 subnormal inputs as zero; a block holding one takes the
// scalar rule instead, so both paths give the same bits.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void f32_to_bf16_avx512(uint16_t* o, const float* a,
                                                                               int64_t n) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  const __m512i sub_max = _mm512_set1_epi32(0x007FFFFF - 1);  // (|bits| - 1) <= this: a subnormal
  const __m512i one = _mm512_set1_epi32(1);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 lo = _mm512_loadu_ps(a + i), hi = _mm512_loadu_ps(a + i + 16);
    const __m512i alo = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(lo), abs_mask), one);
    const __m512i ahi = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(hi), abs_mask), one);
    if (_mm512_cmple_epu32_mask(alo, sub_max) | _mm512_cmple_epu32_mask(ahi, sub_max)) {
      for (int64_t j = i; j < i + 32; ++j) o[j] = half_detail::float_to_bf16_bits(a[j]);
      continue;
    }
    const __m512bh r = _mm512_cvtne2ps_pbh(hi, lo);  // lanes 0..15 from lo, 16..31 from hi
    _mm512_storeu_si512(static_cast<void*>(o + i), reinterpret_cast<const __m512i&>(r));
  }
  if (i < n) {
    // the tail in one masked step (rows of 28 or 56 values are common: scalar tails would double their cost);
    // masked-off lanes load as zero, which is not a subnormal
    const int m = static_cast<int>(n - i);
    const __mmask16 mlo = m >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << m) - 1u);
    const __mmask16 mhi = m > 16 ? static_cast<__mmask16>((1u << (m - 16)) - 1u) : __mmask16(0);
    const __m512 lo = _mm512_maskz_loadu_ps(mlo, a + i), hi = _mm512_maskz_loadu_ps(mhi, a + i + 16);
    const __m512i alo = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(lo), abs_mask), one);
    const __m512i ahi = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(hi), abs_mask), one);
    if (_mm512_cmple_epu32_mask(alo, sub_max) | _mm512_cmple_epu32_mask(ahi, sub_max)) {
      for (; i < n; ++i) o[i] = half_detail::float_to_bf16_bits(a[i]);
      return;
    }
    const __m512bh r = _mm512_cvtne2ps_pbh(hi, lo);
    const __mmask32 mall = static_cast<__mmask32>((uint64_t{1} << m) - 1u);
    _mm512_mask_storeu_epi16(static_cast<void*>(o + i), mall, reinterpret_cast<const __m512i&>(r));
  }
}
#endif

// float32 -> float16, 8 per step, with F16C's vcvtps2ph in round-to-nearest-even mode (the
// immediate, not MXCSR). It gives float_to_f16_bits's bits: NaNs keep their upper payload with the
// quiet bit set, float32 subnormals round to zero either way, float16 subnormals are produced.
__attribute__((target("avx,f16c"))) void f32_to_f16_f16c(uint16_t* o, const float* a, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(a + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + i), h);
  }
  for (; i < n; ++i) o[i] = half_detail::float_to_f16_bits(a[i]);
}

bool detect_f16c() {
  if (std::getenv("DL_NO_F16C")) return false;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  const bool osxsave = ecx & (1u << 27), avx = ecx & (1u << 28), f16c = ecx & (1u << 29);
  if (!(osxsave && avx && f16c)) return false;
  unsigned lo = 0, hi = 0;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));  // the OS saves the YMM state
  return (lo & 0x6u) == 0x6u;
}

bool detect_avx512_bf16() {
#ifdef DL_HAVE_AVX512_BF16_PATH
  if (std::getenv("DL_NO_AVX512_BF16")) return false;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
#else
  return false;
#endif
}

}  // namespace

bool has_f16c() {
#ifdef DL_HAVE_AVX512_BF16_PATH
  static const bool has = detect_f16c();
  return has;
#else
  return false;
#endif
}

bool has_avx512_bf16() {
  static const bool has = detect_avx512_bf16();
  return has;
}

void float_to_bfloat16(BFloat16* out, const float* in, int64_t n, bool portable_only) {
  uint16_t* o = reinterpret_cast<uint16_t*>(out);
#ifdef DL_HAVE_AVX512_BF16_PATH
  if (!portable_only && has_avx512_bf16()) return f32_to_bf16_avx512(o, in, n);
#else
  (void)portable_only;
#endif
  f32_to_bf16_portable(o, in, n);
}

void bfloat16_to_float(float* out, const BFloat16* in, int64_t n) {
  bf16_to_f32_loop(out, reinterpret_cast<const uint16_t*>(in), n);
}
void float_to_float16(Float16* out, const float* in, int64_t n, bool portable_only) {
#ifdef DL_HAVE_AVX512_BF16_PATH
  if (!portable_only && has_f16c()) return f32_to_f16_f16c(reinterpret_cast<uint16_t*>(out), in, n);
#else
  (void)portable_only;
#endif
  f32_to_f16_loop(reinterpret_cast<uint16_t*>(out), in, n);
}
void float16_to_float(float* out, const Float16* in, int64_t n) {
  f16_to_f32_loop(out, reinterpret_cast<const uint16_t*>(in), n);
}

}  // namespace dl::cpu
