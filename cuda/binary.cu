// Binary ops and comparisons (uint8 out), with the CPU kernels' semantics
// (tensor/cpu/elementwise.cpp): NaN propagates through maximum/minimum, integer division by zero
// gives 0 (ops::binary refuses it before calling, so it never happens).
#include "cuda/elementwise.cuh"

namespace dl::cuda::k {
namespace {

// dl::ops::BinaryOp
enum { kAdd, kSub, kMul, kDiv, kMaximum, kMinimum, kEq, kNe, kLt, kLe, kGt, kGe };

template <typename T>
void binary_typed(int op, void* out_v, const void* a, const void* b, const Iter& it) {
  InPtrs<T, 2> in{{static_cast<const T*>(a), static_cast<const T*>(b)}};
  T* out = static_cast<T*>(out_v);
  uint8_t* cmp = static_cast<uint8_t*>(out_v);
  using U = uint8_t;
  switch (op) {
    case kAdd: return launch_map<T, T, 2>(out, in, it, [] __device__(T x, T y) { return static_cast<T>(x + y); });
    case kSub: return launch_map<T, T, 2>(out, in, it, [] __device__(T x, T y) { return static_cast<T>(x - y); });
    case kMul: return launch_map<T, T, 2>(out, in, it, [] __device__(T x, T y) { return static_cast<T>(x * y); });
    case kDiv:
      if constexpr (std::is_integral_v<T>)
        return launch_map<T, T, 2>(out, in, it, [] __device__(T x, T y) { return y == 0 ? T(0) : static_cast<T>(x / y); });
      else
        return launch_map<T, T, 2>(out, in, it, [] __device__(T x, T y) { return x / y; });
    case kMaximum:
      return launch_map<T, T, 2>(out, in, it, [] __device__(T x, T y) {
        if (d_isnan(x) || d_isnan(y)) return static_cast<T>(x + y);
        return x > y ? x : y;
      });
    case kMinimum:
      return launch_map<T, T, 2>(out, in, it, [] __device__(T x, T y) {
        if (d_isnan(x) || d_isnan(y)) return static_cast<T>(x + y);
        return x < y ? x : y;
      });
    case kEq: return launch_map<U, T, 2>(cmp, in, it, [] __device__(T x, T y) { return U(x == y); });
    case kNe: return launch_map<U, T, 2>(cmp, in, it, [] __device__(T x, T y) { return U(x != y); });
    case kLt: return launch_map<U, T, 2>(cmp, in, it, [] __device__(T x, T y) { return U(x < y); });
    case kLe: return launch_map<U, T, 2>(cmp, in, it, [] __device__(T x, T y) { return U(x <= y); });
    case kGt: return launch_map<U, T, 2>(cmp, in, it, [] __device__(T x, T y) { return U(x > y); });
    case kGe: return launch_map<U, T, 2>(cmp, in, it, [] __device__(T x, T y) { return U(x >= y); });
  }
  DL_CUDA_REQUIRE(false, "binary: unknown op");
}

}  // namespace

void binary(int op, DT dt, void* out, const void* a, const void* b, const Iter& it) {
  KDISPATCH_ALL(dt, "binary", binary_typed, op, out, a, b, it);
}

}  // namespace dl::cuda::k
