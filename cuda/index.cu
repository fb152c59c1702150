// gather and scatter_add along one dim, over index tensors of any strides. An index outside
// [0, limit) is never dereferenced: the element is skipped and the first bad value reported to the
// host, which throws (tensor/ops.h's contract). scatter_add accumulates with atomics (uint8 through
// a 32-bit compare-and-swap), so float sums into one slot may round differently run to run.
#include "cuda/device_utils.cuh"

namespace dl::cuda::k {
namespace {

struct Offsets {
  int64_t index, x, out, dim_pos;
};

__device__ __forceinline__ Offsets offsets_of(const IndexGeom& g, int64_t linear) {
  Offsets o{0, 0, 0, 0};
  for (int d = g.ndim - 1; d >= 0; --d) {
    const int64_t q = linear / g.sizes[d];
    const int64_t r = linear - q * g.sizes[d];
    linear = q;
    o.index += r * g.index_strides[d];
    o.x += r * g.x_strides[d];
    o.out += r * g.out_strides[d];
    if (d == g.dim) o.dim_pos = r;
  }
  return o;
}

// records the first bad index seen (flag[0] = 1, flag[1] = value)
__device__ __forceinline__ void report(unsigned long long* flag, int64_t v) {
  if (atomicCAS(flag, 0ull, 1ull) == 0ull) flag[1] = static_cast<unsigned long long>(v);
}

template <typename T>
__global__ void gather_kernel(T* out, const T* x, const int64_t* index, IndexGeom g, int64_t n,
                              unsigned long long* flag) {
  KERNEL_LOOP(i, n) {
    const Offsets o = offsets_of(g, i);
    const int64_t v = index[o.index];
    if (v < 0 || v >= g.limit) {
      report(flag, v);
      out[o.out] = T(0);
      continue;
    }
    out[o.out] = x[o.x + (v - o.dim_pos) * g.x_strides[g.dim]];
  }
}

__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double* p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(int64_t* p, int64_t v) {
  atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));  // two's complement
}
__device__ __forceinline__ void atomic_add(uint8_t* p, uint8_t v) {
  // add into the byte's lane of its aligned 32-bit word
  unsigned int* word = reinterpret_cast<unsigned int*>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t(3));
  const unsigned shift = (reinterpret_cast<uintptr_t>(p) & 3u) * 8u;
  unsigned int old = *word, assumed;
  do {
    assumed = old;
    const unsigned int byte = ((assumed >> shift) + v) & 0xffu;
    old = atomicCAS(word, assumed, (assumed & ~(0xffu << shift)) | (byte << shift));
  } while (old != assumed);
}

// here x_strides are out's and out_strides are src's (see IndexGeom)
template <typename T>
__global__ void scatter_add_kernel(T* out, const T* src, const int64_t* index, IndexGeom g, int64_t n,
                                   unsigned long long* flag) {
  KERNEL_LOOP(i, n) {
    const Offsets o = offsets_of(g, i);
    const int64_t v = index[o.index];
    if (v < 0 || v >= g.limit) {
      report(flag, v);
      continue;
    }
    atomic_add(out + o.x + (v - o.dim_pos) * g.x_strides[g.dim], src[o.out]);
  }
}

int64_t count(const IndexGeom& g) {
  int64_t n = 1;
  for (int d = 0; d < g.ndim; ++d) n *= g.sizes[d];
  return n;
}

// Reads the flag back (synchronising the stream); returns false with the bad value if one was seen.
bool read_flag(unsigned long long* flag, int64_t* bad) {
  unsigned long long h[2] = {0, 0};
  DL_CUDA_CHECK(cudaMemcpyAsync(h, flag, sizeof(h), cudaMemcpyDeviceToHost, stream()));
  DL_CUDA_CHECK(cudaStreamSynchronize(stream()));
  if (h[0] == 0) return true;
  if (bad) *bad = static_cast<int64_t>(h[1]);
  return false;
}

template <typename T>
void gather_typed(void* out, const void* x, const int64_t* index, const IndexGeom& g, bool* ok, int64_t* bad) {
  const int64_t n = count(g);
  if (n == 0) return;
  detail::Workspace flag(2 * sizeof(unsigned long long));
  DL_CUDA_CHECK(cudaMemsetAsync(flag.ptr, 0, 2 * sizeof(unsigned long long), stream()));
  gather_kernel<T><<<grid_1d(n), kThreads, 0, stream()>>>(static_cast<T*>(out), static_cast<const T*>(x), index, g, n,
                                                          flag.as<unsigned long long>());
  DL_CUDA_LAUNCH_CHECK("gather_kernel");
  *ok = read_flag(flag.as<unsigned long long>(), bad);
}

template <typename T>
void scatter_add_typed(void* out, const int64_t* index, const void* src, const IndexGeom& g, bool* ok, int64_t* bad) {
  const int64_t n = count(g);
  if (n == 0) return;
  detail::Workspace flag(2 * sizeof(unsigned long long));
  DL_CUDA_CHECK(cudaMemsetAsync(flag.ptr, 0, 2 * sizeof(unsigned long long), stream()));
  scatter_add_kernel<T><<<grid_1d(n), kThreads, 0, stream()>>>(static_cast<T*>(out), static_cast<const T*>(src), index,
                                                               g, n, flag.as<unsigned long long>());
  DL_CUDA_LAUNCH_CHECK("scatter_add_kernel");
  *ok = read_flag(flag.as<unsigned long long>(), bad);
}

}  // namespace

bool gather(DType dt, void* out, const void* x, const int64_t* index, const IndexGeom& g, int64_t* bad_index) {
  bool ok = true;
  KDISPATCH_ALL(dt, "gather", gather_typed, out, x, index, g, &ok, bad_index);
  return ok;
}

bool scatter_add(DType dt, void* out, const int64_t* index, const void* src, const IndexGeom& g, int64_t* bad_index) {
  bool ok = true;
  KDISPATCH_ALL(dt, "scatter_add", scatter_add_typed, out, index, src, g, &ok, bad_index);
  return ok;
}

}  // namespace dl::cuda::k
