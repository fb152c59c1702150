// The direct convolution (conv_direct.inc) for AVX-512F and BW: 16 float32 values a vector, tiles of up to 8
// positions x 4 vectors (6 x 4: 24 of the 32 registers hold sums), and the bfloat16 forms (vdpbf16ps). Compiled
// with -mavx512f -mavx512bw -mavx512bf16; conv_direct.cpp calls it only where CPUID has AVX-512F and BW, and the
// bfloat16 forms only where it has AVX512_BF16.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include <immintrin.h>

#include "tensor/cpu/avx512_transpose.h"
#include "tensor/cpu/conv_direct.h"
#include "tensor/cpu/cpu_info.h"
#include "tensor/cpu/omp_threads.h"
#include "tensor/cpu/scratch.h"
#include "tensor/half.h"

namespace dl::cpu {
namespace direct_avx512 {
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
  static void transpose(F r[W]) { detail::transpose16(r); }
  // (the emulated bfloat16 of conv_direct.inc, which this file never takes: it pairs bfloat16 values instead)
  static F round_bf16(F v) { return _mm512_cvtpbh_ps(_mm512_cvtneps_pbh(v)); }
};
}  // namespace
#define DL_DIRECT_BF16 1
#define DL_DIRECT_NAME "avx512"
#define DL_DIRECT_KERNELS kernels
#include "tensor/cpu/conv_direct.inc"
}  // namespace direct_avx512

const DirectKernels& direct_kernels_avx512() { return direct_avx512::kernels(); }
}  // namespace dl::cpu
