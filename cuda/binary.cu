// Binary ops and comparisons (uint8 out), with the CPU kernels' semantics
// (tensor/cpu/elementwise.cpp): NaN propagates through maximum/minimum, integer division by zero
// gives 0 (ops::binary refuses it before calling, so it never happens).
#include "cuda/elementwise.cuh"

namespace dl::cuda::k {
namespace {

// One case per op of DL_BINARY_OPS, running the functor the CPU kernel runs (tensor/op_defs.h);
// comparisons write uint8.
template <typename T>
void binary_typed(ops::BinaryOp op, void* out_v, const void* a, const void* b, const Iter& it) {
  InPtrs<T, 2> in{{static_cast<const T*>(a), static_cast<const T*>(b)}};
  switch (op) {
#define DL_BINARY_CASE(Name, name)                                                 \
  case ops::BinaryOp::Name: {                                                      \
    using TO = std::conditional_t<ops::fn::Name::kComparison, uint8_t, T>;         \
    return launch_map<TO, T, 2>(static_cast<TO*>(out_v), in, it, ops::fn::Name{}); \
  }
    DL_BINARY_OPS(DL_BINARY_CASE)
#undef DL_BINARY_CASE
  }
  DL_CUDA_REQUIRE(false, "binary: unknown op");
}

}  // namespace

void binary(ops::BinaryOp op, DType dt, void* out, const void* a, const void* b, const Iter& it) {
  KDISPATCH_ALL(dt, "binary", binary_typed, op, out, a, b, it);
}

}  // namespace dl::cuda::k
