#pragma once
// Element types. Kernels are written once as templates and instantiated per dtype through the
// DL_DISPATCH_* macros, which turn a run-time DType into a compile-time `scalar_t`.
#include <cstdint>
#include <string_view>

#include "tensor/error.h"
#include "tensor/half.h"     // BFloat16, Float16
#include "tensor/op_defs.h"  // enum class DType (shared with the CUDA kernels)

namespace dl {

constexpr int64_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Int64: return 8;
    case DType::UInt8: return 1;
    case DType::BFloat16: return 2;
    case DType::Float16: return 2;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int64: return "int64";
    case DType::UInt8: return "uint8";
    case DType::BFloat16: return "bfloat16";
    case DType::Float16: return "float16";
  }
  return "?";
}

// float32 and float64: the dtypes the arithmetic kernels compute in (and autograd differentiates).
constexpr bool is_floating(DType t) { return t == DType::Float32 || t == DType::Float64; }

// bfloat16 and float16: storage dtypes. They convert (to(), copy_), fill, view, print, compare
// (max_difference, allclose), select with where(), concatenate and travel through weight files; an
// arithmetic op refuses them (check_computable) instead of computing in 16 bits.
constexpr bool is_low_precision(DType t) { return t == DType::BFloat16 || t == DType::Float16; }

// Any floating dtype, 16-bit ones included (printing, weight files, promotion).
constexpr bool is_floating_point(DType t) { return is_floating(t) || is_low_precision(t); }

// The refusal of an arithmetic op given a 16-bit tensor: names the op and the dtype and says what to do.
inline void check_computable(DType t, const char* op) {
  if (is_low_precision(t))
    fail("{}: {} tensors are storage only (convert, copy, view, print, save and load); convert with "
         ".to(DType::Float32) first", op, dtype_name(t));
}

// The dtype of a binary op's result, as PyTorch: the wider category wins (uint8 < int64 < floating),
// and among floats the wider type (float16, bfloat16 < float32 < float64); float16 with bfloat16,
// neither holding the other, gives float32.
constexpr DType promote_types(DType a, DType b) {
  if (a == b) return a;
  auto rank = [](DType t) {
    switch (t) {
      case DType::UInt8: return 0;
      case DType::Int64: return 1;
      case DType::BFloat16: return 2;
      case DType::Float16: return 2;
      case DType::Float32: return 3;
      case DType::Float64: return 4;
    }
    return 0;
  };
  if (rank(a) == rank(b)) return DType::Float32;  // bfloat16 with float16
  return rank(a) > rank(b) ? a : b;
}

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::Float64; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::UInt8; };
template <> struct dtype_of<BFloat16> { static constexpr DType value = DType::BFloat16; };
template <> struct dtype_of<Float16> { static constexpr DType value = DType::Float16; };

}  // namespace dl

#define DL_DISPATCH_CASE(enum_value, type, ...) \
  case enum_value: {                            \
    using scalar_t = type;                      \
    return __VA_ARGS__();                       \
  }

// DL_DISPATCH_FLOATING(dtype, "op", [&] { kernel<scalar_t>(...); })
#define DL_DISPATCH_FLOATING(dtype, opname, ...)                                              \
  [&] {                                                                                       \
    switch (dtype) {                                                                          \
      DL_DISPATCH_CASE(::dl::DType::Float32, float, __VA_ARGS__)                              \
      DL_DISPATCH_CASE(::dl::DType::Float64, double, __VA_ARGS__)                             \
      default:                                                                                \
        ::dl::check_computable(dtype, opname);                                                \
        ::dl::fail("{}: expected a float32 or float64 tensor, got {}", opname,                \
                   ::dl::dtype_name(dtype));                                                  \
    }                                                                                         \
  }()

// The cases of the four computing dtypes (one list for DL_DISPATCH_ALL and DL_DISPATCH_STORAGE).
#define DL_DISPATCH_COMPUTING_CASES(...)                                                      \
  DL_DISPATCH_CASE(::dl::DType::Float32, float, __VA_ARGS__)                                  \
  DL_DISPATCH_CASE(::dl::DType::Float64, double, __VA_ARGS__)                                 \
  DL_DISPATCH_CASE(::dl::DType::Int64, int64_t, __VA_ARGS__)                                  \
  DL_DISPATCH_CASE(::dl::DType::UInt8, uint8_t, __VA_ARGS__)

// The four computing dtypes; a 16-bit one is refused with check_computable's message.
#define DL_DISPATCH_ALL(dtype, opname, ...)                                                   \
  [&] {                                                                                       \
    switch (dtype) {                                                                          \
      DL_DISPATCH_COMPUTING_CASES(__VA_ARGS__)                                                \
      case ::dl::DType::BFloat16:                                                             \
      case ::dl::DType::Float16: break;                                                       \
    }                                                                                         \
    ::dl::check_computable(dtype, opname);                                                    \
    ::dl::fail("{}: unknown dtype {}", opname, static_cast<int>(dtype));                      \
  }()

// Every dtype, the 16-bit storage types included: for kernels that only move or convert values
// (copy, fill, where, element access).
#define DL_DISPATCH_STORAGE(dtype, opname, ...)                                               \
  [&] {                                                                                       \
    switch (dtype) {                                                                          \
      DL_DISPATCH_COMPUTING_CASES(__VA_ARGS__)                                                \
      DL_DISPATCH_CASE(::dl::DType::BFloat16, ::dl::BFloat16, __VA_ARGS__)                    \
      DL_DISPATCH_CASE(::dl::DType::Float16, ::dl::Float16, __VA_ARGS__)                      \
    }                                                                                         \
    ::dl::fail("{}: unknown dtype {}", opname, static_cast<int>(dtype));                      \
  }()
