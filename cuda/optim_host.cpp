// Argument checks of the fused optimizer steps (cuda/optim.h) and their launches (cuda/optim.cu).
#include <cmath>

#include "cuda/host.h"
#include "cuda/optim.h"
#include "tensor/error.h"

namespace dl::cuda {
namespace {

void check_operand(const Tensor& t, const Tensor& param, const char* op, const char* what) {
  if (!t.defined()) fail("{}: {} is undefined", op, what);
  if (!t.device().is_cuda()) fail("{}: {} is on {}, expected a CUDA tensor", op, what, t.device().str());
  host::check_device(t, op);
  if (t.dtype() != param.dtype())
    fail("{}: {} is {} but the parameter is {}", op, what, dtype_name(t.dtype()), dtype_name(param.dtype()));
  if (t.sizes() != param.sizes())
    fail("{}: {} has shape {} but the parameter has shape {}", op, what, shape_str(t.sizes()), shape_str(param.sizes()));
  if (!t.is_contiguous()) fail("{}: {} of shape {} is not contiguous", op, what, shape_str(t.sizes()));
}

}  // namespace

void fused_sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SGDStep& s) {
  const char* op = "fused_sgd_step";
  check_operand(param, param, op, "param");
  if (!is_floating(param.dtype())) fail("{}: the parameter must be float32 or float64, got {}", op, dtype_name(param.dtype()));
  check_operand(grad, param, op, "grad");
  if (s.momentum != 0) check_operand(momentum_buffer, param, op, "momentum_buffer");
  if (!std::isfinite(s.lr) || s.lr < 0) fail("{}: invalid learning rate {}", op, s.lr);
  k::sgd_step(param.dtype(), param.raw_data(), grad.raw_data(),
              s.momentum != 0 ? momentum_buffer.raw_data() : nullptr, param.numel(), s.lr, s.momentum, s.dampening,
              s.weight_decay, s.nesterov, s.first);
}

void fused_adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                     const Tensor& max_exp_avg_sq, const AdamStep& s) {
  const char* op = "fused_adam_step";
  check_operand(param, param, op, "param");
  if (!is_floating(param.dtype())) fail("{}: the parameter must be float32 or float64, got {}", op, dtype_name(param.dtype()));
  check_operand(grad, param, op, "grad");
  check_operand(exp_avg, param, op, "exp_avg");
  check_operand(exp_avg_sq, param, op, "exp_avg_sq");
  if (s.amsgrad) check_operand(max_exp_avg_sq, param, op, "max_exp_avg_sq");
  if (s.step < 1) fail("{}: step must be >= 1 (the count including this step), got {}", op, s.step);
  if (!(s.beta1 >= 0 && s.beta1 < 1) || !(s.beta2 >= 0 && s.beta2 < 1))
    fail("{}: betas must lie in [0, 1), got ({}, {})", op, s.beta1, s.beta2);
  const double t = static_cast<double>(s.step);
  const double step_size = s.lr / (1.0 - std::pow(s.beta1, t));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(s.beta2, t));
  k::adam_step(param.dtype(), param.raw_data(), grad.raw_data(), exp_avg.raw_data(),
               exp_avg_sq.raw_data(), s.amsgrad ? max_exp_avg_sq.raw_data() : nullptr, param.numel(), s.lr, s.beta1,
               s.beta2, s.eps, s.weight_decay, step_size, bc2_sqrt, s.decoupled, s.amsgrad);
}

}  // namespace dl::cuda
