// Softmax and log-softmax over the middle dim of a contiguous (outer, d, inner) tensor, forward
// and backward, with the CPU kernel's arithmetic (tensor/cpu/reduce.cpp): the max in T (NaN
// ignored, an all -inf row shifted by 0), the sum of exp in double, the output rounded as there.
//   inner == 1: one warp per row (d <= 1024) or one block per row; reads are coalesced.
//   inner > 1:  one thread per (outer, inner) column looping over d; neighbouring threads read
//               neighbouring addresses.
#include "cuda/device_utils.cuh"

namespace dl::cuda::k {
namespace {

template <typename T>
__device__ __forceinline__ T max_ignoring_nan(T m, T x) { return m < x ? x : m; }  // std::max(m, x)

struct MaxOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a < b ? b : a; }
};

// Per row: the shift m and the sum of exp(x - m) in double. GROUP threads (a warp or the block)
// share the row; `scratch` is block-shared memory for the block variant.
template <typename T, bool BLOCK>
__device__ void row_stats(const T* x, int64_t d, int lane, int group, T& m_out, double& s_out, double* dscratch,
                          T* tscratch) {
  T m = -INFINITY;
  for (int64_t k = lane; k < d; k += group) m = max_ignoring_nan(m, x[k]);
  if constexpr (BLOCK)
    m = block_reduce(m, MaxOp{}, T(-INFINITY), tscratch);
  else
    m = __shfl_sync(0xffffffffu, warp_reduce(m, MaxOp{}), 0);
  if (isinf(m) && m < 0) m = 0;  // all -inf: avoid inf - inf
  double s = 0;
  for (int64_t k = lane; k < d; k += group) s += exp(static_cast<double>(static_cast<T>(x[k] - m)));
  if constexpr (BLOCK)
    s = block_reduce(s, SumOp{}, 0.0, dscratch);
  else
    s = __shfl_sync(0xffffffffu, warp_reduce(s, SumOp{}), 0);
  m_out = m;
  s_out = s;
}

template <typename T>
__device__ __forceinline__ void write_row(const T* x, T* y, int64_t d, int lane, int group, T m, double s, bool log) {
  if (log) {
    const T ls = static_cast<T>(::log(s));
    for (int64_t k = lane; k < d; k += group) y[k] = x[k] - m - ls;
  } else {
    const T inv = static_cast<T>(1.0 / s);
    for (int64_t k = lane; k < d; k += group) y[k] = d_exp(static_cast<T>(x[k] - m)) * inv;
  }
}

template <typename T>
__global__ void softmax_rows_warp(const T* in, T* out, int64_t rows, int64_t d, bool log) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    T m;
    double s;
    row_stats<T, false>(in + r * d, d, lane, 32, m, s, nullptr, nullptr);
    write_row(in + r * d, out + r * d, d, lane, 32, m, s, log);
  }
}

template <typename T>
__global__ void softmax_rows_block(const T* in, T* out, int64_t rows, int64_t d, bool log) {
  __shared__ double dscratch[32];
  __shared__ T tscratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    T m;
    double s;
    row_stats<T, true>(in + r * d, d, threadIdx.x, blockDim.x, m, s, dscratch, tscratch);
    write_row(in + r * d, out + r * d, d, threadIdx.x, blockDim.x, m, s, log);
  }
}

template <typename T>
__global__ void softmax_columns(const T* in, T* out, int64_t outer, int64_t d, int64_t inner, bool log) {
  KERNEL_LOOP(t, outer * inner) {
    const int64_t o = t / inner, i = t - o * inner;
    const T* x = in + o * d * inner + i;
    T* y = out + o * d * inner + i;
    T m = -INFINITY;
    for (int64_t k = 0; k < d; ++k) m = max_ignoring_nan(m, x[k * inner]);
    if (isinf(m) && m < 0) m = 0;
    double s = 0;
    for (int64_t k = 0; k < d; ++k) s += exp(static_cast<double>(static_cast<T>(x[k * inner] - m)));
    if (log) {
      const T ls = static_cast<T>(::log(s));
      for (int64_t k = 0; k < d; ++k) y[k * inner] = x[k * inner] - m - ls;
    } else {
      const T inv = static_cast<T>(1.0 / s);
      for (int64_t k = 0; k < d; ++k) y[k * inner] = d_exp(static_cast<T>(x[k * inner] - m)) * inv;
    }
  }
}

// ---- backward: log: gi = g - exp(y) * sum(g);  softmax: gi = y * (g - sum(g * y)) --------------------

template <typename T>
__device__ __forceinline__ double backward_term(const T* g, const T* y, int64_t k, bool log) {
  return log ? static_cast<double>(g[k]) : static_cast<double>(g[k]) * static_cast<double>(y[k]);
}

template <typename T>
__device__ __forceinline__ void backward_write(T* gi, const T* g, const T* y, int64_t k, T s, bool log) {
  gi[k] = log ? g[k] - d_exp(y[k]) * s : y[k] * (g[k] - s);
}

template <typename T>
__global__ void softmax_backward_rows_warp(T* gi, const T* go, const T* yy, int64_t rows, int64_t d, bool log) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    const T* g = go + r * d;
    const T* y = yy + r * d;
    double s = 0;
    for (int64_t k = lane; k < d; k += 32) s += backward_term(g, y, k, log);
    s = __shfl_sync(0xffffffffu, warp_reduce(s, SumOp{}), 0);
    const T st = static_cast<T>(s);
    for (int64_t k = lane; k < d; k += 32) backward_write(gi + r * d, g, y, k, st, log);
  }
}

template <typename T>
__global__ void softmax_backward_rows_block(T* gi, const T* go, const T* yy, int64_t rows, int64_t d, bool log) {
  __shared__ double scratch[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* g = go + r * d;
    const T* y = yy + r * d;
    double s = 0;
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) s += backward_term(g, y, k, log);
    s = block_reduce(s, SumOp{}, 0.0, scratch);
    const T st = static_cast<T>(s);
    for (int64_t k = threadIdx.x; k < d; k += blockDim.x) backward_write(gi + r * d, g, y, k, st, log);
  }
}

template <typename T>
__global__ void softmax_backward_columns(T* gi, const T* go, const T* yy, int64_t outer, int64_t d, int64_t inner,
                                         bool log) {
  KERNEL_LOOP(t, outer * inner) {
    const int64_t o = t / inner, i = t - o * inner;
    const int64_t base = o * d * inner + i;
    double s = 0;
    for (int64_t k = 0; k < d; ++k) s += backward_term(go + base, yy + base, k * inner, log);
    const T st = static_cast<T>(s);
    for (int64_t k = 0; k < d; ++k) backward_write(gi + base, go + base, yy + base, k * inner, st, log);
  }
}

constexpr int64_t kWarpRow = 1024;

template <typename T>
void softmax_typed(void* out, const void* in, int64_t outer, int64_t d, int64_t inner, bool log) {
  const T* x = static_cast<const T*>(in);
  T* y = static_cast<T*>(out);
  if (outer * d * inner == 0) return;
  if (inner == 1) {
    if (d <= kWarpRow)
      softmax_rows_warp<T><<<grid_1d(outer * 32), kThreads, 0, stream()>>>(x, y, outer, d, log);
    else
      softmax_rows_block<T><<<grid_1d(outer * kThreads), kThreads, 0, stream()>>>(x, y, outer, d, log);
  } else {
    softmax_columns<T><<<grid_1d(outer * inner), kThreads, 0, stream()>>>(x, y, outer, d, inner, log);
  }
  DL_CUDA_LAUNCH_CHECK("softmax");
}

template <typename T>
void softmax_backward_typed(void* gin, const void* gout, const void* y_v, int64_t outer, int64_t d, int64_t inner,
                            bool log) {
  T* gi = static_cast<T*>(gin);
  const T* go = static_cast<const T*>(gout);
  const T* y = static_cast<const T*>(y_v);
  if (outer * d * inner == 0) return;
  if (inner == 1) {
    if (d <= kWarpRow)
      softmax_backward_rows_warp<T><<<grid_1d(outer * 32), kThreads, 0, stream()>>>(gi, go, y, outer, d, log);
    else
      softmax_backward_rows_block<T><<<grid_1d(outer * kThreads), kThreads, 0, stream()>>>(gi, go, y, outer, d, log);
  } else {
    softmax_backward_columns<T><<<grid_1d(outer * inner), kThreads, 0, stream()>>>(gi, go, y, outer, d, inner, log);
  }
  DL_CUDA_LAUNCH_CHECK("softmax_backward");
}

}  // namespace

void softmax(DType dt, void* out, const void* in, int64_t outer, int64_t d, int64_t inner, bool log) {
  KDISPATCH_FLOATING(dt, "softmax", softmax_typed, out, in, outer, d, inner, log);
}

void softmax_backward(DType dt, void* grad_in, const void* grad_out, const void* y, int64_t outer, int64_t d,
                      int64_t inner, bool log) {
  KDISPATCH_FLOATING(dt, "softmax_backward", softmax_backward_typed, grad_in, grad_out, y, outer, d, inner, log);
}

}  // namespace dl::cuda::k
