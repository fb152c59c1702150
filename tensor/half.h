#pragma once
// The 16-bit floating storage types: dl::BFloat16 (the upper half of a float32) and dl::Float16
// (IEEE 754 binary16). Plain 2-byte structs holding the bits, with explicit conversions to and
// from float: float -> 16 bits rounds to nearest, ties to even; NaN stays a (quiet) NaN; values
// past the largest finite one become inf; float16 keeps its subnormals. 16 bits -> float is exact.
// Other arithmetic types convert through float (so double -> bfloat16 rounds twice, as PyTorch).
//
// Both compilers include this header (tensor/dtype.h for g++, cuda/elementwise.cu for nvcc), so it
// is C++17 and every function is DL_HD. There is no arithmetic on these types on purpose: kernels
// convert to float, compute, and convert back (docs/architecture.md, "Element types").
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "tensor/op_defs.h"  // DL_HD

namespace dl {
namespace half_detail {

DL_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

DL_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// bfloat16: add 0x7FFF plus the lowest kept bit, then truncate (RNE). A NaN gets its quiet bit set
// so that truncation cannot turn a signalling NaN with a low payload into inf.
DL_HD uint16_t float_to_bf16_bits(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

DL_HD float bf16_bits_to_float(uint16_t b) { return bits_float(static_cast<uint32_t>(b) << 16); }

// float16, all integer arithmetic (no dependence on the FPU's rounding or flush-to-zero modes).
DL_HD uint16_t float_to_f16_bits(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));  // NaN, quiet
  if (a >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 (or inf): inf
  if (a >= 0x38800000u) {  // normal half (>= 2^-14): rebias the exponent, round the 13 dropped bits
    const uint32_t r = a + 0xC8000FFFu + ((a >> 13) & 1u);  // (15 - 127) << 23, then RNE
    return static_cast<uint16_t>(sign | (r >> 13));
  }
  if (a <= 0x33000000u) return static_cast<uint16_t>(sign);  // <= 2^-25: rounds to (signed) zero
  // subnormal half: value = m * 2^(e - 150), in units of 2^-24 that is m >> (126 - e)
  const uint32_t e = a >> 23;
  const uint32_t m = (a & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126u - e;  // 14..24
  uint32_t r = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
  if (rem > halfway || (rem == halfway && (r & 1u))) ++r;  // may carry into the smallest normal: fine
  return static_cast<uint16_t>(sign | r);
}

DL_HD float f16_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1Fu) return bits_float(sign | 0x7F800000u | (mant << 13));  // inf, NaN (payload kept)
  if (exp != 0) return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return bits_float(sign);
  uint32_t e = 113;  // subnormal: shift the leading one up to the implicit bit
  while ((mant & 0x400u) == 0) {
    mant <<= 1;
    --e;
  }
  return bits_float(sign | (e << 23) | ((mant & 0x3FFu) << 13));
}

template <typename T>
inline constexpr bool kConvertible = std::is_arithmetic_v<T>;

}  // namespace half_detail

struct BFloat16 {
  uint16_t bits;

  BFloat16() = default;
  DL_HD explicit BFloat16(float f) : bits(half_detail::float_to_bf16_bits(f)) {}
  template <typename T, std::enable_if_t<half_detail::kConvertible<T> && !std::is_same_v<T, float>, int> = 0>
  DL_HD explicit BFloat16(T v) : BFloat16(static_cast<float>(v)) {}
  DL_HD static BFloat16 from_bits(uint16_t b) {
    BFloat16 x;
    x.bits = b;
    return x;
  }
  DL_HD float to_float() const { return half_detail::bf16_bits_to_float(bits); }
  template <typename T, std::enable_if_t<half_detail::kConvertible<T>, int> = 0>
  DL_HD explicit operator T() const { return static_cast<T>(to_float()); }
};

struct Float16 {
  uint16_t bits;

  Float16() = default;
  DL_HD explicit Float16(float f) : bits(half_detail::float_to_f16_bits(f)) {}
  template <typename T, std::enable_if_t<half_detail::kConvertible<T> && !std::is_same_v<T, float>, int> = 0>
  DL_HD explicit Float16(T v) : Float16(static_cast<float>(v)) {}
  DL_HD static Float16 from_bits(uint16_t b) {
    Float16 x;
    x.bits = b;
    return x;
  }
  DL_HD float to_float() const { return half_detail::f16_bits_to_float(bits); }
  template <typename T, std::enable_if_t<half_detail::kConvertible<T>, int> = 0>
  DL_HD explicit operator T() const { return static_cast<T>(to_float()); }
};

static_assert(sizeof(BFloat16) == 2 && sizeof(Float16) == 2, "16-bit storage types must be 2 bytes");
static_assert(std::is_trivially_copyable_v<BFloat16> && std::is_trivially_copyable_v<Float16>);
static_assert(std::is_standard_layout_v<BFloat16> && std::is_standard_layout_v<Float16>);

// True for the 16-bit types; kernels templated on scalar_t use it to compute in float.
template <typename T>
inline constexpr bool is_half_type_v = std::is_same_v<T, BFloat16> || std::is_same_v<T, Float16>;

// static_cast with the 16-bit types on either side (bfloat16 <-> float16 goes through float).
template <typename TO, typename TI>
DL_HD TO convert_scalar(TI x) {
  if constexpr (std::is_same_v<TO, TI>) return x;
  else if constexpr (is_half_type_v<TI> && is_half_type_v<TO>) return TO(x.to_float());
  else return static_cast<TO>(x);
}

}  // namespace dl
