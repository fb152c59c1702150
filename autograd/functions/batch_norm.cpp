// batch_norm: forward normalises with batch statistics (training) or the running ones (eval);
// backward in training also flows through the batch mean and variance.
#include "autograd/functional.h"
#include "autograd/node.h"
#include "tensor/nn_ops.h"

namespace dl {

using autograd::NeedsGrad;
using autograd::record;
using autograd::save;

namespace {
void check_running_stats(const Tensor& running_mean, const Tensor& running_var) {
  for (const Tensor* t : {&running_mean, &running_var})
    if (t->defined() && t->requires_grad() && autograd::grad_mode_enabled())
      fail("batch_norm: running statistics are buffers updated in place and must not require grad");
}
// A tracer gets the running statistics actually used (or none, when the batch's own are) and eps.
autograd::TraceInfo bn_trace(const Tensor& running_mean, const Tensor& running_var, bool training, double eps) {
  return autograd::trace_info([&] {
    autograd::TraceInfo info{{{"epsilon", {}, {eps}}, {"training", {training ? 1 : 0}, {}}}, {}};
    if (!training) info.extra = {running_mean, running_var};
    return info;
  });
}
}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  if (!x.defined()) fail("batch_norm: the input is an undefined tensor");
  check_running_stats(running_mean, running_var);
  // (N, C, ...): mean and invstd are the statistics actually used, saved for backward
  ops::BatchNormForward f =
      ops::batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps);
  Tensor xs = save(x), ws = save(weight), mean = f.mean, invstd = f.invstd;
  return record("BatchNormBackward", f.out, {x, weight, bias},
                [xs, ws, mean, invstd, training](const Tensor& g, const NeedsGrad& needs) {
                  ops::BatchNormGrads gr =
                      ops::batch_norm_backward(g, xs, ws, mean, invstd, training, {needs[0], needs[1], needs[2]});
                  return std::vector<Tensor>{gr.input, gr.weight, gr.bias};
                },
                bn_trace(running_mean, running_var, training, eps));
}

Tensor batch_norm_relu(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, bool training, double momentum, double eps, const Tensor& residual) {
  if (!x.defined()) fail("batch_norm_relu: the input is an undefined tensor");
  check_running_stats(running_mean, running_var);
  ops::BatchNormForward f =
      ops::batch_norm_relu_forward(x, weight, bias, running_mean, running_var, training, momentum, eps, residual);
  // the output is saved as well: its sign is the ReLU's mask
  Tensor xs = save(x), ws = save(weight), ys = save(f.out), mean = f.mean, invstd = f.invstd;
  return record("BatchNormReluBackward", f.out, {x, weight, bias, residual},
                [xs, ws, ys, mean, invstd, training](const Tensor& g, const NeedsGrad& needs) {
                  Tensor gm = ops::relu_backward(g, ys);
                  ops::BatchNormGrads gr;
                  if (needs[0] || needs[1] || needs[2])
                    gr = ops::batch_norm_backward(gm, xs, ws, mean, invstd, training, {needs[0], needs[1], needs[2]});
                  return std::vector<Tensor>{gr.input, gr.weight, gr.bias, needs[3] ? gm : Tensor()};
                },
                bn_trace(running_mean, running_var, training, eps));
}

}  // namespace dl
