// Row reductions of a contiguous (rows, cols) matrix: sum, mean, max, min, and max with its index.
// Floating sums accumulate in double (as the CPU kernels), integer sums in int64.
//
// Three launch shapes, by the matrix's shape:
//   cols <= 512              one warp per row (grid-stride over rows)
//   cols > 512, many rows    one block per row
//   few rows, huge cols      each row split over many blocks into partial results, then a
//                            second pass reduces the partials (so a full reduction of 10^8
//                            elements uses the whole GPU, not one block)
// NaN: max/min return NaN when a row holds one; max_rows gives the first NaN's index, else the
// first maximum's, the CPU kernel's rules. The combination order is fixed, so results are
// deterministic.
#include "cuda/device_utils.cuh"

namespace dl::cuda::k {
namespace {

// uint8 values travel through warp shuffles as int
template <typename T>
using cmp_t = std::conditional_t<std::is_same_v<T, uint8_t>, int, T>;

template <typename T, bool MEAN>
struct SumReducer {
  using acc = acc_t<T>;
  struct Out {
    T* out;
  };
  static __device__ acc identity() { return acc(0); }
  static __device__ acc load(T x, int64_t) { return static_cast<acc>(x); }
  static __device__ acc combine(acc a, acc b) { return a + b; }
  static __device__ acc shfl_down(acc a, int off) { return __shfl_down_sync(0xffffffffu, a, off); }
  static __device__ void store(const Out& o, int64_t row, acc v, int64_t cols) {
    if constexpr (MEAN) {
      if constexpr (std::is_floating_point_v<T>)
        o.out[row] = cols ? static_cast<T>(static_cast<double>(v) / static_cast<double>(cols)) : T(NAN);
      else
        o.out[row] = cols ? static_cast<T>(static_cast<double>(v) / static_cast<double>(cols)) : T(0);
    } else {
      o.out[row] = static_cast<T>(v);
    }
  }
};

template <typename T, bool MAX>
struct MinMaxReducer {
  using acc = cmp_t<T>;
  struct Out {
    T* out;
  };
  static __device__ acc identity() { return MAX ? lowest_value<acc>() : highest_value<acc>(); }
  static __device__ acc load(T x, int64_t) { return static_cast<acc>(x); }
  static __device__ acc combine(acc a, acc b) {
    if (d_isnan(a)) return a;
    if (d_isnan(b)) return b;
    return MAX ? (b > a ? b : a) : (b < a ? b : a);
  }
  static __device__ acc shfl_down(acc a, int off) { return __shfl_down_sync(0xffffffffu, a, off); }
  static __device__ void store(const Out& o, int64_t row, acc v, int64_t) { o.out[row] = static_cast<T>(v); }
};

template <typename T>
struct ArgMaxReducer {
  struct acc {
    cmp_t<T> v;
    int64_t i;
  };
  struct Out {
    T* values;
    int64_t* indices;
  };
  static __device__ acc identity() { return {lowest_value<cmp_t<T>>(), INT64_MAX}; }
  static __device__ acc load(T x, int64_t i) { return {static_cast<cmp_t<T>>(x), i}; }
  // the first NaN, else the larger value, else the lower index: associative and commutative
  static __device__ acc combine(acc a, acc b) {
    const bool na = d_isnan(a.v), nb = d_isnan(b.v);
    if (na || nb) {
      if (na && nb) return a.i <= b.i ? a : b;
      return na ? a : b;
    }
    if (a.v > b.v) return a;
    if (b.v > a.v) return b;
    return a.i <= b.i ? a : b;
  }
  static __device__ acc shfl_down(acc a, int off) {
    return {__shfl_down_sync(0xffffffffu, a.v, off), __shfl_down_sync(0xffffffffu, a.i, off)};
  }
  static __device__ void store(const Out& o, int64_t row, acc v, int64_t) {
    o.values[row] = static_cast<T>(v.v);
    o.indices[row] = v.i;
  }
};

template <typename R>
__device__ __forceinline__ typename R::acc warp_reduce_r(typename R::acc v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = R::combine(v, R::shfl_down(v, off));
  return v;
}

// Lane order is kept: lane l's partial combines with lane l + off, so the result is the same
// every run.
template <typename R>
__device__ typename R::acc block_reduce_r(typename R::acc v) {
  __shared__ typename R::acc scratch[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_reduce_r<R>(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    typename R::acc r = lane < nwarps ? scratch[lane] : R::identity();
    r = warp_reduce_r<R>(r);
    if (lane == 0) scratch[0] = r;
  }
  __syncthreads();
  typename R::acc r = scratch[0];
  __syncthreads();
  return r;
}

// Loads element c of a row: a T from the input, or an accumulated partial (second pass).
template <typename R, typename T, bool PARTIAL>
struct RowSource {
  const void* base;
  __device__ typename R::acc load(int64_t row, int64_t c, int64_t cols) const {
    if constexpr (PARTIAL)
      return static_cast<const typename R::acc*>(base)[row * cols + c];
    else
      return R::load(static_cast<const T*>(base)[row * cols + c], c);
  }
};

template <typename R, typename Src>
__global__ void reduce_warp_kernel(Src src, typename R::Out out, int64_t rows, int64_t cols, int64_t count) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); row < rows;
       row += warps) {
    typename R::acc v = R::identity();
    for (int64_t c = lane; c < cols; c += 32) v = R::combine(v, src.load(row, c, cols));
    v = warp_reduce_r<R>(v);
    if (lane == 0) R::store(out, row, v, count);
  }
}

template <typename R, typename Src>
__global__ void reduce_block_kernel(Src src, typename R::Out out, int64_t rows, int64_t cols, int64_t count) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    typename R::acc v = R::identity();
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) v = R::combine(v, src.load(row, c, cols));
    v = block_reduce_r<R>(v);
    if (threadIdx.x == 0) R::store(out, row, v, count);
  }
}

// Block (chunk, row) reduces columns [chunk * per, (chunk + 1) * per) of a row into
// partial[row * chunks + chunk].
template <typename R, typename T>
__global__ void reduce_partial_kernel(const T* in, typename R::acc* partial, int64_t cols, int64_t per, int64_t chunks) {
  const int64_t row = blockIdx.y;
  for (int64_t chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
    const int64_t c0 = chunk * per, c1 = min(cols, c0 + per);
    typename R::acc v = R::identity();
    for (int64_t c = c0 + threadIdx.x; c < c1; c += blockDim.x) v = R::combine(v, R::load(in[row * cols + c], c));
    v = block_reduce_r<R>(v);
    if (threadIdx.x == 0) partial[row * chunks + chunk] = v;
  }
}

template <typename R, typename T>
void run_reduce(const T* in, typename R::Out out, int64_t rows, int64_t cols) {
  if (rows <= 0) return;
  constexpr int kWarpCols = 512, kSplitCols = 1 << 16, kChunk = 1 << 14;
  const int64_t few_rows = 2 * detail::sm_count();
  if (cols > kSplitCols && rows < few_rows) {
    // pass 1: partials (rows, chunks); pass 2: reduce each row of partials
    const int64_t chunks = (cols + kChunk - 1) / kChunk;
    detail::Workspace ws(static_cast<size_t>(rows * chunks) * sizeof(typename R::acc));
    auto* partial = ws.as<typename R::acc>();
    dim3 grid(static_cast<unsigned>(std::min<int64_t>(chunks, 65535)), static_cast<unsigned>(rows));
    reduce_partial_kernel<R, T><<<grid, kThreads, 0, stream()>>>(in, partial, cols, kChunk, chunks);
    DL_CUDA_LAUNCH_CHECK("reduce_partial_kernel");
    reduce_block_kernel<R><<<grid_1d(rows * kThreads), kThreads, 0, stream()>>>(
        RowSource<R, T, true>{partial}, out, rows, chunks, cols);
    DL_CUDA_LAUNCH_CHECK("reduce_block_kernel");
    return;
  }
  if (cols <= kWarpCols) {
    reduce_warp_kernel<R><<<grid_1d(rows * 32), kThreads, 0, stream()>>>(RowSource<R, T, false>{in}, out, rows, cols,
                                                                         cols);
    DL_CUDA_LAUNCH_CHECK("reduce_warp_kernel");
  } else {
    reduce_block_kernel<R><<<grid_1d(rows * kThreads), kThreads, 0, stream()>>>(RowSource<R, T, false>{in}, out, rows,
                                                                                 cols, cols);
    DL_CUDA_LAUNCH_CHECK("reduce_block_kernel");
  }
}

template <typename T>
void reduce_typed(ops::ReduceOp op, void* out, const void* in_v, int64_t rows, int64_t cols) {
  const T* in = static_cast<const T*>(in_v);
  T* o = static_cast<T*>(out);
  switch (op) {
    case ops::ReduceOp::Sum: return run_reduce<SumReducer<T, false>>(in, {o}, rows, cols);
    case ops::ReduceOp::Mean: return run_reduce<SumReducer<T, true>>(in, {o}, rows, cols);
    case ops::ReduceOp::Max: return run_reduce<MinMaxReducer<T, true>>(in, {o}, rows, cols);
    case ops::ReduceOp::Min: return run_reduce<MinMaxReducer<T, false>>(in, {o}, rows, cols);
  }
  DL_CUDA_REQUIRE(false, "reduce: unknown op");
}

template <typename T>
void max_rows_typed(void* values, int64_t* indices, const void* in, int64_t rows, int64_t cols) {
  run_reduce<ArgMaxReducer<T>>(static_cast<const T*>(in), {static_cast<T*>(values), indices}, rows, cols);
}

}  // namespace

void reduce_rows(ops::ReduceOp op, DType dt, void* out, const void* in, int64_t rows, int64_t cols) {
  KDISPATCH_ALL(dt, "reduce", reduce_typed, op, out, in, rows, cols);
}

void max_rows(DType dt, void* values, int64_t* indices, const void* in, int64_t rows, int64_t cols) {
  KDISPATCH_ALL(dt, "max", max_rows_typed, values, indices, in, rows, cols);
}

}  // namespace dl::cuda::k
