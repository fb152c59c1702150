#pragma once
// Raw (non-differentiable) neural-network ops: convolution, batch norm, pooling, the fused
// cross-entropy and the dropout mask. Like tensor/ops.h they validate arguments with messages a
// user can act on, allocate results and call the device's kernel (tensor/dispatch.h). The
// differentiable functions of autograd/functional.h are built on these.
//
// Layouts are PyTorch's: activations (N, C, H, W), conv weights (O, C/groups, kh, kw).
#include <array>
#include <cstdint>

#include "tensor/op_defs.h"
#include "tensor/tensor.h"

namespace dl::ops {

// The parameter structs (Conv2dParams, Pool2dParams) are in tensor/op_defs.h, shared with the
// kernels of both devices. The caller sets the options; these ops hand the kernel a copy with the
// geometry fields filled in.

// ---- conv2d ------------------------------------------------------------------------------------
// x (N, C, H, W), weight (O, C/groups, kh, kw), bias (O) or undefined -> (N, O, Ho, Wo).
Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p);
// Inference: act(conv2d_forward(x, weight, no bias) * scale + shift + residual), act = ReLU when relu, else none;
// scale and shift (O), residual (N, O, Ho, Wo), each undefined when absent. One pass over the output where the
// device has a fused kernel (the CPU applies it as each block of the output is written); the composition of the
// separate kernels elsewhere. Not differentiable: BatchNorm2d::forward_conv uses it outside autograd only.
Tensor conv2d_forward_affine(const Tensor& x, const Tensor& weight, const Tensor& scale, const Tensor& shift,
                             const Tensor& residual, bool relu, const Conv2dParams& p);
// grad_out (N, O, Ho, Wo) -> gradient for an input of shape `input_shape`.
Tensor conv2d_backward_input(const Tensor& grad_out, const Tensor& weight, const Shape& input_shape,
                             const Conv2dParams& p);
// grad_out (N, O, Ho, Wo), x (N, C, H, W) -> gradient for a weight of shape `weight_shape`.
Tensor conv2d_backward_weight(const Tensor& grad_out, const Tensor& x, const Shape& weight_shape,
                              const Conv2dParams& p);
// grad_out (N, O, Ho, Wo) -> (O): the sum over N, Ho, Wo.
Tensor conv2d_backward_bias(const Tensor& grad_out);
// Output spatial size of a convolution (validated: throws when the kernel does not fit).
std::array<int64_t, 2> conv2d_output_size(const Shape& input, const Shape& weight, const Conv2dParams& p);

// ---- batch norm --------------------------------------------------------------------------------
// x (N, C, *) of any rank >= 2; weight, bias, running_mean, running_var (C) or undefined.
// training: normalises with the batch statistics (biased variance) and, when the running
// statistics are given, updates them in place: r = (1 - momentum) r + momentum * batch_stat,
// with the unbiased variance. eval: normalises with the running statistics (required).
struct BatchNormForward {
  Tensor out;
  Tensor mean;    // (C) the statistics used: batch mean (training) or running mean (eval)
  Tensor invstd;  // (C) 1 / sqrt(var + eps) for the same
};
BatchNormForward batch_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                    const Tensor& running_mean, const Tensor& running_var, bool training,
                                    double momentum, double eps);
// The same, plus `residual` when given (x's shape: a residual block's shortcut), then ReLU, in one
// pass over the output: out = max(batch_norm(x) + residual, 0). The mean and invstd returned are
// batch_norm_forward's.
BatchNormForward batch_norm_relu_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                         const Tensor& running_mean, const Tensor& running_var, bool training,
                                         double momentum, double eps, const Tensor& residual = Tensor());
struct BatchNormGrads {
  Tensor input, weight, bias;  // undefined where not asked for
};
// mean/invstd as returned by batch_norm_forward; `training` must match the forward call
// (in training the gradient flows through the batch statistics too).
BatchNormGrads batch_norm_backward(const Tensor& grad_out, const Tensor& x, const Tensor& weight,
                                   const Tensor& mean, const Tensor& invstd, bool training,
                                   std::array<bool, 3> needs);

// ---- relu --------------------------------------------------------------------------------------
// ReLU's backward from its output y = relu(x): grad where y > 0, else 0 (one pass, no mask tensor).
// grad and y have the same shape, dtype and device.
Tensor relu_backward(const Tensor& grad, const Tensor& y);

// ---- pooling -----------------------------------------------------------------------------------
// PyTorch's pooling output size for one dim, incl. ceil_mode's rule that the last window must
// start inside the input or the left padding.
int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, bool ceil_mode);

// x (N, C, H, W) -> values (N, C, Ho, Wo) and int64 indices into each H*W plane (PyTorch's).
// with_indices = false (no backward will run): on the CPU the indices are not written and come back
// undefined.
std::pair<Tensor, Tensor> max_pool2d_forward(const Tensor& x, Pool2dParams p, bool with_indices = true);
Tensor max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Shape& input_shape);
Tensor avg_pool2d_forward(const Tensor& x, Pool2dParams p);
Tensor avg_pool2d_backward(const Tensor& grad_out, const Shape& input_shape, Pool2dParams p);
// Windows start = floor(i * In / Out), end = ceil((i + 1) * In / Out).
Tensor adaptive_avg_pool2d_forward(const Tensor& x, std::array<int64_t, 2> output_size);
Tensor adaptive_avg_pool2d_backward(const Tensor& grad_out, const Shape& input_shape);

// ---- cross entropy -----------------------------------------------------------------------------
// Per-sample loss of log_softmax + NLL with label smoothing as PyTorch 1.13 defines it:
//   loss_i = -sum_c a_ic log_softmax(z_i)_c,  a_ic = (1 - ls) w_{y_i} [c == y_i] + (ls / C) w_c
// (w = 1 without class weights). logits (N, C), target int64 (N) in [0, C), weight (C) or
// undefined. Returns (N).
Tensor cross_entropy_losses(const Tensor& logits, const Tensor& target, const Tensor& weight,
                            double label_smoothing);
// The denominator of the weighted mean: sum_i w_{y_i} (N without weights), a 0-d tensor.
Tensor cross_entropy_weight_sum(const Tensor& target, const Tensor& weight, int64_t n, DType dtype);
// Gradient with respect to the logits given the upstream gradient of each sample's loss (N).
Tensor cross_entropy_backward(const Tensor& grad_losses, const Tensor& logits, const Tensor& target,
                              const Tensor& weight, double label_smoothing);

// ---- dropout -----------------------------------------------------------------------------------
// A mask of x's shape, dtype and device: 0 with probability p, 1 / (1 - p) otherwise (all zeros
// when p == 1), drawn from `gen` on the CPU in row-major order.
Tensor dropout_mask(const Shape& shape, double p, DType dtype, Device device, Generator& gen);

}  // namespace dl::ops
