#pragma once
// The elementwise launch machinery: out = op(in_0, ..., in_{NIN-1}) over operands that share one
// shape (k::Iter), in three variants chosen at launch:
//   contiguous and 16-byte aligned   vectorised loads/stores of VEC elements per thread
//   contiguous                       one element per thread
//   strided                          offsets from the linear index (OffsetCalc), 32-bit index
//                                    math when every offset fits, else 64-bit
// All are grid-stride loops. `op` is an extended __device__ lambda.
#include "cuda/device_utils.cuh"

namespace dl::cuda::k {

template <typename TI, int NIN>
struct InPtrs {
  const TI* p[NIN > 0 ? NIN : 1];
};

template <int NIN, typename Op, typename TI>
__device__ __forceinline__ auto call_op(const Op& op, const TI (&v)[NIN > 0 ? NIN : 1]) {
  if constexpr (NIN == 0)
    return op();
  else if constexpr (NIN == 1)
    return op(v[0]);
  else if constexpr (NIN == 2)
    return op(v[0], v[1]);
  else
    return op(v[0], v[1], v[2]);
}

template <int VEC, typename TO, typename TI, int NIN, typename Op>
__global__ void map_contiguous_kernel(int64_t n, TO* __restrict__ out, InPtrs<TI, NIN> in, Op op) {
  const int64_t nvec = n / VEC;
  KERNEL_LOOP(v, nvec) {
    Vec<TI, VEC> a[NIN > 0 ? NIN : 1];
#pragma unroll
    for (int k = 0; k < NIN; ++k) a[k] = reinterpret_cast<const Vec<TI, VEC>*>(in.p[k])[v];
    Vec<TO, VEC> r;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      TI x[NIN > 0 ? NIN : 1];
#pragma unroll
      for (int k = 0; k < NIN; ++k) x[k] = a[k].v[j];
      r.v[j] = static_cast<TO>(call_op<NIN>(op, x));
    }
    reinterpret_cast<Vec<TO, VEC>*>(out)[v] = r;
  }
  if constexpr (VEC > 1) {  // the last n % VEC elements
    const int64_t t = nvec * VEC + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (t < n) {
      TI x[NIN > 0 ? NIN : 1];
#pragma unroll
      for (int k = 0; k < NIN; ++k) x[k] = in.p[k][t];
      out[t] = static_cast<TO>(call_op<NIN>(op, x));
    }
  }
}

template <typename TO, typename TI, int NIN, typename index_t, typename Op>
__global__ void map_strided_kernel(index_t n, TO* __restrict__ out, InPtrs<TI, NIN> in,
                                   OffsetCalc<NIN + 1, index_t> calc, Op op) {
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<index_t>(blockDim.x) * gridDim.x) {
    index_t off[NIN + 1];
    calc.get(i, off);
    TI x[NIN > 0 ? NIN : 1];
#pragma unroll
    for (int k = 0; k < NIN; ++k) x[k] = in.p[k][off[k + 1]];
    out[off[0]] = static_cast<TO>(call_op<NIN>(op, x));
  }
}

// out and in[] are typed device pointers to the first element of each operand (it.nops == NIN + 1).
template <typename TO, typename TI, int NIN, typename Op>
void launch_map(TO* out, InPtrs<TI, NIN> in, const Iter& it, Op op) {
  const int64_t n = it.numel;
  if (n <= 0) return;
  if (is_contiguous(it)) {
    constexpr int VEC = 4;
    bool aligned = aligned_for<VEC>(out, sizeof(TO));
    for (int k = 0; k < NIN; ++k) aligned = aligned && aligned_for<VEC>(in.p[k], sizeof(TI));
    if (aligned && n >= VEC) {
      map_contiguous_kernel<VEC, TO, TI, NIN><<<grid_1d(n / VEC), kThreads, 0, stream()>>>(n, out, in, op);
    } else {
      map_contiguous_kernel<1, TO, TI, NIN><<<grid_1d(n), kThreads, 0, stream()>>>(n, out, in, op);
    }
  } else if (fits_int32(it)) {
    map_strided_kernel<TO, TI, NIN, int32_t>
        <<<grid_1d(n), kThreads, 0, stream()>>>(static_cast<int32_t>(n), out, in, OffsetCalc<NIN + 1, int32_t>(it), op);
  } else {
    map_strided_kernel<TO, TI, NIN, int64_t>
        <<<grid_1d(n), kThreads, 0, stream()>>>(n, out, in, OffsetCalc<NIN + 1, int64_t>(it), op);
  }
  DL_CUDA_LAUNCH_CHECK("elementwise kernel");
}

// f(off) for every element, off[k] = element offset of operand k (int64); for ops whose operands
// have different types (where).
template <int NOPS, typename index_t, typename F>
__global__ void offsets_kernel(index_t n, OffsetCalc<NOPS, index_t> calc, F f) {
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<index_t>(blockDim.x) * gridDim.x) {
    index_t off[NOPS];
    calc.get(i, off);
    int64_t off64[NOPS];
#pragma unroll
    for (int k = 0; k < NOPS; ++k) off64[k] = off[k];
    f(off64);
  }
}

template <int NOPS, typename F>
void launch_offsets(const Iter& it, F f) {
  const int64_t n = it.numel;
  if (n <= 0) return;
  if (fits_int32(it))
    offsets_kernel<NOPS, int32_t><<<grid_1d(n), kThreads, 0, stream()>>>(static_cast<int32_t>(n),
                                                                          OffsetCalc<NOPS, int32_t>(it), f);
  else
    offsets_kernel<NOPS, int64_t><<<grid_1d(n), kThreads, 0, stream()>>>(n, OffsetCalc<NOPS, int64_t>(it), f);
  DL_CUDA_LAUNCH_CHECK("elementwise kernel");
}

}  // namespace dl::cuda::k
