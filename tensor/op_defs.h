#pragma once
// What every layer of the framework and both compilers share about the ops: the element types,
// the lists of elementwise and reduction ops (X-macros: the enums, their names and the CPU and
// CUDA dispatch are generated from them), the scalar math of each elementwise op, and one
// parameter struct per NN op family. tensor/ (g++) and cuda/*.cu (nvcc, C++17) both include it,
// so it stays plain C++17: no fmt, no Tensor, no C++20 header.
//
// Adding a unary op = one line in DL_UNARY_OPS + one functor below (docs/add-an-op.md).
#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>

// DL_HD marks functions both the host and the device run; g++ sees plain inline functions.
#if defined(__CUDACC__)
#define DL_HD __host__ __device__ __forceinline__
#else
#define DL_HD inline
#endif

namespace dl {

// Element types (tensor/dtype.h has their sizes, names and promotion rules).
// BFloat16 and Float16 are storage types (16-bit floats, converted with round-to-nearest-even); the
// arithmetic kernels compute in float32 (tensor/dtype.h says which kernels take them).
enum class DType : uint8_t { Float32, Float64, Int64, UInt8, BFloat16, Float16 };

// ---- scalar math both compilers accept ----------------------------------------------------------
// nvcc's device pass has no std:: math; the host (and g++) keep std::, so the CPU loops vectorise
// exactly as before.
namespace math {
#if defined(__CUDA_ARCH__)
#define DL_MATH_FN(name)                                                                    \
  template <typename T>                                                                     \
  DL_HD T name(T x) {                                                                       \
    if constexpr (std::is_same_v<T, float>) return ::name##f(x); else return ::name(x);     \
  }
#else
#define DL_MATH_FN(name)                                                                    \
  template <typename T>                                                                     \
  DL_HD T name(T x) {                                                                       \
    return std::name(x);                                                                    \
  }
#endif
DL_MATH_FN(exp)
DL_MATH_FN(log)
DL_MATH_FN(sqrt)
DL_MATH_FN(tanh)
DL_MATH_FN(erf)
#undef DL_MATH_FN
template <typename T>
DL_HD bool isnan(T x) {
  if constexpr (std::is_floating_point_v<T>) return x != x;
  else return false;
}
}  // namespace math

namespace ops {

// ---- elementwise ops: X(Name, name) ------------------------------------------------------------
// Each Name is also a functor in dl::ops::fn (below) holding the op's scalar math, which the CPU
// kernel (tensor/cpu/elementwise.cpp) and the CUDA kernel (cuda/elementwise.cu) both call.
#define DL_UNARY_OPS(X) \
  X(Neg, neg)           \
  X(Exp, exp)           \
  X(Log, log)           \
  X(Sqrt, sqrt)         \
  X(Abs, abs)           \
  X(Relu, relu)         \
  X(Sigmoid, sigmoid)   \
  X(Tanh, tanh)         \
  X(Sign, sign)         \
  X(Silu, silu)         \
  X(LeakyRelu, leaky_relu)   \
  X(Gelu, gelu)              \
  X(GeluTanh, gelu_tanh)     \
  X(GeluGrad, gelu_grad)     \
  X(GeluTanhGrad, gelu_tanh_grad) \
  X(Hardswish, hardswish)         \
  X(HardswishGrad, hardswish_grad) \
  X(Clamp, clamp)                 \
  X(ClampGrad, clamp_grad)        \
  X(SiluGrad, silu_grad)          \
  X(LeakyReluGrad, leaky_relu_grad)

// Comparisons write uint8 (their functors say kComparison).
#define DL_BINARY_OPS(X) \
  X(Add, add)            \
  X(Sub, sub)            \
  X(Mul, mul)            \
  X(Div, div)            \
  X(Maximum, maximum)    \
  X(Minimum, minimum)    \
  X(Eq, eq)              \
  X(Ne, ne)              \
  X(Lt, lt)              \
  X(Le, le)              \
  X(Gt, gt)              \
  X(Ge, ge)

// Row reductions (the kernels' reducers differ per device, so there is no functor here).
#define DL_REDUCE_OPS(X) \
  X(Sum, sum)            \
  X(Mean, mean)          \
  X(Max, max)            \
  X(Min, min)

#define DL_OP_ENUM_ENTRY(Name, name) Name,
#define DL_OP_NAME_CASE(Name, name) \
  case Op::Name: return #name;
enum class UnaryOp { DL_UNARY_OPS(DL_OP_ENUM_ENTRY) };
enum class BinaryOp { DL_BINARY_OPS(DL_OP_ENUM_ENTRY) };
enum class ReduceOp { DL_REDUCE_OPS(DL_OP_ENUM_ENTRY) };

// "exp", "maximum", "sum": for messages.
constexpr const char* op_name(UnaryOp op) {
  using Op = UnaryOp;
  switch (op) { DL_UNARY_OPS(DL_OP_NAME_CASE) }
  return "?";
}
constexpr const char* op_name(BinaryOp op) {
  using Op = BinaryOp;
  switch (op) { DL_BINARY_OPS(DL_OP_NAME_CASE) }
  return "?";
}
constexpr const char* op_name(ReduceOp op) {
  using Op = ReduceOp;
  switch (op) { DL_REDUCE_OPS(DL_OP_NAME_CASE) }
  return "?";
}
#undef DL_OP_ENUM_ENTRY
#undef DL_OP_NAME_CASE

// The scalar arguments of a unary op that has some (leaky_relu's slope, clamp's bounds); the
// others ignore them. The functor of such an op takes them in its constructor.
struct UnaryArgs {
  double alpha = 0, beta = 0;
};

// ---- the scalar math of each elementwise op ----------------------------------------------------
// kIntegers: defined for int64 and uint8 too (otherwise ops::unary refuses integer inputs).
namespace fn {

struct Neg {
  static constexpr bool kIntegers = true;
  template <typename T> DL_HD T operator()(T x) const { return static_cast<T>(-x); }
};
struct Exp {
  static constexpr bool kIntegers = false;
  template <typename T> DL_HD T operator()(T x) const { return math::exp(x); }
};
struct Log {
  static constexpr bool kIntegers = false;
  template <typename T> DL_HD T operator()(T x) const { return math::log(x); }
};
struct Sqrt {
  static constexpr bool kIntegers = false;
  template <typename T> DL_HD T operator()(T x) const { return math::sqrt(x); }
};
struct Abs {
  static constexpr bool kIntegers = true;
  template <typename T> DL_HD T operator()(T x) const { return x < T(0) ? static_cast<T>(-x) : x; }
};
struct Relu {
  static constexpr bool kIntegers = true;
  template <typename T> DL_HD T operator()(T x) const { return x > T(0) ? x : T(0); }
};
struct Sigmoid {  // stable for large |x|: never exp of a large positive number
  static constexpr bool kIntegers = false;
  template <typename T> DL_HD T operator()(T x) const {
    if (x >= T(0)) return T(1) / (T(1) + math::exp(-x));
    const T e = math::exp(x);
    return e / (T(1) + e);
  }
};
struct Tanh {
  static constexpr bool kIntegers = false;
  template <typename T> DL_HD T operator()(T x) const { return math::tanh(x); }
};
struct Sign {
  static constexpr bool kIntegers = true;
  template <typename T> DL_HD T operator()(T x) const { return static_cast<T>((T(0) < x) - (x < T(0))); }
};
struct LeakyRelu {  // x for x > 0, else slope * x (the slope is UnaryArgs::alpha)
  static constexpr bool kIntegers = false;
  double slope;
  DL_HD explicit LeakyRelu(const UnaryArgs& a) : slope(a.alpha) {}
  template <typename T> DL_HD T operator()(T x) const { return x > T(0) ? x : static_cast<T>(slope) * x; }
};
// GELU, exact: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); and PyTorch's approximate="tanh" form,
// 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))). The *Grad functors are their derivatives,
// one pass each for the backward (d/dx of the tanh form: 0.5 (1 + t) + 0.5 x (1 - t^2) u' with
// t = tanh(u), u' = sqrt(2 / pi) (1 + 3 * 0.044715 x^2)).
struct Gelu {
  static constexpr bool kIntegers = false;
  template <typename T> DL_HD T operator()(T x) const {
    return T(0.5) * x * (T(1) + math::erf(x * T(0.70710678118654752440)));
  }
};
struct GeluGrad {  // Phi(x) + x phi(x)
  static constexpr bool kIntegers = false;
  template <typename T> DL_HD T operator()(T x) const {
    const T cdf = T(0.5) * (T(1) + math::erf(x * T(0.70710678118654752440)));
    return cdf + x * math::exp(T(-0.5) * x * x) * T(0.39894228040143267794);
  }
};
struct GeluTanh {
  static constexpr bool kIntegers = false;
  template <typename T> DL_HD T operator()(T x) const {
    const T u = T(0.79788456080286535588) * (x + T(0.044715) * x * x * x);
    return T(0.5) * x * (T(1) + math::tanh(u));
  }
};
struct GeluTanhGrad {
  static constexpr bool kIntegers = false;
  template <typename T> DL_HD T operator()(T x) const {
    const T k = T(0.79788456080286535588), t = math::tanh(k * (x + T(0.044715) * x * x * x));
    return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * k * (T(1) + T(3 * 0.044715) * x * x);
  }
};
struct Hardswish {  // x * min(max(x + 3, 0), 6) / 6
  static constexpr bool kIntegers = false;
  template <typename T> DL_HD T operator()(T x) const {
    const T r = x + T(3);
    return x * (r < T(0) ? T(0) : (r > T(6) ? T(6) : r)) / T(6);
  }
};
struct HardswishGrad {  // 0 below -3, x / 3 + 1/2 up to 3 (both ends included, as PyTorch), 1 above
  static constexpr bool kIntegers = false;
  template <typename T> DL_HD T operator()(T x) const {
    return x < T(-3) ? T(0) : (x <= T(3) ? x / T(3) + T(0.5) : T(1));
  }
};
struct Clamp {  // min(max(x, lo), hi), as torch.clamp: NaN stays NaN, lo > hi gives hi (UnaryArgs alpha, beta)
  static constexpr bool kIntegers = true;
  double lo, hi;
  DL_HD explicit Clamp(const UnaryArgs& a) : lo(a.alpha), hi(a.beta) {}
  template <typename T> DL_HD T operator()(T x) const {
    const T m = x < static_cast<T>(lo) ? static_cast<T>(lo) : x;
    return m > static_cast<T>(hi) ? static_cast<T>(hi) : m;
  }
};
// Derivatives that backward closures multiply the incoming gradient by, one pass each.
struct ClampGrad {  // 1 where lo <= x <= hi (bounds included, NaN excluded, as PyTorch), else 0
  static constexpr bool kIntegers = false;
  double lo, hi;
  DL_HD explicit ClampGrad(const UnaryArgs& a) : lo(a.alpha), hi(a.beta) {}
  template <typename T> DL_HD T operator()(T x) const {
    return (x >= static_cast<T>(lo) && x <= static_cast<T>(hi)) ? T(1) : T(0);
  }
};
struct SiluGrad {  // s (1 + x (1 - s)), s = sigmoid(x)
  static constexpr bool kIntegers = false;
  template <typename T> DL_HD T operator()(T x) const {
    const T s = T(1) / (T(1) + math::exp(-x));
    return s * (T(1) + x * (T(1) - s));
  }
};
struct LeakyReluGrad {  // 1 for x > 0, else the slope (at 0 too, as PyTorch)
  static constexpr bool kIntegers = false;
  double slope;
  DL_HD explicit LeakyReluGrad(const UnaryArgs& a) : slope(a.alpha) {}
  template <typename T> DL_HD T operator()(T x) const { return x > T(0) ? T(1) : static_cast<T>(slope); }
};
struct Silu {  // x * sigmoid(x), as x / (1 + exp(-x)): exp(-x) overflows to inf for x << 0, giving -0
  static constexpr bool kIntegers = false;
  template <typename T> DL_HD T operator()(T x) const { return x / (T(1) + math::exp(-x)); }
};

// Binary: kComparison ops return uint8 (0 or 1).
struct Add {
  static constexpr bool kComparison = false;
  template <typename T> DL_HD T operator()(T x, T y) const { return static_cast<T>(x + y); }
};
struct Sub {
  static constexpr bool kComparison = false;
  template <typename T> DL_HD T operator()(T x, T y) const { return static_cast<T>(x - y); }
};
struct Mul {
  static constexpr bool kComparison = false;
  template <typename T> DL_HD T operator()(T x, T y) const { return static_cast<T>(x * y); }
};
struct Div {  // ops::binary refuses an integer zero divisor before calling; never divide by zero here (UB)
  static constexpr bool kComparison = false;
  template <typename T> DL_HD T operator()(T x, T y) const {
    if constexpr (std::is_integral_v<T>) return y == 0 ? T(0) : static_cast<T>(x / y);
    else return x / y;
  }
};
struct Maximum {  // NaN propagates, as in PyTorch
  static constexpr bool kComparison = false;
  template <typename T> DL_HD T operator()(T x, T y) const {
    if (math::isnan(x) || math::isnan(y)) return static_cast<T>(x + y);
    return x > y ? x : y;
  }
};
struct Minimum {
  static constexpr bool kComparison = false;
  template <typename T> DL_HD T operator()(T x, T y) const {
    if (math::isnan(x) || math::isnan(y)) return static_cast<T>(x + y);
    return x < y ? x : y;
  }
};
#define DL_COMPARISON_FN(Name, expr)                                                        \
  struct Name {                                                                             \
    static constexpr bool kComparison = true;                                               \
    template <typename T> DL_HD uint8_t operator()(T x, T y) const { return uint8_t(expr); } \
  };
DL_COMPARISON_FN(Eq, x == y)
DL_COMPARISON_FN(Ne, x != y)
DL_COMPARISON_FN(Lt, x < y)
DL_COMPARISON_FN(Le, x <= y)
DL_COMPARISON_FN(Gt, x > y)
DL_COMPARISON_FN(Ge, x >= y)
#undef DL_COMPARISON_FN

}  // namespace fn

// The functor F of a unary op, given its arguments: ops with parameters are constructed from them.
template <typename F>
DL_HD F make_unary(const UnaryArgs& args) {
  if constexpr (std::is_constructible_v<F, const UnaryArgs&>) return F(args);
  else return F{};
}

constexpr bool is_comparison(BinaryOp op) {
#define DL_IS_COMPARISON(Name, name) \
  case BinaryOp::Name: return fn::Name::kComparison;
  switch (op) { DL_BINARY_OPS(DL_IS_COMPARISON) }
#undef DL_IS_COMPARISON
  return false;
}

constexpr bool accepts_integers(UnaryOp op) {
#define DL_ACCEPTS_INTEGERS(Name, name) \
  case UnaryOp::Name: return fn::Name::kIntegers;
  switch (op) { DL_UNARY_OPS(DL_ACCEPTS_INTEGERS) }
#undef DL_ACCEPTS_INTEGERS
  return false;
}

}  // namespace ops

// ---- NN op parameters: one struct per family, read by nn, autograd, ops and both devices' kernels --
// The first fields are what a caller chooses. The geometry fields after them are derived from the
// tensors' shapes: ops:: fills them in (tensor/nn_ops.cpp) before any kernel sees the struct, and
// whatever a caller left there is overwritten.

// 2-D convolution. Layouts are PyTorch's: x (N, C, H, W), weight (O, C/groups, kh, kw), out (N, O, Ho, Wo).
struct Conv2dParams {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
  // The low precision the GEMMs of a float32 convolution round their operands to under autocast
  // (BFloat16 / Float16; products summed in float32, outputs float32; tensor/autocast.h), or
  // Float32 for none. Set by dl::conv2d from the autocast state; always Float32 for float64.
  DType gemm_dtype = DType::Float32;
  // geometry (filled in by ops::conv2d_*)
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t O = 0, kh = 0, kw = 0;       // weight
  int64_t Ho = 0, Wo = 0;              // output

  DL_HD int64_t Cg() const { return C / groups; }       // input channels per group
  DL_HD int64_t Og() const { return O / groups; }       // output channels per group
  DL_HD int64_t K() const { return Cg() * kh * kw; }    // rows of an im2col matrix
  DL_HD int64_t L() const { return Ho * Wo; }           // its columns per image
  DL_HD int64_t HW() const { return H * W; }
  // 1x1, stride 1, no padding: x itself is the im2col matrix.
  DL_HD bool pointwise() const {
    return kh == 1 && kw == 1 && stride[0] == 1 && stride[1] == 1 && padding[0] == 0 && padding[1] == 0;
  }
};

// 2-D max and average pooling (adaptive pooling uses only the geometry). planes = N * C.
struct Pool2dParams {
  std::array<int64_t, 2> kernel{2, 2};
  std::array<int64_t, 2> stride{0, 0};  // 0 = same as kernel (resolved by ops:: before a kernel runs)
  std::array<int64_t, 2> padding{0, 0};
  bool ceil_mode = false;
  bool count_include_pad = true;  // avg pool only
  // geometry (filled in by ops::*pool2d_*): planes of H x W in, Ho x Wo out
  int64_t planes = 0, H = 0, W = 0, Ho = 0, Wo = 0;
};

}  // namespace dl
