// Unary ops, pow, where, copy with dtype conversion and fill; the semantics are the CPU kernels'
// (tensor/cpu/elementwise.cpp): stable sigmoid, integer ops where the CPU allows them.
#include "cuda/elementwise.cuh"
#include "tensor/half.h"

// Every dtype, the 16-bit storage types included: copy, fill and where only move or convert values.
#define KDISPATCH_STORAGE(dt, name, fn, ...)                              \
  do {                                                                    \
    switch (dt) {                                                         \
      KDISPATCH_COMPUTING_CASES(fn, __VA_ARGS__)                          \
      case ::dl::DType::BFloat16: fn<::dl::BFloat16>(__VA_ARGS__); break; \
      case ::dl::DType::Float16: fn<::dl::Float16>(__VA_ARGS__); break;   \
      default: DL_CUDA_REQUIRE(false, name ": unknown dtype");            \
    }                                                                     \
  } while (0)

namespace dl::cuda::k {
namespace {

// One case per op of DL_UNARY_OPS, running the functor the CPU kernel runs (tensor/op_defs.h).
template <typename T>
void unary_typed(ops::UnaryOp op, void* out_v, const void* in_v, const Iter& it, const ops::UnaryArgs& args) {
  T* out = static_cast<T*>(out_v);
  InPtrs<T, 1> in{{static_cast<const T*>(in_v)}};
  switch (op) {
#define DL_UNARY_CASE(Name, name)                                           \
  case ops::UnaryOp::Name:                                                  \
    if constexpr (ops::fn::Name::kIntegers || std::is_floating_point_v<T>)  \
      return launch_map<T, T, 1>(out, in, it, ops::make_unary<ops::fn::Name>(args)); \
    break;
    DL_UNARY_OPS(DL_UNARY_CASE)
#undef DL_UNARY_CASE
  }
  DL_CUDA_REQUIRE(false, "unary op is not defined for this dtype");
}

template <typename T>
void pow_typed(void* out_v, const void* in_v, double e, const Iter& it) {
  T* out = static_cast<T*>(out_v);
  InPtrs<T, 1> in{{static_cast<const T*>(in_v)}};
  if (e == 2.0) return launch_map<T, T, 1>(out, in, it, [] __device__(T x) { return x * x; });
  if (e == 0.5) return launch_map<T, T, 1>(out, in, it, [] __device__(T x) { return d_sqrt(x); });
  const T se = static_cast<T>(e);
  launch_map<T, T, 1>(out, in, it, [se] __device__(T x) { return d_pow(x, se); });
}

template <typename T>
void where_typed(void* out_v, const void* cond_v, const void* a_v, const void* b_v, const Iter& it) {
  T* out = static_cast<T*>(out_v);
  const uint8_t* cond = static_cast<const uint8_t*>(cond_v);
  const T* a = static_cast<const T*>(a_v);
  const T* b = static_cast<const T*>(b_v);
  launch_offsets<4>(it, [=] __device__(const int64_t (&off)[4]) {
    out[off[0]] = cond[off[1]] != 0 ? a[off[2]] : b[off[3]];
  });
}

template <typename TO>
struct CopyFrom {
  template <typename TI>
  static void run(TO* dst, const void* src, const Iter& it) {
    launch_map<TO, TI, 1>(dst, InPtrs<TI, 1>{{static_cast<const TI*>(src)}}, it,
                          [] __device__(TI x) { return convert_scalar<TO>(x); });
  }
};

template <typename TO>
void copy_to(void* dst_v, DType src_dt, const void* src, const Iter& it) {
  TO* dst = static_cast<TO*>(dst_v);
  switch (src_dt) {
    case DType::Float32: return CopyFrom<TO>::template run<float>(dst, src, it);
    case DType::Float64: return CopyFrom<TO>::template run<double>(dst, src, it);
    case DType::Int64: return CopyFrom<TO>::template run<int64_t>(dst, src, it);
    case DType::UInt8: return CopyFrom<TO>::template run<uint8_t>(dst, src, it);
    case DType::BFloat16: return CopyFrom<TO>::template run<BFloat16>(dst, src, it);
    case DType::Float16: return CopyFrom<TO>::template run<Float16>(dst, src, it);
  }
  DL_CUDA_REQUIRE(false, "copy: unknown source dtype");
}

template <typename T>
void fill_typed(void* dst_v, double value, const Iter& it) {
  const T v = static_cast<T>(value);
  launch_map<T, T, 0>(static_cast<T*>(dst_v), InPtrs<T, 0>{{nullptr}}, it, [v] __device__() { return v; });
}

int dtype_size(DType dt) {
  switch (dt) {
    case DType::UInt8: return 1;
    case DType::BFloat16:
    case DType::Float16: return 2;
    case DType::Float32: return 4;
    case DType::Float64:
    case DType::Int64: return 8;
  }
  return 8;
}

}  // namespace

void unary(ops::UnaryOp op, DType dt, void* out, const void* in, const Iter& it, const ops::UnaryArgs& args) {
  KDISPATCH_ALL(dt, "unary", unary_typed, op, out, in, it, args);
}

void pow_scalar(DType dt, void* out, const void* in, double e, const Iter& it) {
  KDISPATCH_FLOATING(dt, "pow", pow_typed, out, in, e, it);
}

void where(DType dt, void* out, const void* cond, const void* a, const void* b, const Iter& it) {
  KDISPATCH_STORAGE(dt, "where", where_typed, out, cond, a, b, it);
}

void copy(DType dst_dt, DType src_dt, void* dst, const void* src, const Iter& it) {
  if (it.numel <= 0) return;
  if (dst_dt == src_dt && is_contiguous(it)) {  // a plain memcpy on the stream
    DL_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(it.numel) * dtype_size(dst_dt),
                                  cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  KDISPATCH_STORAGE(dst_dt, "copy", copy_to, dst, src_dt, src, it);
}

void fill(DType dt, void* dst, double value, const Iter& it) { KDISPATCH_STORAGE(dt, "fill", fill_typed, dst, value, it); }

}  // namespace dl::cuda::k
