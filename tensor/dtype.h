#pragma once
// Element types. Kernels are written once as templates and instantiated per dtype through the
// DL_DISPATCH_* macros, which turn a run-time DType into a compile-time `scalar_t`.
#include <cstdint>
#include <string_view>

#include "tensor/error.h"
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

constexpr bool is_floating(DType t) { return t == DType::Float32 || t == DType::Float64; }

// The dtype of a binary op's result: the wider of the two (uint8 < int64 < float32 < float64).
constexpr DType promote_types(DType a, DType b) {
  auto rank = [](DType t) {
    switch (t) {
      case DType::UInt8: return 0;
      case DType::Int64: return 1;
      case DType::Float32: return 2;
      case DType::Float64: return 3;
    }
    return 0;
  };
  return rank(a) >= rank(b) ? a : b;
}

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::Float64; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::UInt8; };

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
        ::dl::fail("{}: expected a float32 or float64 tensor, got {}", opname,                \
                   ::dl::dtype_name(dtype));                                                  \
    }                                                                                         \
  }()

#define DL_DISPATCH_ALL(dtype, opname, ...)                                                   \
  [&] {                                                                                       \
    switch (dtype) {                                                                          \
      DL_DISPATCH_CASE(::dl::DType::Float32, float, __VA_ARGS__)                              \
      DL_DISPATCH_CASE(::dl::DType::Float64, double, __VA_ARGS__)                             \
      DL_DISPATCH_CASE(::dl::DType::Int64, int64_t, __VA_ARGS__)                              \
      DL_DISPATCH_CASE(::dl::DType::UInt8, uint8_t, __VA_ARGS__)                              \
    }                                                                                         \
    ::dl::fail("{}: unknown dtype", opname);                                                  \
  }()
