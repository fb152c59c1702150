// CPU elementwise kernels: unary, pow, binary (incl. comparisons), where, copy with dtype
// conversion, fill. Inner loops are written on raw pointers so the compiler vectorises the
// contiguous case (stride == sizeof(T)).
#include <cmath>
#include <cstring>
#include <type_traits>

#include "tensor/cpu/convert16.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/register.h"

namespace dl::cpu {
namespace {

using ops::BinaryOp;
using ops::UnaryOp;

// Contiguous inner loops, compiled for AVX-512, AVX2 and the baseline ISA and picked at load time
// (function multiversioning: GCC emits one clone per target and an ifunc resolver). `omp simd` lets
// the compiler vectorise without proving the pointers distinct: the callers only pass operands that
// are the same array or do not overlap at all (see overlaps_partially).
template <typename TO, typename TI, typename F>
DL_VECTOR_CLONES void vec_map1(TO* o, const TI* a, int64_t n, F f) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
}
template <typename TO, typename TI, typename F>
DL_VECTOR_CLONES void vec_map2(TO* o, const TI* a, const TI* b, int64_t n, F f) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
}
template <typename TO, typename TI, typename F>
DL_VECTOR_CLONES void vec_map2_bscalar(TO* o, const TI* a, TI b, int64_t n, F f) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b);
}
template <typename TO, typename TI, typename F>
DL_VECTOR_CLONES void vec_map2_ascalar(TO* o, TI a, const TI* b, int64_t n, F f) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = f(a, b[i]);
}

// True when [p, p + pn) and [q, q + qn) share bytes without being the same array: an in-place op
// (out == in) is fine for a vectorised elementwise loop, a shifted overlap is not.
inline bool overlaps_partially(const void* p, int64_t pn, const void* q, int64_t qn) {
  const char* a = static_cast<const char*>(p);
  const char* b = static_cast<const char*>(q);
  return a != b && a < b + qn && b < a + pn;
}

template <typename T, typename F>
inline void map1(char* out, int64_t so, const char* in, int64_t si, int64_t n, F f) {
  if (so == sizeof(T) && si == sizeof(T) && !overlaps_partially(out, n * so, in, n * si)) {
    vec_map1(reinterpret_cast<T*>(out), reinterpret_cast<const T*>(in), n, f);
  } else {
    for (int64_t i = 0; i < n; ++i)
      *reinterpret_cast<T*>(out + i * so) = f(*reinterpret_cast<const T*>(in + i * si));
  }
}

template <typename TO, typename TI, typename F>
inline void map2(char* out, int64_t so, const char* a, int64_t sa, const char* b, int64_t sb, int64_t n, F f) {
  const bool a_ok = sa == 0 || !overlaps_partially(out, n * so, a, n * sa);
  const bool b_ok = sb == 0 || !overlaps_partially(out, n * so, b, n * sb);
  if (so == sizeof(TO) && a_ok && b_ok) {
    TO* o = reinterpret_cast<TO*>(out);
    const TI* x = reinterpret_cast<const TI*>(a);
    const TI* y = reinterpret_cast<const TI*>(b);
    if (sa == sizeof(TI) && sb == sizeof(TI)) return vec_map2(o, x, y, n, f);
    if (sa == sizeof(TI) && sb == 0) return vec_map2_bscalar(o, x, *y, n, f);
    if (sa == 0 && sb == sizeof(TI)) return vec_map2_ascalar(o, *x, y, n, f);
  }
  for (int64_t i = 0; i < n; ++i)
    *reinterpret_cast<TO*>(out + i * so) =
        f(*reinterpret_cast<const TI*>(a + i * sa), *reinterpret_cast<const TI*>(b + i * sb));
}

template <typename T, typename F>
void apply_unary(const Tensor& out, const Tensor& in, F f) {
  for_each_run<2>({&out, &in}, [&](const std::array<char*, 2>& p, const std::array<int64_t, 2>& s, int64_t n) {
    map1<T>(p[0], s[0], p[1], s[1], n, f);
  });
}

// One case per op of DL_UNARY_OPS, each running the op's functor (tensor/op_defs.h) through the
// vectorised loops above; ops without an integer meaning (exp, log, ...) compile only for floats.
template <typename T>
void unary_typed(UnaryOp op, const Tensor& out, const Tensor& in, const ops::UnaryArgs& args) {
  switch (op) {
#define DL_UNARY_CASE(Name, name)                                                  \
  case UnaryOp::Name:                                                              \
    if constexpr (ops::fn::Name::kIntegers || std::is_floating_point_v<T>)         \
      return apply_unary<T>(out, in, ops::make_unary<ops::fn::Name>(args));       \
    break;
    DL_UNARY_OPS(DL_UNARY_CASE)
#undef DL_UNARY_CASE
  }
  fail("unary op {} is not defined for {}", ops::op_name(op), dtype_name(in.dtype()));
}

void unary_kernel(UnaryOp op, const Tensor& out, const Tensor& in, const ops::UnaryArgs& args) {
  DL_DISPATCH_ALL(in.dtype(), "unary", [&] { unary_typed<scalar_t>(op, out, in, args); });
}

void pow_kernel(const Tensor& out, const Tensor& in, double e) {
  DL_DISPATCH_FLOATING(in.dtype(), "pow", [&] {
    const scalar_t se = static_cast<scalar_t>(e);
    if (e == 2.0)
      apply_unary<scalar_t>(out, in, [](scalar_t x) { return x * x; });
    else if (e == 0.5)
      apply_unary<scalar_t>(out, in, [](scalar_t x) { return std::sqrt(x); });
    else
      apply_unary<scalar_t>(out, in, [se](scalar_t x) { return std::pow(x, se); });
  });
}

template <typename TO, typename TI, typename F>
void apply_binary(const Tensor& out, const Tensor& a, const Tensor& b, F f) {
  for_each_run<3>({&out, &a, &b}, [&](const std::array<char*, 3>& p, const std::array<int64_t, 3>& s, int64_t n) {
    map2<TO, TI>(p[0], s[0], p[1], s[1], p[2], s[2], n, f);
  });
}

// One case per op of DL_BINARY_OPS; comparisons write uint8.
template <typename T>
void binary_typed(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  switch (op) {
#define DL_BINARY_CASE(Name, name)                                                              \
  case BinaryOp::Name:                                                                          \
    return apply_binary<std::conditional_t<ops::fn::Name::kComparison, uint8_t, T>, T>(out, a, b, \
                                                                                     ops::fn::Name{});
    DL_BINARY_OPS(DL_BINARY_CASE)
#undef DL_BINARY_CASE
  }
}

void binary_kernel(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  DL_DISPATCH_ALL(a.dtype(), "binary", [&] { binary_typed<scalar_t>(op, out, a, b); });
}

// SA, SB: 1 (contiguous) or 0 (a broadcast scalar), in elements
template <int SA, int SB, typename T>
DL_VECTOR_CLONES void vec_where(T* o, const uint8_t* c, const T* a, const T* b, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T x = a[i * SA], y = b[i * SB];  // both loaded, so the select needs no masked load
    o[i] = c[i] ? x : y;
  }
}

void where_kernel(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  DL_DISPATCH_STORAGE(out.dtype(), "where", [&] {
    using T = scalar_t;
    for_each_run<4>({&out, &cond, &a, &b}, [&](const std::array<char*, 4>& p, const std::array<int64_t, 4>& s, int64_t n) {
      const bool unit_or_scalar_a = s[2] == sizeof(T) || s[2] == 0, unit_or_scalar_b = s[3] == sizeof(T) || s[3] == 0;
      if (s[0] == sizeof(T) && s[1] == 1 && unit_or_scalar_a && unit_or_scalar_b &&
          !overlaps_partially(p[0], n * s[0], p[2], n * s[2]) && !overlaps_partially(p[0], n * s[0], p[3], n * s[3]) &&
          !overlaps_partially(p[0], n * s[0], p[1], n)) {
        T* o = reinterpret_cast<T*>(p[0]);
        const uint8_t* c = reinterpret_cast<const uint8_t*>(p[1]);
        const T* x = reinterpret_cast<const T*>(p[2]);
        const T* y = reinterpret_cast<const T*>(p[3]);
        if (s[2] && s[3]) return vec_where<1, 1>(o, c, x, y, n);
        if (s[2]) return vec_where<1, 0>(o, c, x, y, n);
        if (s[3]) return vec_where<0, 1>(o, c, x, y, n);
        return vec_where<0, 0>(o, c, x, y, n);
      }
      for (int64_t i = 0; i < n; ++i) {
        bool c = *reinterpret_cast<const uint8_t*>(p[1] + i * s[1]) != 0;
        *reinterpret_cast<T*>(p[0] + i * s[0]) = *reinterpret_cast<const T*>((c ? p[2] : p[3]) + i * (c ? s[2] : s[3]));
      }
    });
  });
}

// The contiguous float32 <-> 16-bit cases have loops of their own (tensor/cpu/convert16.h); true
// when one ran.
template <typename TO, typename TI>
bool convert16_contiguous(char* out, const char* in, int64_t n) {
  if constexpr (std::is_same_v<TO, BFloat16> && std::is_same_v<TI, float>)
    float_to_bfloat16(reinterpret_cast<BFloat16*>(out), reinterpret_cast<const float*>(in), n);
  else if constexpr (std::is_same_v<TO, float> && std::is_same_v<TI, BFloat16>)
    bfloat16_to_float(reinterpret_cast<float*>(out), reinterpret_cast<const BFloat16*>(in), n);
  else if constexpr (std::is_same_v<TO, Float16> && std::is_same_v<TI, float>)
    float_to_float16(reinterpret_cast<Float16*>(out), reinterpret_cast<const float*>(in), n);
  else if constexpr (std::is_same_v<TO, float> && std::is_same_v<TI, Float16>)
    float16_to_float(reinterpret_cast<float*>(out), reinterpret_cast<const Float16*>(in), n);
  else
    return false;
  return true;
}

void copy_kernel(const Tensor& dst, const Tensor& src) {
  DL_DISPATCH_STORAGE(dst.dtype(), "copy", [&] {
    using TO = scalar_t;
    DL_DISPATCH_STORAGE(src.dtype(), "copy", [&] {
      using TI = scalar_t;
      for_each_run<2>({&dst, &src}, [&](const std::array<char*, 2>& p, const std::array<int64_t, 2>& s, int64_t n) {
        if (s[0] == sizeof(TO) && s[1] == sizeof(TI)) {
          if constexpr (std::is_same_v<TO, TI>) {
            if (p[0] != p[1]) std::memmove(p[0], p[1], static_cast<size_t>(n) * sizeof(TO));
            return;
          } else {
            if (!overlaps_partially(p[0], n * s[0], p[1], n * s[1])) {
              if (p[0] != p[1] && convert16_contiguous<TO, TI>(p[0], p[1], n)) return;
              return vec_map1(reinterpret_cast<TO*>(p[0]), reinterpret_cast<const TI*>(p[1]), n,
                              [](TI x) { return convert_scalar<TO>(x); });
            }
          }
        }
        for (int64_t i = 0; i < n; ++i)
          *reinterpret_cast<TO*>(p[0] + i * s[0]) = convert_scalar<TO>(*reinterpret_cast<const TI*>(p[1] + i * s[1]));
      });
    });
  });
}

// ReLU's backward from its output: gi = y > 0 ? g : 0 (a NaN output passes no gradient, as the
// composition where(y > 0, g, 0) it replaces).
template <typename T>
DL_VECTOR_CLONES void vec_relu_backward(T* gi, const T* g, const T* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T gv = g[i];
    gi[i] = y[i] > T(0) ? gv : T(0);
  }
}

void relu_backward_kernel(const Tensor& gi, const Tensor& g, const Tensor& y) {
  DL_DISPATCH_FLOATING(y.dtype(), "relu backward", [&] {
    using T = scalar_t;
    for_each_run<3>({&gi, &g, &y}, [&](const std::array<char*, 3>& p, const std::array<int64_t, 3>& s, int64_t n) {
      if (s[0] == sizeof(T) && s[1] == sizeof(T) && s[2] == sizeof(T) && !overlaps_partially(p[0], n * s[0], p[1], n * s[1]) &&
          !overlaps_partially(p[0], n * s[0], p[2], n * s[2]))
        return vec_relu_backward(reinterpret_cast<T*>(p[0]), reinterpret_cast<const T*>(p[1]),
                                 reinterpret_cast<const T*>(p[2]), n);
      for (int64_t i = 0; i < n; ++i) {
        const T yv = *reinterpret_cast<const T*>(p[2] + i * s[2]);
        *reinterpret_cast<T*>(p[0] + i * s[0]) = yv > T(0) ? *reinterpret_cast<const T*>(p[1] + i * s[1]) : T(0);
      }
    });
  });
}

template <typename T>
DL_VECTOR_CLONES void vec_fill(T* o, T v, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = v;
}

void fill_kernel(const Tensor& dst, double value) {
  DL_DISPATCH_STORAGE(dst.dtype(), "fill", [&] {
    const scalar_t v = static_cast<scalar_t>(value);
    for_each_run<1>({&dst}, [&](const std::array<char*, 1>& p, const std::array<int64_t, 1>& s, int64_t n) {
      if (s[0] == sizeof(scalar_t)) {
        vec_fill(reinterpret_cast<scalar_t*>(p[0]), v, n);
      } else {
        for (int64_t i = 0; i < n; ++i) *reinterpret_cast<scalar_t*>(p[0] + i * s[0]) = v;
      }
    });
  });
}

}  // namespace

void register_elementwise_kernels(KernelTable& t) {
  t.unary = unary_kernel;
  t.pow_scalar = pow_kernel;
  t.binary = binary_kernel;
  t.where = where_kernel;
  t.copy = copy_kernel;
  t.fill = fill_kernel;
  t.relu_backward = relu_backward_kernel;
}

}  // namespace dl::cpu
