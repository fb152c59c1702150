#pragma once
// Contiguous float32 <-> bfloat16 / float16 conversion loops, for the copy kernel's common case
// (Tensor::to(DType::BFloat16) and back). float32 -> bfloat16 uses AVX512_BF16's
// vcvtne2ps2bf16 when the CPU has it (chosen at run time), else a portable loop the compiler
// vectorises; both round to nearest even and give the same bits (dl::BFloat16's rule). float32 ->
// float16 likewise uses F16C's vcvtps2ph where the CPU has it (DL_NO_F16C=1 turns it off).
#include <cstdint>

#include "tensor/half.h"

namespace dl::cpu {

// True when the CPU runs AVX512_BF16 (and DL_NO_AVX512_BF16 is not set in the environment).
bool has_avx512_bf16();
// portable_only: skip the AVX512_BF16 path (tests compare the two).
void float_to_bfloat16(BFloat16* out, const float* in, int64_t n, bool portable_only = false);
void bfloat16_to_float(float* out, const BFloat16* in, int64_t n);
bool has_f16c();
void float_to_float16(Float16* out, const float* in, int64_t n, bool portable_only = false);
void float16_to_float(float* out, const Float16* in, int64_t n);

}  // namespace dl::cpu
