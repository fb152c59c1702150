// CPU reductions over contiguous rows, softmax over a middle dim, gather/scatter, batched GEMM.
#include <cmath>
#include <limits>

#include "tensor/cpu/gemm.h"
#include "tensor/cpu/gemm_bf16.h"
#include "tensor/cpu/loops.h"
#include "tensor/cpu/register.h"

namespace dl::cpu {
namespace {

using ops::ReduceOp;

template <typename T>
using acc_t = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

// The sum of one row in the accumulation type (double for floats), over vector lanes.
template <typename T>
DL_VECTOR_CLONES acc_t<T> row_sum(const T* p, int64_t n) {
  acc_t<T> s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t c = 0; c < n; ++c) s += static_cast<acc_t<T>>(p[c]);
  return s;
}

template <typename T>
void reduce_rows_typed(ReduceOp op, T* out, const T* in, int64_t rows, int64_t cols) {
#pragma omp parallel for if (rows * cols > kParallelGrain && rows > 1) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* p = in + r * cols;
    if (op == ReduceOp::Sum || op == ReduceOp::Mean) {
      // float rows accumulate in double: sums of 10^6 float32 values stay exact to float precision
      const acc_t<T> s = row_sum(p, cols);
      if (op == ReduceOp::Mean) {
        out[r] = cols ? static_cast<T>(static_cast<double>(s) / static_cast<double>(cols))
                      : std::numeric_limits<T>::quiet_NaN();
      } else {
        out[r] = static_cast<T>(s);
      }
    } else {
      T m = p[0];
      bool is_max = op == ReduceOp::Max;
      for (int64_t c = 1; c < cols; ++c) {
        T v = p[c];
        if constexpr (std::is_floating_point_v<T>) {
          if (std::isnan(v)) {
            m = v;
            break;
          }
        }
        if (is_max ? v > m : v < m) m = v;
      }
      out[r] = m;
    }
  }
}

void reduce_rows_kernel(ReduceOp op, const Tensor& out, const Tensor& in, int64_t rows, int64_t cols) {
  DL_DISPATCH_ALL(in.dtype(), "reduce", [&] {
    reduce_rows_typed<scalar_t>(op, out.data_ptr<scalar_t>(), in.data_ptr<scalar_t>(), rows, cols);
  });
}

template <typename T>
void max_rows_typed(T* v, int64_t* ix, const T* x, int64_t rows, int64_t cols) {
#pragma omp parallel for if (rows * cols > kParallelGrain && rows > 1) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const T* p = x + r * cols;
    int64_t best = 0;
    for (int64_t c = 1; c < cols; ++c) {
      if constexpr (std::is_floating_point_v<T>) {
        if (std::isnan(p[best])) break;
        if (std::isnan(p[c])) {
          best = c;
          break;
        }
      }
      if (p[c] > p[best]) best = c;  // first index wins on ties, as PyTorch on CPU
    }
    v[r] = p[best];
    ix[r] = best;
  }
}

void max_rows_kernel(const Tensor& values, const Tensor& indices, const Tensor& in, int64_t rows, int64_t cols) {
  DL_DISPATCH_ALL(in.dtype(), "max", [&] {
    max_rows_typed<scalar_t>(values.data_ptr<scalar_t>(), indices.data_ptr<int64_t>(), in.data_ptr<scalar_t>(), rows, cols);
  });
}

template <typename T>
void softmax_typed(T* out, const T* in, int64_t outer, int64_t d, int64_t inner, bool log) {
#pragma omp parallel for collapse(2) if (outer * d * inner > kParallelGrain) schedule(static)
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      const T* x = in + o * d * inner + i;
      T* y = out + o * d * inner + i;
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t k = 0; k < d; ++k) m = std::max(m, x[k * inner]);
      if (std::isinf(m) && m < 0) m = 0;  // all -inf row: avoid inf - inf
      double s = 0;
      for (int64_t k = 0; k < d; ++k) s += std::exp(static_cast<double>(x[k * inner] - m));
      if (log) {
        T ls = static_cast<T>(std::log(s));
        for (int64_t k = 0; k < d; ++k) y[k * inner] = x[k * inner] - m - ls;
      } else {
        T inv = static_cast<T>(1.0 / s);
        for (int64_t k = 0; k < d; ++k) y[k * inner] = std::exp(x[k * inner] - m) * inv;
      }
    }
  }
}

void softmax_kernel(const Tensor& out, const Tensor& in, int64_t outer, int64_t d, int64_t inner, bool log) {
  DL_DISPATCH_FLOATING(in.dtype(), "softmax", [&] {
    softmax_typed<scalar_t>(out.data_ptr<scalar_t>(), in.data_ptr<scalar_t>(), outer, d, inner, log);
  });
}

template <typename T>
void softmax_backward_typed(T* gi, const T* go, const T* yy, int64_t outer, int64_t d, int64_t inner, bool log) {
#pragma omp parallel for collapse(2) if (outer * d * inner > kParallelGrain) schedule(static)
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      int64_t base = o * d * inner + i;
      double s = 0;
      if (log) {
        // d/dx log_softmax: g - exp(y) * sum(g)
        for (int64_t k = 0; k < d; ++k) s += go[base + k * inner];
        for (int64_t k = 0; k < d; ++k)
          gi[base + k * inner] = go[base + k * inner] - std::exp(yy[base + k * inner]) * static_cast<T>(s);
      } else {
        // d/dx softmax: y * (g - sum(g * y))
        for (int64_t k = 0; k < d; ++k) s += static_cast<double>(go[base + k * inner]) * yy[base + k * inner];
        for (int64_t k = 0; k < d; ++k)
          gi[base + k * inner] = yy[base + k * inner] * (go[base + k * inner] - static_cast<T>(s));
      }
    }
  }
}

void softmax_backward_kernel(const Tensor& gin, const Tensor& gout, const Tensor& y_t, int64_t outer, int64_t d,
                             int64_t inner, bool log) {
  DL_DISPATCH_FLOATING(y_t.dtype(), "softmax_backward", [&] {
    softmax_backward_typed<scalar_t>(gin.data_ptr<scalar_t>(), gout.data_ptr<scalar_t>(), y_t.data_ptr<scalar_t>(),
                                     outer, d, inner, log);
  });
}

// Walks every element of `index` (any strides) with its multi-index; f(multi_index, flat_pos).
template <typename F>
void for_each_index(const Shape& shape, F f) {
  int64_t n = shape_numel(shape);
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t flat = 0; flat < n; ++flat) {
    f(idx);
    for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

inline int64_t offset_of(const std::vector<int64_t>& idx, const Shape& strides) {
  int64_t o = 0;
  for (size_t d = 0; d < idx.size(); ++d) o += idx[d] * strides[d];
  return o;
}

void gather_kernel(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  const int64_t* ip = index.data_ptr<int64_t>();
  int64_t limit = x.sizes()[dim];
  // validate first: never read out of bounds
  for_each_index(index.sizes(), [&](const std::vector<int64_t>& idx) {
    int64_t v = ip[offset_of(idx, index.strides())];
    if (v < 0 || v >= limit) fail("gather: index {} is out of range for dim {} of size {}", v, dim, limit);
  });
  DL_DISPATCH_ALL(x.dtype(), "gather", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    for_each_index(index.sizes(), [&](const std::vector<int64_t>& idx) {
      int64_t v = ip[offset_of(idx, index.strides())];
      int64_t xo = offset_of(idx, x.strides()) + (v - idx[dim]) * x.strides()[dim];
      op[offset_of(idx, out.strides())] = xp[xo];
    });
  });
}

void scatter_add_kernel(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  const int64_t* ip = index.data_ptr<int64_t>();
  int64_t limit = out.sizes()[dim];
  for_each_index(index.sizes(), [&](const std::vector<int64_t>& idx) {
    int64_t v = ip[offset_of(idx, index.strides())];
    if (v < 0 || v >= limit) fail("scatter_add: index {} is out of range for dim {} of size {}", v, dim, limit);
  });
  DL_DISPATCH_ALL(src.dtype(), "scatter_add", [&] {
    const scalar_t* sp = src.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    for_each_index(index.sizes(), [&](const std::vector<int64_t>& idx) {
      int64_t v = ip[offset_of(idx, index.strides())];
      int64_t oo = offset_of(idx, out.strides()) + (v - idx[dim]) * out.strides()[dim];
      op[oo] += sp[offset_of(idx, src.strides())];
    });
  });
}

inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, const float* b,
                 int64_t ldb, float* c, int64_t ldc) {
  sgemm(ta, tb, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
}
inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double* a, int64_t lda, const double* b,
                 int64_t ldb, double* c, int64_t ldc) {
  dgemm(ta, tb, M, N, K, 1.0, a, lda, b, ldb, 0.0, c, ldc);
}

// a: (B, M, K), b: (B, K, N), each with unit stride in one of its last two dims.
void bmm_kernel(const Tensor& out, const Tensor& a, const Tensor& b, DType gemm_dtype) {
  int64_t B = a.sizes()[0], M = a.sizes()[1], K = a.sizes()[2], N = b.sizes()[2];
  auto layout = [](const Tensor& t, bool& trans, int64_t& ld) {
    const auto& st = t.strides();
    const auto& sz = t.sizes();
    if (st[2] == 1 || sz[2] == 1) {
      trans = false;
      ld = std::max<int64_t>(st[1], std::max<int64_t>(sz[2], 1));
      if (sz[1] == 1) ld = std::max<int64_t>(sz[2], 1);
    } else {
      trans = true;
      ld = std::max<int64_t>(st[2], std::max<int64_t>(sz[1], 1));
    }
  };
  bool ta, tb;
  int64_t lda, ldb;
  layout(a, ta, lda);
  layout(b, tb, ldb);
  if (a.dtype() == DType::Float32 && gemm_dtype != DType::Float32) {
    if (gemm_dtype != DType::BFloat16)
      fail("matmul: the CPU multiplies float32 in float32 or bfloat16, not {}", dtype_name(gemm_dtype));
    const float* ap = a.data_ptr<float>();
    const float* bp = b.data_ptr<float>();
    float* op = out.data_ptr<float>();
    for (int64_t i = 0; i < B; ++i)
      gemm_bf16(ta, tb, M, N, K, 1.0f, ap + i * a.strides()[0], lda, bp + i * b.strides()[0], ldb, 0.0f,
                op + i * M * N, std::max<int64_t>(N, 1));
    return;
  }
  DL_DISPATCH_FLOATING(a.dtype(), "matmul", [&] {
    const scalar_t* ap = a.data_ptr<scalar_t>();
    const scalar_t* bp = b.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    for (int64_t i = 0; i < B; ++i) {
      const scalar_t* ai = ap + i * a.strides()[0];
      const scalar_t* bi = bp + i * b.strides()[0];
      scalar_t* oi = op + i * M * N;
      gemm(ta, tb, M, N, K, ai, lda, bi, ldb, oi, std::max<int64_t>(N, 1));
    }
  });
}

}  // namespace

void register_reduce_kernels(KernelTable& t) {
  t.reduce_rows = reduce_rows_kernel;
  t.max_rows = max_rows_kernel;
  t.softmax = softmax_kernel;
  t.softmax_backward = softmax_backward_kernel;
  t.gather = gather_kernel;
  t.scatter_add = scatter_add_kernel;
  t.bmm = bmm_kernel;
}

}  // namespace dl::cpu
