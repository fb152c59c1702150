#pragma once
// Fused optimizer steps on the GPU: one kernel reads and writes each parameter element once,
// instead of the half-dozen tensor ops of the generic path. The arithmetic (order of operations,
// scalars rounded to the parameter's dtype) is that of nn/optim's fused CPU updates, which follow
// torch.optim 1.13 step for step; results agree with the CPU to rounding (the GPU contracts
// a * b + c into one FMA).
//
// All tensors: CUDA, contiguous, the same shape and floating dtype. The optimizers in nn/optim
// can call these for CUDA parameters; so can a hand-written training loop.
#include <cstdint>

namespace dl {
class Tensor;
}

namespace dl::cuda {

// torch.optim.SGD:  d = g + weight_decay * p;  with momentum: buf = first ? d : momentum * buf +
// (1 - dampening) * d,  d = nesterov ? d + momentum * buf : buf;  p -= lr * d.
struct SGDStep {
  double lr = 0.0;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool first = false;  // the momentum buffer is uninitialised and takes d (the first step)
};
// momentum_buffer may be undefined when momentum == 0.
void fused_sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SGDStep& s);

// torch.optim.Adam / AdamW (decoupled = true), step t >= 1 (the count after this step):
//   AdamW: p *= 1 - lr * wd;   Adam: g += wd * p
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g;  amsgrad: vmax = max(vmax, v), used for v
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
struct AdamStep {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  int64_t step = 1;
  bool decoupled = false;  // AdamW
  bool amsgrad = false;
};
// max_exp_avg_sq may be undefined unless amsgrad.
void fused_adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                     const Tensor& max_exp_avg_sq, const AdamStep& s);

}  // namespace dl::cuda
