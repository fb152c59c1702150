// Cross-entropy fused with log-softmax, per sample, with the CPU kernel's arithmetic
// (tensor/cpu/loss.cpp): everything in double, a_ic = (1 - ls) w_y [c == y] + (ls / C) w_c,
//   loss_i = -sum_c a_ic log_softmax(z_i)_c,   d loss_i / d z_ic = (sum_c a_ic) softmax_ic - a_ic.
// One warp per sample (grid-stride over samples); lanes stride over the classes.
#include "cuda/device_utils.cuh"

namespace dl::cuda::k {
namespace {

struct MaxD {
  __device__ __forceinline__ double operator()(double a, double b) const { return a < b ? b : a; }
};

// log(sum_c exp(z_c)) for one row, in double; every lane gets it
template <typename T>
__device__ double warp_log_sum_exp(const T* z, int64_t C, int lane) {
  double m = -INFINITY;
  for (int64_t c = lane; c < C; c += 32) m = MaxD{}(m, static_cast<double>(z[c]));
  m = __shfl_sync(0xffffffffu, warp_reduce(m, MaxD{}), 0);
  if (isinf(m)) return m;
  double s = 0;
  for (int64_t c = lane; c < C; c += 32) s += exp(static_cast<double>(z[c]) - m);
  s = __shfl_sync(0xffffffffu, warp_reduce(s, SumOp{}), 0);
  return m + log(s);
}

template <typename T>
__device__ double warp_sum(const T* v, int64_t C, int lane) {
  double s = 0;
  for (int64_t c = lane; c < C; c += 32) s += static_cast<double>(v[c]);
  return __shfl_sync(0xffffffffu, warp_reduce(s, SumOp{}), 0);
}

template <typename T>
__global__ void forward_kernel(T* losses, const T* logits, const int64_t* target, const T* weight, int64_t N,
                               int64_t C, double ls) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); i < N; i += warps) {
    const T* z = logits + i * C;
    const int64_t y = target[i];
    const double lse = warp_log_sum_exp(z, C, lane);
    const double wy = weight ? static_cast<double>(weight[y]) : 1.0;
    double loss = -(1.0 - ls) * wy * (static_cast<double>(z[y]) - lse);
    if (ls != 0.0) {
      // sum_c w_c logp_c = sum_c w_c z_c - lse * sum_c w_c
      double wz = 0;
      for (int64_t c = lane; c < C; c += 32) wz += (weight ? static_cast<double>(weight[c]) : 1.0) * static_cast<double>(z[c]);
      wz = __shfl_sync(0xffffffffu, warp_reduce(wz, SumOp{}), 0);
      const double wsum = weight ? warp_sum(weight, C, lane) : static_cast<double>(C);
      loss -= ls / static_cast<double>(C) * (wz - lse * wsum);
    }
    if (lane == 0) losses[i] = static_cast<T>(loss);
  }
}

template <typename T>
__global__ void backward_kernel(T* grad, const T* grad_losses, const T* logits, const int64_t* target, const T* weight,
                                int64_t N, int64_t C, double ls) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  const double smooth = ls / static_cast<double>(C);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); i < N; i += warps) {
    const T* z = logits + i * C;
    T* g = grad + i * C;
    const int64_t y = target[i];
    const double gl = static_cast<double>(grad_losses[i]);
    const double lse = warp_log_sum_exp(z, C, lane);
    const double wsum = weight ? warp_sum(weight, C, lane) : static_cast<double>(C);
    const double hard = (1.0 - ls) * (weight ? static_cast<double>(weight[y]) : 1.0);
    const double total = hard + smooth * wsum;
    for (int64_t c = lane; c < C; c += 32) {
      const double a = smooth * (weight ? static_cast<double>(weight[c]) : 1.0) + (c == y ? hard : 0.0);
      g[c] = static_cast<T>(gl * (total * exp(static_cast<double>(z[c]) - lse) - a));
    }
  }
}

template <typename T>
void forward_typed(void* losses, const void* logits, const int64_t* target, const void* weight, int64_t N, int64_t C,
                   double ls) {
  if (N == 0) return;
  forward_kernel<T><<<grid_1d(N * 32), kThreads, 0, stream()>>>(static_cast<T*>(losses), static_cast<const T*>(logits),
                                                                 target, static_cast<const T*>(weight), N, C, ls);
  DL_CUDA_LAUNCH_CHECK("cross_entropy forward_kernel");
}

template <typename T>
void backward_typed(void* grad, const void* grad_losses, const void* logits, const int64_t* target, const void* weight,
                    int64_t N, int64_t C, double ls) {
  if (N == 0) return;
  backward_kernel<T><<<grid_1d(N * 32), kThreads, 0, stream()>>>(
      static_cast<T*>(grad), static_cast<const T*>(grad_losses), static_cast<const T*>(logits), target,
      static_cast<const T*>(weight), N, C, ls);
  DL_CUDA_LAUNCH_CHECK("cross_entropy backward_kernel");
}

}  // namespace

void cross_entropy_forward(DType dt, void* losses, const void* logits, const int64_t* target, const void* weight,
                           int64_t N, int64_t C, double label_smoothing) {
  KDISPATCH_FLOATING(dt, "cross_entropy", forward_typed, losses, logits, target, weight, N, C, label_smoothing);
}

void cross_entropy_backward(DType dt, void* grad, const void* grad_losses, const void* logits, const int64_t* target,
                            const void* weight, int64_t N, int64_t C, double label_smoothing) {
  KDISPATCH_FLOATING(dt, "cross_entropy backward", backward_typed, grad, grad_losses, logits, target, weight, N, C,
                     label_smoothing);
}

}  // namespace dl::cuda::k
