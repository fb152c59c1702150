// CPU cross-entropy: log_softmax fused with the (label-smoothed, class-weighted) NLL, per sample.
// With a_ic = (1 - ls) w_y [c == y] + (ls / C) w_c the loss of sample i is -sum_c a_ic logp_ic,
// and its gradient with respect to the logits is (sum_c a_ic) softmax_i - a_i.
#include <algorithm>
#include <cmath>
#include <limits>

#include "tensor/cpu/loops.h"
#include "tensor/cpu/register.h"

namespace dl::cpu {
namespace {

// log(sum_c exp(z_c)) computed stably in double
template <typename T>
double log_sum_exp(const T* z, int64_t C) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t c = 0; c < C; ++c) m = std::max(m, static_cast<double>(z[c]));
  if (std::isinf(m)) return m;  // all -inf (or a +inf): the sum is dominated by it
  double s = 0;
  for (int64_t c = 0; c < C; ++c) s += std::exp(static_cast<double>(z[c]) - m);
  return m + std::log(s);
}

template <typename T>
void forward_typed(T* losses, const T* logits, const int64_t* target, const T* weight, int64_t N, int64_t C,
                   double ls) {
  double wsum = C;  // sum of class weights (C without weights)
  if (weight) {
    wsum = 0;
    for (int64_t c = 0; c < C; ++c) wsum += static_cast<double>(weight[c]);
  }
#pragma omp parallel for schedule(static) if (N > 1 && N * C > kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    const T* z = logits + i * C;
    const int64_t y = target[i];
    const double lse = log_sum_exp(z, C);
    const double wy = weight ? static_cast<double>(weight[y]) : 1.0;
    double loss = -(1.0 - ls) * wy * (static_cast<double>(z[y]) - lse);
    if (ls != 0.0) {
      // sum_c w_c logp_c = sum_c w_c z_c - lse * sum_c w_c
      double wz = 0;
      for (int64_t c = 0; c < C; ++c) wz += (weight ? static_cast<double>(weight[c]) : 1.0) * static_cast<double>(z[c]);
      loss -= ls / static_cast<double>(C) * (wz - lse * wsum);
    }
    losses[i] = static_cast<T>(loss);
  }
}

template <typename T>
void backward_typed(T* grad, const T* grad_losses, const T* logits, const int64_t* target, const T* weight, int64_t N,
                    int64_t C, double ls) {
  double wsum = C;
  if (weight) {
    wsum = 0;
    for (int64_t c = 0; c < C; ++c) wsum += static_cast<double>(weight[c]);
  }
  const double smooth = ls / static_cast<double>(C);
#pragma omp parallel for schedule(static) if (N > 1 && N * C > kParallelGrain)
  for (int64_t i = 0; i < N; ++i) {
    const T* z = logits + i * C;
    T* g = grad + i * C;
    const int64_t y = target[i];
    const double gl = static_cast<double>(grad_losses[i]);
    const double lse = log_sum_exp(z, C);
    const double hard = (1.0 - ls) * (weight ? static_cast<double>(weight[y]) : 1.0);
    const double total = hard + smooth * wsum;  // sum_c a_ic
    for (int64_t c = 0; c < C; ++c) {
      const double a = smooth * (weight ? static_cast<double>(weight[c]) : 1.0) + (c == y ? hard : 0.0);
      g[c] = static_cast<T>(gl * (total * std::exp(static_cast<double>(z[c]) - lse) - a));
    }
  }
}

void cross_entropy_forward_kernel(const Tensor& losses, const Tensor& logits, const Tensor& target,
                                  const Tensor& weight, double ls) {
  DL_DISPATCH_FLOATING(logits.dtype(), "cross_entropy", [&] {
    forward_typed<scalar_t>(losses.data_ptr<scalar_t>(), logits.data_ptr<scalar_t>(), target.data_ptr<int64_t>(),
                            weight.defined() ? weight.data_ptr<scalar_t>() : nullptr, logits.sizes()[0],
                            logits.sizes()[1], ls);
  });
}

void cross_entropy_backward_kernel(const Tensor& grad, const Tensor& grad_losses, const Tensor& logits,
                                   const Tensor& target, const Tensor& weight, double ls) {
  DL_DISPATCH_FLOATING(logits.dtype(), "cross_entropy backward", [&] {
    backward_typed<scalar_t>(grad.data_ptr<scalar_t>(), grad_losses.data_ptr<scalar_t>(), logits.data_ptr<scalar_t>(),
                             target.data_ptr<int64_t>(), weight.defined() ? weight.data_ptr<scalar_t>() : nullptr,
                             logits.sizes()[0], logits.sizes()[1], ls);
  });
}

}  // namespace

void register_loss_kernels(KernelTable& t) {
  t.cross_entropy_forward = cross_entropy_forward_kernel;
  t.cross_entropy_backward = cross_entropy_backward_kernel;
}

}  // namespace dl::cpu
