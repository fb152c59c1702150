// The max pool's vector paths (pool_max.inc), compiled for AVX-512 (simd_avx512.cpp) and AVX2 (simd_avx2.cpp);
// pool.cpp picks the best the CPU has (or DL_POOL_KERNEL=avx2|scalar) and keeps the scalar loops for the rest.
#pragma once
#include <cstdint>

#include "tensor/op_defs.h"

namespace dl::cpu {

struct MaxPoolKernels {
  const char* name;
  // 3x3 windows at horizontal stride 2 (vertical stride sh), values only, from the -inf bordered plane (row length
  // Wq, each row at least 2 Wo + 1 long)
  void (*max3x3_s2_rows)(float* op, const float* pad, int64_t Wq, int64_t Ho, int64_t Wo, int64_t sh);
  // K x K windows (K = 2, 3: entries 0, 1) at horizontal stride 2, values and indices, from the plane (windows
  // inside it) or its -inf bordered copy (row length Wq)
  void (*indexed_s2[2])(float* op, int64_t* ip, const float* pad, int64_t Wq, const Pool2dParams& p);
};

// Defined in simd_avx512.cpp and simd_avx2.cpp; call only where the CPU has that set.
const MaxPoolKernels& max_pool_kernels_avx512();
const MaxPoolKernels& max_pool_kernels_avx2();

}  // namespace dl::cpu
