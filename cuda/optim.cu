// Fused optimizer steps (cuda/optim.h): one pass over contiguous parameters, with the operation
// order and scalar rounding of nn/optim's fused CPU updates.
#include "cuda/device_utils.cuh"

namespace dl::cuda::k {
namespace {

template <typename T>
struct SgdArgs {
  T wd, mom, keep, neg_lr;
  bool use_wd, use_mom, nesterov, first;
};

template <typename T>
__global__ void sgd_kernel(T* p, const T* g, T* buf, int64_t n, SgdArgs<T> a) {
  KERNEL_LOOP(i, n) {
    T d = g[i];
    if (a.use_wd) d = d + a.wd * p[i];
    if (a.use_mom) {
      const T b = a.first ? d : buf[i] * a.mom + a.keep * d;
      buf[i] = b;
      d = a.nesterov ? d + a.mom * b : b;
    }
    p[i] = p[i] + a.neg_lr * d;
  }
}

template <typename T>
struct AdamArgs {
  T wd, decay, b1, omb1, b2, omb2, bc2_sqrt, eps, neg_step;
  bool coupled_wd, decoupled, amsgrad;
};

template <typename T>
__global__ void adam_kernel(T* p, const T* grad, T* m, T* v, T* vmax, int64_t n, AdamArgs<T> a) {
  KERNEL_LOOP(i, n) {
    T pi = p[i];
    T g = grad[i];
    if (a.decoupled) pi = pi * a.decay;
    if (a.coupled_wd) g = g + a.wd * pi;
    const T mi = m[i] * a.b1 + a.omb1 * g;
    const T vi = v[i] * a.b2 + a.omb2 * g * g;
    m[i] = mi;
    v[i] = vi;
    T second = vi;
    if (a.amsgrad) {
      const T x = vmax[i] > vi ? vmax[i] : vi;
      vmax[i] = x;
      second = x;
    }
    const T denom = d_sqrt(second) / a.bc2_sqrt + a.eps;
    p[i] = pi + a.neg_step * mi / denom;
  }
}

template <typename T>
void sgd_typed(void* p, const void* g, void* buf, int64_t n, double lr, double momentum, double dampening, double wd,
               bool nesterov, bool first) {
  if (n == 0) return;
  SgdArgs<T> a{static_cast<T>(wd), static_cast<T>(momentum), static_cast<T>(1.0 - dampening), static_cast<T>(-lr),
               wd != 0, momentum != 0, nesterov, first};
  sgd_kernel<T><<<grid_1d(n), kThreads, 0, stream()>>>(static_cast<T*>(p), static_cast<const T*>(g),
                                                        static_cast<T*>(buf), n, a);
  DL_CUDA_LAUNCH_CHECK("sgd_kernel");
}

template <typename T>
void adam_typed(void* p, const void* g, void* m, void* v, void* vmax, int64_t n, double lr, double beta1, double beta2,
                double eps, double wd, double step_size, double bc2_sqrt, bool decoupled, bool amsgrad) {
  if (n == 0) return;
  AdamArgs<T> a{static_cast<T>(wd),       static_cast<T>(1.0 - lr * wd), static_cast<T>(beta1),
                static_cast<T>(1.0 - beta1), static_cast<T>(beta2),       static_cast<T>(1.0 - beta2),
                static_cast<T>(bc2_sqrt), static_cast<T>(eps),           static_cast<T>(-step_size),
                !decoupled && wd != 0,    decoupled,                     amsgrad};
  adam_kernel<T><<<grid_1d(n), kThreads, 0, stream()>>>(static_cast<T*>(p), static_cast<const T*>(g),
                                                         static_cast<T*>(m), static_cast<T*>(v), static_cast<T*>(vmax),
                                                         n, a);
  DL_CUDA_LAUNCH_CHECK("adam_kernel");
}

}  // namespace

void sgd_step(DType dt, void* param, const void* grad, void* momentum_buffer, int64_t n, double lr, double momentum,
              double dampening, double weight_decay, bool nesterov, bool first) {
  KDISPATCH_FLOATING(dt, "fused_sgd_step", sgd_typed, param, grad, momentum_buffer, n, lr, momentum, dampening,
                     weight_decay, nesterov, first);
}

void adam_step(DType dt, void* param, const void* grad, void* exp_avg, void* exp_avg_sq, void* max_exp_avg_sq,
               int64_t n, double lr, double beta1, double beta2, double eps, double weight_decay, double step_size,
               double bias_correction2_sqrt, bool decoupled, bool amsgrad) {
  KDISPATCH_FLOATING(dt, "fused_adam_step", adam_typed, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, n, lr, beta1,
                     beta2, eps, weight_decay, step_size, bias_correction2_sqrt, decoupled, amsgrad);
}

}  // namespace dl::cuda::k
