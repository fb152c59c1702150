#pragma once
// Differentiable neural-network functions (the layers' building blocks). Forward and backward of
// each live side by side in autograd/functions/<family>.cpp; their raw kernels are in
// tensor/nn_ops.h and tensor/cpu/. Layouts are PyTorch's: NCHW activations, (out, in/groups, kh, kw)
// conv weights, (out, in) linear weights.
#include <array>
#include <optional>

#include "tensor/op_defs.h"
#include "tensor/tensor.h"

namespace dl {

// The parameter structs (Conv2dParams, Pool2dParams) are tensor/op_defs.h's, the same the kernels
// read; set the options (stride, padding, ...) and leave the geometry fields alone.

// x (N, C, H, W), weight (O, C/groups, kh, kw), bias (O) or undefined.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), const Conv2dParams& opt = {});

// x (..., in), weight (out, in), bias (out) or undefined: x @ weight^T + bias.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// Batch norm over dim 1 of (N, C) or (N, C, H, W). In training, normalises with the batch's
// statistics (biased variance) and, when running_mean/var are given, updates them in place with
// `momentum` and the unbiased variance, as PyTorch does. In eval, uses the running statistics.
// weight/bias (C) or undefined (no affine).
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);

// batch_norm, plus `residual` when given (x's shape), then ReLU, fused: one pass writes
// max(batch_norm(x) + residual, 0), and backward masks the gradient with the output before batch
// norm's backward (the residual's gradient is that masked gradient). The same results as
// (batch_norm(...) + residual).relu(), with fewer passes over memory and fewer tensors alive.
Tensor batch_norm_relu(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                       const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5,
                       const Tensor& residual = Tensor());

Tensor max_pool2d(const Tensor& x, const Pool2dParams& opt);
Tensor avg_pool2d(const Tensor& x, const Pool2dParams& opt);
Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size);

// Zeroes each element with probability p and scales the rest by 1/(1-p) in training; identity
// in eval. Draws from `gen` (or the default generator), so a seed fixes the mask.
Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);

enum class Reduction { Mean, Sum, None };
struct CrossEntropyOptions {
  Reduction reduction = Reduction::Mean;
  double label_smoothing = 0.0;
  Tensor weight = Tensor();  // per-class weights (C) or undefined
};
// logits (N, C), target int64 (N) with values in [0, C): log_softmax fused with NLL, as
// torch.nn.functional.cross_entropy (weighted mean divides by the sum of the targets' weights).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyOptions& opt = {});

}  // namespace dl
