#pragma once
// The op dispatch table: one row of kernel pointers per device type. tensor/ops.cpp checks and
// allocates, then calls kernels(device).<op>(...). The CPU row is filled by tensor/cpu/; the CUDA
// row by cuda/ when it is built and initialised. Adding a kernel family = one field here.
//
// Kernel conventions: outputs are allocated by the caller with the final shape and dtype;
// inputs have already been broadcast (expanded views) and converted to the computing dtype;
// any input may be non-contiguous unless the field says otherwise.
#include <array>

#include "tensor/nn_ops.h"
#include "tensor/ops.h"

namespace dl {

struct KernelTable {
  // out = op(in); same dtype and shape.
  void (*unary)(ops::UnaryOp op, const Tensor& out, const Tensor& in, const ops::UnaryArgs& args) = nullptr;
  void (*pow_scalar)(const Tensor& out, const Tensor& in, double exponent) = nullptr;
  // out = op(a, b); a, b and out share a shape; comparisons write uint8 out.
  void (*binary)(ops::BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) = nullptr;
  // out = cond ? a : b, cond uint8.
  void (*where)(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) = nullptr;
  // dst = src (same shape), converting dtype. Both on this device.
  void (*copy)(const Tensor& dst, const Tensor& src) = nullptr;
  void (*fill)(const Tensor& dst, double value) = nullptr;
  // in: contiguous (outer, reduce) matrix flattened; out: contiguous (outer).
  void (*reduce_rows)(ops::ReduceOp op, const Tensor& out, const Tensor& in, int64_t rows, int64_t cols) = nullptr;
  // values/indices of the max over each contiguous row.
  void (*max_rows)(const Tensor& values, const Tensor& indices, const Tensor& in, int64_t rows, int64_t cols) = nullptr;
  // out[b] = a[b] @ b[b]; a: (B, M, K), b: (B, K, N), out (B, M, N) contiguous. a, b may be
  // transposed in their last two dims (unit stride in either), batch strides arbitrary. gemm_dtype:
  // for float32 operands, the low precision autocast multiplies in (tensor/autocast.h), or Float32.
  void (*bmm)(const Tensor& out, const Tensor& a, const Tensor& b, DType gemm_dtype) = nullptr;
  // softmax family over the middle dim of a contiguous (outer, D, inner) view.
  void (*softmax)(const Tensor& out, const Tensor& in, int64_t outer, int64_t d, int64_t inner, bool log) = nullptr;
  void (*softmax_backward)(const Tensor& grad_in, const Tensor& grad_out, const Tensor& y, int64_t outer,
                           int64_t d, int64_t inner, bool log) = nullptr;
  // gather/scatter_add along `dim`; index int64 with index.shape == out.shape (gather) or src.shape.
  void (*gather)(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) = nullptr;
  void (*scatter_add)(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) = nullptr;

  // ---- NN kernels (tensor/nn_ops.h; CPU: tensor/cpu/conv.cpp, pool.cpp, batch_norm.cpp, loss.cpp) ----
  // Every tensor argument here is contiguous, shapes and parameters are validated, and outputs
  // are allocated (not zeroed unless the field says so). Undefined tensors mean "absent".
  // out (N, O, Ho, Wo) = conv(x (N, C, H, W), w (O, C/g, kh, kw)) + bias (O); p's geometry filled in.
  void (*conv2d_forward)(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias,
                         const Conv2dParams& p) = nullptr;
  // out = act(conv(x, w) * scale (O) + shift (O) + residual (out's shape)), act = ReLU or identity; scale,
  // shift and residual each undefined when absent (conv2d_forward is this with the bias as shift). Optional:
  // ops::conv2d_forward_affine composes it from other kernels where a device leaves it null.
  void (*conv2d_forward_affine)(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& scale,
                                const Tensor& shift, const Tensor& residual, bool relu,
                                const Conv2dParams& p) = nullptr;
  void (*conv2d_backward_input)(const Tensor& grad_x, const Tensor& grad_out, const Tensor& w,
                                const Conv2dParams& p) = nullptr;
  void (*conv2d_backward_weight)(const Tensor& grad_w, const Tensor& grad_out, const Tensor& x,
                                 const Conv2dParams& p) = nullptr;
  void (*conv2d_backward_bias)(const Tensor& grad_b, const Tensor& grad_out) = nullptr;
  // x viewed as (N, C, S). training: writes the batch mean/invstd and updates running stats (if
  // defined) in place; eval: mean/invstd from the running stats. weight/bias may be undefined.
  void (*batch_norm_forward)(const Tensor& out, const Tensor& mean, const Tensor& invstd, const Tensor& x,
                             const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                             const Tensor& running_var, bool training, double momentum, double eps) = nullptr;
  // grad_x / grad_w / grad_b: each undefined when not needed.
  void (*batch_norm_backward)(const Tensor& grad_x, const Tensor& grad_w, const Tensor& grad_b,
                              const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& mean,
                              const Tensor& invstd, bool training) = nullptr;
  // p.stride already resolved (never 0) and p's geometry filled in. indices int64 into each input
  // H*W plane; undefined on the CPU when no backward needs them (values only). The backward of max
  // pooling and adaptive pooling read only p's geometry.
  void (*max_pool2d_forward)(const Tensor& out, const Tensor& indices, const Tensor& x,
                             const Pool2dParams& p) = nullptr;
  void (*max_pool2d_backward)(const Tensor& grad_x, const Tensor& grad_out, const Tensor& indices,
                              const Pool2dParams& p) = nullptr;
  void (*avg_pool2d_forward)(const Tensor& out, const Tensor& x, const Pool2dParams& p) = nullptr;
  void (*avg_pool2d_backward)(const Tensor& grad_x, const Tensor& grad_out, const Pool2dParams& p) = nullptr;
  void (*adaptive_avg_pool2d_forward)(const Tensor& out, const Tensor& x, const Pool2dParams& p) = nullptr;
  void (*adaptive_avg_pool2d_backward)(const Tensor& grad_x, const Tensor& grad_out, const Pool2dParams& p) = nullptr;
  // losses (N) from logits (N, C), target int64 (N) already range-checked, weight (C) or undefined.
  void (*cross_entropy_forward)(const Tensor& losses, const Tensor& logits, const Tensor& target,
                                const Tensor& weight, double label_smoothing) = nullptr;
  void (*cross_entropy_backward)(const Tensor& grad_logits, const Tensor& grad_losses, const Tensor& logits,
                                 const Tensor& target, const Tensor& weight, double label_smoothing) = nullptr;

  // ---- fused kernels (optional: a device that leaves one null gets the composition of the kernels
  // above, so only the CPU row needs them) ----
  // grad_in = grad_out where y > 0, else 0: ReLU's backward from its output. Same shape, any strides.
  void (*relu_backward)(const Tensor& grad_in, const Tensor& grad_out, const Tensor& y) = nullptr;
  // batch_norm_forward, plus `residual` (x's shape, or undefined), then ReLU, in the same pass:
  // out = max(bn(x) + residual, 0). Otherwise the same contract.
  void (*batch_norm_relu_forward)(const Tensor& out, const Tensor& mean, const Tensor& invstd, const Tensor& x,
                                  const Tensor& residual, const Tensor& weight, const Tensor& bias,
                                  const Tensor& running_mean, const Tensor& running_var, bool training,
                                  double momentum, double eps) = nullptr;
};

KernelTable& kernels(DeviceType type);
inline KernelTable& kernels(Device d) { return kernels(d.type); }

// The kernel registered for `d`, or a dl::Error naming the op and the device when there is none.
template <typename Fn>
Fn need_kernel(Fn fn, const char* name, Device d) {
  if (!fn) fail("{}: no kernel for device {} in this build", name, d.str());
  return fn;
}
// KERNEL(device, field): the table's `field` for the device, checked (used by tensor/*ops.cpp).
#define KERNEL(dev, field) ::dl::need_kernel(::dl::kernels(dev).field, #field, dev)

}  // namespace dl
