#pragma once
// Device-side helpers shared by the .cu files: dtype dispatch, launch shapes, offset calculators
// for strided operands, warp/block reductions and math overloads. nvcc only.
#include <cstdint>
#include <limits>
#include <type_traits>

#include <cuda_runtime.h>

#include "cuda/detail.h"
#include "cuda/kernels.h"

namespace dl::cuda::k {

// ---- dtype dispatch: KDISPATCH_*(dt, "name", fn, args...) calls fn<T>(args...) ----------------------
#define KDISPATCH_FLOATING(dt, name, fn, ...)                                         \
  do {                                                                                \
    switch (dt) {                                                                     \
      case ::dl::DType::Float32: fn<float>(__VA_ARGS__); break;                       \
      case ::dl::DType::Float64: fn<double>(__VA_ARGS__); break;                      \
      default: DL_CUDA_REQUIRE(false, name ": expected a float32 or float64 tensor"); \
    }                                                                                 \
  } while (0)

// The cases of the four computing dtypes (KDISPATCH_ALL; cuda/elementwise.cu adds the 16-bit ones).
#define KDISPATCH_COMPUTING_CASES(fn, ...)                    \
  case ::dl::DType::Float32: fn<float>(__VA_ARGS__); break;   \
  case ::dl::DType::Float64: fn<double>(__VA_ARGS__); break;  \
  case ::dl::DType::Int64: fn<int64_t>(__VA_ARGS__); break;   \
  case ::dl::DType::UInt8: fn<uint8_t>(__VA_ARGS__); break;

#define KDISPATCH_ALL(dt, name, fn, ...)                         \
  do {                                                           \
    switch (dt) {                                                \
      KDISPATCH_COMPUTING_CASES(fn, __VA_ARGS__)                 \
      default: DL_CUDA_REQUIRE(false, name ": unknown dtype");   \
    }                                                            \
  } while (0)

constexpr int kThreads = 256;

inline cudaStream_t stream() { return detail::current_stream(); }
inline unsigned grid_1d(int64_t work, int threads = kThreads) {
  return static_cast<unsigned>(detail::blocks_for(work, threads));
}

// Grid-stride loop over [0, n) with 64-bit indices.
#define KERNEL_LOOP(i, n)                                                                                 \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);                 \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// ---- accumulation types ------------------------------------------------------------------------
template <typename T>
using acc_t = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

// ---- math overloads (float and double; integer overloads only where they mean something) --------
__device__ __forceinline__ float d_exp(float x) { return expf(x); }
__device__ __forceinline__ double d_exp(double x) { return exp(x); }
__device__ __forceinline__ float d_log(float x) { return logf(x); }
__device__ __forceinline__ double d_log(double x) { return log(x); }
__device__ __forceinline__ float d_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double d_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float d_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double d_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float d_pow(float x, float e) { return powf(x, e); }
__device__ __forceinline__ double d_pow(double x, double e) { return pow(x, e); }
template <typename T>
__device__ __forceinline__ bool d_isnan(T x) {
  if constexpr (std::is_floating_point_v<T>)
    return x != x;
  else
    return false;
}

template <typename T>
__host__ __device__ constexpr T lowest_value() {
  if constexpr (std::is_floating_point_v<T>)
    return -std::numeric_limits<T>::infinity();
  else
    return std::numeric_limits<T>::lowest();
}
template <typename T>
__host__ __device__ constexpr T highest_value() {
  if constexpr (std::is_floating_point_v<T>)
    return std::numeric_limits<T>::infinity();
  else
    return std::numeric_limits<T>::max();
}

// ---- strided offsets -----------------------------------------------------------------------------
// Maps a linear index (row-major over sizes) to each operand's element offset.
template <int NOPS, typename index_t>
struct OffsetCalc {
  int ndim;
  index_t sizes[kMaxDims];
  index_t strides[NOPS][kMaxDims];

  explicit OffsetCalc(const Iter& it) : ndim(it.ndim) {
    for (int d = 0; d < kMaxDims; ++d) {
      sizes[d] = d < it.ndim ? static_cast<index_t>(it.sizes[d]) : 1;
      for (int k = 0; k < NOPS; ++k) strides[k][d] = d < it.ndim ? static_cast<index_t>(it.strides[k][d]) : 0;
    }
  }

  __device__ __forceinline__ void get(index_t linear, index_t (&off)[NOPS]) const {
#pragma unroll
    for (int k = 0; k < NOPS; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const index_t q = linear / sizes[d];
      const index_t r = linear - q * sizes[d];
      linear = q;
#pragma unroll
      for (int k = 0; k < NOPS; ++k) off[k] += r * strides[k][d];
    }
  }
};

// Whether every offset of every operand fits in int32, and the element count leaves room for a
// grid-stride step past the end (i + gridDim * blockDim must not overflow).
inline bool fits_int32(const Iter& it) {
  const int64_t lim = std::numeric_limits<int32_t>::max();
  if (it.numel > lim / 2) return false;
  for (int k = 0; k < it.nops; ++k) {
    int64_t max_off = 0;
    for (int d = 0; d < it.ndim; ++d) max_off += (it.sizes[d] - 1) * (it.strides[k][d] < 0 ? -it.strides[k][d] : it.strides[k][d]);
    if (max_off > lim) return false;
  }
  return true;
}

inline bool is_contiguous(const Iter& it) {
  if (it.ndim == 0) return true;
  if (it.ndim != 1) return false;
  for (int k = 0; k < it.nops; ++k)
    if (it.strides[k][0] != 1) return false;
  return true;
}

template <int VEC>
inline bool aligned_for(const void* p, int elem_size) {
  return reinterpret_cast<uintptr_t>(p) % (static_cast<uintptr_t>(elem_size) * VEC) == 0;
}

template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Vec {
  T v[VEC];
};

// ---- reductions ------------------------------------------------------------------------------------
template <typename T, typename Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, off));
  return v;  // lane 0 holds the result
}

// Block-wide reduction; every thread gets the result. `scratch` holds blockDim.x / 32 values.
// blockDim.x must be a multiple of 32, and every thread of the block must call it (it has
// barriers). Ends with a barrier, so scratch may be reused right after (back-to-back calls with
// the same scratch are safe).
//
// Shared-memory accesses, phase by phase (barriers between phases):
//   1. lane 0 of warp w writes scratch[w];
//   2. only warp 0 reads the partials (lane l reads scratch[l]); lane 0 of warp 0 then writes the
//      total to scratch[0]. No other thread touches scratch[0] in this phase: lane 0 read it
//      itself (program order), the other lanes read other slots. Other warps must not read here:
//      their lane 0 would read scratch[0] while warp 0 overwrites it (a race racecheck reports);
//   3. every thread reads scratch[0];
//   4. the closing barrier: nobody writes scratch (a next call's phase 1) before all have read.
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T identity, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_reduce(v, op);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T r = lane < nwarps ? scratch[lane] : identity;
    r = warp_reduce(r, op);
    if (lane == 0) scratch[0] = r;
  }
  __syncthreads();
  const T r = scratch[0];
  __syncthreads();
  return r;
}

struct SumOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};

}  // namespace dl::cuda::k
