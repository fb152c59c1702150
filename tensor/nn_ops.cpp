// Raw NN ops: argument checks with messages a user can act on, result shapes, allocation, and
// the device's kernel from the dispatch table. Kernels get contiguous tensors.
#include "tensor/nn_ops.h"

#include <algorithm>
#include <cmath>

#include "tensor/dispatch.h"
#include "tensor/ops.h"

namespace dl::ops {
namespace {

std::string pair_str(const std::array<int64_t, 2>& a) { return fmt::format("[{}, {}]", a[0], a[1]); }

// The geometry fields of the parameter structs (tensor/op_defs.h), from the shapes the kernel sees.
Conv2dParams with_geometry(Conv2dParams p, const Shape& x, const Shape& w, const Shape& out) {
  p.N = x[0], p.C = x[1], p.H = x[2], p.W = x[3];
  p.O = w[0], p.kh = w[2], p.kw = w[3];
  p.Ho = out[2], p.Wo = out[3];
  return p;
}
Pool2dParams with_geometry(Pool2dParams p, const Shape& in, const Shape& out) {
  p.planes = in[0] * in[1], p.H = in[2], p.W = in[3];
  p.Ho = out[2], p.Wo = out[3];
  return p;
}

void check_floating(const Tensor& t, const char* op, const char* what) {
  check_computable(t.dtype(), op);
  if (!is_floating(t.dtype())) fail("{}: {} must be float32 or float64, got {}", op, what, dtype_name(t.dtype()));
}

// `t` (if defined) must share x's dtype and device.
void check_like(const Tensor& t, const Tensor& x, const char* op, const char* what) {
  if (!t.defined()) return;
  if (t.dtype() != x.dtype())
    fail("{}: {} is {} but the input is {}", op, what, dtype_name(t.dtype()), dtype_name(x.dtype()));
  if (t.device() != x.device())
    fail("{}: {} is on {} but the input is on {}", op, what, t.device().str(), x.device().str());
}

// A per-channel vector (C) or undefined.
void check_channel_vector(const Tensor& t, int64_t C, const Tensor& x, const char* op, const char* what) {
  if (!t.defined()) return;
  check_like(t, x, op, what);
  if (t.dim() != 1 || t.numel() != C)
    fail("{}: {} has shape {} but the input has {} channels (input shape {}); expected shape [{}]", op, what,
         shape_str(t.sizes()), C, shape_str(x.sizes()), C);
}

Tensor contiguous_or_undefined(const Tensor& t) { return t.defined() ? contiguous(t) : t; }

}  // namespace

// ---- conv2d ------------------------------------------------------------------------------------

namespace {
void check_conv_params(const Conv2dParams& p) {
  if (p.stride[0] < 1 || p.stride[1] < 1) fail("conv2d: stride must be positive, got {}", pair_str(p.stride));
  if (p.dilation[0] < 1 || p.dilation[1] < 1) fail("conv2d: dilation must be positive, got {}", pair_str(p.dilation));
  if (p.padding[0] < 0 || p.padding[1] < 0) fail("conv2d: padding must be non-negative, got {}", pair_str(p.padding));
  if (p.groups < 1) fail("conv2d: groups must be positive, got {}", p.groups);
}

void check_conv_shapes(const Shape& x, const Shape& w, const Conv2dParams& p) {
  check_conv_params(p);
  if (x.size() != 4) fail("conv2d: expected a 4-D input (N, C, H, W), got shape {}", shape_str(x));
  if (w.size() != 4) fail("conv2d: expected a 4-D weight (O, C/groups, kh, kw), got shape {}", shape_str(w));
  if (w[0] % p.groups != 0)
    fail("conv2d: the weight's {} output channels (weight shape {}) are not divisible by groups={}", w[0],
         shape_str(w), p.groups);
  if (x[1] != w[1] * p.groups) {
    if (p.groups == 1)
      fail("conv2d: input has {} channels but weight expects {} (weight shape {})", x[1], w[1], shape_str(w));
    fail("conv2d: input has {} channels but weight expects {} (weight shape {}, groups={})", x[1], w[1] * p.groups,
         shape_str(w), p.groups);
  }
  if (w[0] == 0 || w[2] == 0 || w[3] == 0) fail("conv2d: weight shape {} has an empty dimension", shape_str(w));
}
}  // namespace

std::array<int64_t, 2> conv2d_output_size(const Shape& x, const Shape& w, const Conv2dParams& p) {
  check_conv_shapes(x, w, p);
  std::array<int64_t, 2> out{};
  std::array<int64_t, 2> eff{}, padded{};
  for (int d = 0; d < 2; ++d) {
    eff[d] = p.dilation[d] * (w[2 + d] - 1) + 1;
    padded[d] = x[2 + d] + 2 * p.padding[d];
  }
  if (eff[0] > padded[0] || eff[1] > padded[1])
    fail("conv2d: kernel size {}x{} (with dilation {}x{}) is larger than the padded input {}x{} (input shape {}, "
         "padding {})",
         w[2], w[3], eff[0], eff[1], padded[0], padded[1], shape_str(x), pair_str(p.padding));
  for (int d = 0; d < 2; ++d) out[d] = (padded[d] - eff[d]) / p.stride[d] + 1;
  return out;
}

Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  check_floating(x, "conv2d", "input");
  check_like(weight, x, "conv2d", "weight");
  check_like(bias, x, "conv2d", "bias");
  auto [Ho, Wo] = conv2d_output_size(x.sizes(), weight.sizes(), p);
  const int64_t O = weight.sizes()[0];
  if (bias.defined() && (bias.dim() != 1 || bias.numel() != O))
    fail("conv2d: bias has shape {} but the weight has {} output channels (weight shape {}); expected shape [{}]",
         shape_str(bias.sizes()), O, shape_str(weight.sizes()), O);
  Tensor out = empty({x.sizes()[0], O, Ho, Wo}, {x.dtype(), x.device()});
  if (out.numel() == 0) return out;
  KERNEL(x.device(), conv2d_forward)(out, contiguous(x), contiguous(weight), contiguous_or_undefined(bias),
                                     with_geometry(p, x.sizes(), weight.sizes(), out.sizes()));
  return out;
}

Tensor conv2d_forward_affine(const Tensor& x, const Tensor& weight, const Tensor& scale, const Tensor& shift,
                             const Tensor& residual, bool relu, const Conv2dParams& p) {
  check_floating(x, "conv2d", "input");
  check_like(weight, x, "conv2d", "weight");
  check_like(scale, x, "conv2d", "scale");
  check_like(shift, x, "conv2d", "shift");
  check_like(residual, x, "conv2d", "residual");
  auto [Ho, Wo] = conv2d_output_size(x.sizes(), weight.sizes(), p);
  const int64_t O = weight.sizes()[0];
  for (const Tensor* t : {&scale, &shift})
    if (t->defined() && (t->dim() != 1 || t->numel() != O))
      fail("conv2d: {} has shape {} but the weight has {} output channels; expected shape [{}]",
           t == &scale ? "the scale" : "the shift", shape_str(t->sizes()), O, O);
  const Shape out_shape{x.sizes()[0], O, Ho, Wo};
  if (residual.defined() && residual.sizes() != out_shape)
    fail("conv2d: the residual has shape {} but the output has shape {}; expected the same shape",
         shape_str(residual.sizes()), shape_str(out_shape));
  auto fused = kernels(x.device()).conv2d_forward_affine;
  if (!fused) {
    Tensor out = conv2d_forward(x, weight, Tensor(), p);
    if (out.numel() == 0) return out;
    const Shape per_channel{1, O, 1, 1};
    auto per_channel_of = [&](const Tensor& t) { return expand(view(contiguous(t), per_channel), out.sizes()); };
    if (scale.defined()) KERNEL(x.device(), binary)(BinaryOp::Mul, out, out, per_channel_of(scale));
    if (shift.defined()) KERNEL(x.device(), binary)(BinaryOp::Add, out, out, per_channel_of(shift));
    if (residual.defined()) KERNEL(x.device(), binary)(BinaryOp::Add, out, out, residual);
    if (relu) KERNEL(x.device(), unary)(UnaryOp::Relu, out, out, {});
    return out;
  }
  Tensor out = empty(out_shape, {x.dtype(), x.device()});
  if (out.numel() == 0) return out;
  fused(out, contiguous(x), contiguous(weight), contiguous_or_undefined(scale), contiguous_or_undefined(shift),
        contiguous_or_undefined(residual), relu, with_geometry(p, x.sizes(), weight.sizes(), out.sizes()));
  return out;
}

Tensor conv2d_backward_input(const Tensor& grad_out, const Tensor& weight, const Shape& input_shape,
                             const Conv2dParams& p) {
  auto [Ho, Wo] = conv2d_output_size(input_shape, weight.sizes(), p);
  Shape expect{input_shape[0], weight.sizes()[0], Ho, Wo};
  if (grad_out.sizes() != expect)
    fail("conv2d backward: gradient of shape {} for an output of shape {}", shape_str(grad_out.sizes()),
         shape_str(expect));
  check_like(weight, grad_out, "conv2d backward", "weight");
  Tensor gx = empty(input_shape, {grad_out.dtype(), grad_out.device()});
  if (gx.numel() == 0) return gx;
  if (grad_out.numel() == 0) return zeros(input_shape, {grad_out.dtype(), grad_out.device()});
  KERNEL(grad_out.device(), conv2d_backward_input)(gx, contiguous(grad_out), contiguous(weight),
                                                   with_geometry(p, input_shape, weight.sizes(), expect));
  return gx;
}

Tensor conv2d_backward_weight(const Tensor& grad_out, const Tensor& x, const Shape& weight_shape,
                              const Conv2dParams& p) {
  auto [Ho, Wo] = conv2d_output_size(x.sizes(), weight_shape, p);
  Shape expect{x.sizes()[0], weight_shape[0], Ho, Wo};
  if (grad_out.sizes() != expect)
    fail("conv2d backward: gradient of shape {} for an output of shape {}", shape_str(grad_out.sizes()),
         shape_str(expect));
  check_like(x, grad_out, "conv2d backward", "input");
  if (grad_out.numel() == 0) return zeros(weight_shape, {grad_out.dtype(), grad_out.device()});
  Tensor gw = empty(weight_shape, {grad_out.dtype(), grad_out.device()});
  KERNEL(grad_out.device(), conv2d_backward_weight)(gw, contiguous(grad_out), contiguous(x),
                                                    with_geometry(p, x.sizes(), weight_shape, expect));
  return gw;
}

Tensor conv2d_backward_bias(const Tensor& grad_out) {
  if (grad_out.dim() != 4) fail("conv2d backward: expected a 4-D gradient, got shape {}", shape_str(grad_out.sizes()));
  Tensor gb = empty({grad_out.sizes()[1]}, {grad_out.dtype(), grad_out.device()});
  if (grad_out.numel() == 0) return zeros(gb.sizes(), {gb.dtype(), gb.device()});
  KERNEL(grad_out.device(), conv2d_backward_bias)(gb, contiguous(grad_out));
  return gb;
}

// ---- batch norm --------------------------------------------------------------------------------

namespace {
BatchNormForward batch_norm_forward_impl(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                         const Tensor& running_mean, const Tensor& running_var, bool training,
                                         double momentum, double eps, bool relu, const Tensor& residual) {
  const char* op = "batch_norm";
  check_floating(x, op, "input");
  if (x.dim() < 2) fail("batch_norm: expected an input of shape (N, C) or (N, C, ...), got shape {}", shape_str(x.sizes()));
  const int64_t C = x.sizes()[1];
  check_channel_vector(weight, C, x, op, "weight");
  check_channel_vector(bias, C, x, op, "bias");
  check_channel_vector(running_mean, C, x, op, "running_mean");
  check_channel_vector(running_var, C, x, op, "running_var");
  if (running_mean.defined() != running_var.defined())
    fail("batch_norm: running_mean and running_var must be given together (got only {})",
         running_mean.defined() ? "running_mean" : "running_var");
  if (!training && !running_mean.defined())
    fail("batch_norm: eval mode (training=false) normalises with running_mean and running_var, which were not given");
  if (!(eps >= 0)) fail("batch_norm: eps must be non-negative, got {}", eps);
  if (residual.defined()) {
    check_like(residual, x, op, "residual");
    if (residual.sizes() != x.sizes())
      fail("batch_norm_relu: the residual has shape {} but the input has shape {}; expected the same shape",
           shape_str(residual.sizes()), shape_str(x.sizes()));
  }
  const int64_t per_channel = C > 0 ? x.numel() / C : 0;
  if (training && per_channel == 1)
    fail("batch_norm: expected more than 1 value per channel when training, got input shape {}", shape_str(x.sizes()));

  BatchNormForward r;
  r.out = empty(x.sizes(), {x.dtype(), x.device()});
  r.mean = empty({C}, {x.dtype(), x.device()});
  r.invstd = empty({C}, {x.dtype(), x.device()});
  if (x.numel() == 0) {  // as PyTorch: nothing to normalise, running statistics untouched
    fill_(r.mean, 0.0);
    fill_(r.invstd, 0.0);
    return r;
  }
  // the kernel updates running statistics in place, so it needs them contiguous
  Tensor rm = running_mean, rv = running_var;
  if (training && rm.defined()) {
    if (!rm.is_contiguous()) rm = contiguous(rm);
    if (!rv.is_contiguous()) rv = contiguous(rv);
  }
  auto fused = relu ? kernels(x.device()).batch_norm_relu_forward : nullptr;
  if (fused) {
    fused(r.out, r.mean, r.invstd, contiguous(x), contiguous_or_undefined(residual), contiguous_or_undefined(weight),
          contiguous_or_undefined(bias), contiguous_or_undefined(rm), contiguous_or_undefined(rv), training, momentum,
          eps);
  } else {
    KERNEL(x.device(), batch_norm_forward)(r.out, r.mean, r.invstd, contiguous(x), contiguous_or_undefined(weight),
                                           contiguous_or_undefined(bias), contiguous_or_undefined(rm),
                                           contiguous_or_undefined(rv), training, momentum, eps);
    // the composition, in place
    if (residual.defined()) KERNEL(x.device(), binary)(BinaryOp::Add, r.out, r.out, residual);
    if (relu) KERNEL(x.device(), unary)(UnaryOp::Relu, r.out, r.out, {});
  }
  if (training && rm.defined()) {
    if (!rm.is_same(running_mean)) copy_(running_mean, rm);
    if (!rv.is_same(running_var)) copy_(running_var, rv);
  }
  return r;
}
}  // namespace

BatchNormForward batch_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                    const Tensor& running_mean, const Tensor& running_var, bool training,
                                    double momentum, double eps) {
  return batch_norm_forward_impl(x, weight, bias, running_mean, running_var, training, momentum, eps, false, Tensor());
}

BatchNormForward batch_norm_relu_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                         const Tensor& running_mean, const Tensor& running_var, bool training,
                                         double momentum, double eps, const Tensor& residual) {
  return batch_norm_forward_impl(x, weight, bias, running_mean, running_var, training, momentum, eps, true, residual);
}

BatchNormGrads batch_norm_backward(const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                   const Tensor& invstd, bool training, std::array<bool, 3> needs) {
  if (grad_out.sizes() != x.sizes())
    fail("batch_norm backward: gradient of shape {} for an input of shape {}", shape_str(grad_out.sizes()),
         shape_str(x.sizes()));
  const int64_t C = x.sizes()[1];
  BatchNormGrads g;
  TensorOptions opt{x.dtype(), x.device()};
  if (needs[0]) g.input = empty(x.sizes(), opt);
  if (needs[1]) g.weight = empty({C}, opt);
  if (needs[2]) g.bias = empty({C}, opt);
  if (!needs[0] && !needs[1] && !needs[2]) return g;
  if (x.numel() == 0) {
    for (Tensor* t : {&g.input, &g.weight, &g.bias})
      if (t->defined()) fill_(*t, 0.0);
    return g;
  }
  KERNEL(x.device(), batch_norm_backward)(g.input, g.weight, g.bias, contiguous(grad_out), contiguous(x),
                                          contiguous_or_undefined(weight), contiguous(mean), contiguous(invstd),
                                          training);
  return g;
}

// ---- relu --------------------------------------------------------------------------------------

Tensor relu_backward(const Tensor& grad, const Tensor& y) {
  if (grad.sizes() != y.sizes())
    fail("relu backward: gradient of shape {} for an output of shape {}", shape_str(grad.sizes()), shape_str(y.sizes()));
  check_like(grad, y, "relu backward", "gradient");
  Tensor out = empty(y.sizes(), {y.dtype(), y.device()});
  if (auto k = kernels(y.device()).relu_backward) {
    if (out.numel() > 0) k(out, grad, y);
    return out;
  }
  return ops::where(binary_scalar(BinaryOp::Gt, y, 0.0), grad, zeros({}, {grad.dtype(), grad.device()}));
}

// ---- pooling -----------------------------------------------------------------------------------

int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, bool ceil_mode) {
  const int64_t num = in + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0);
  int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;  // floor division
  // the last window must start inside the input or the left padding
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

namespace {
// Resolves stride 0 to the kernel and checks everything PyTorch's pool2d_shape_check does.
std::array<int64_t, 2> check_pool(const char* op, const Tensor& x, Pool2dParams& p) {
  check_floating(x, op, "input");
  if (x.dim() != 4) fail("{}: expected a 4-D input (N, C, H, W), got shape {}", op, shape_str(x.sizes()));
  if (p.kernel[0] < 1 || p.kernel[1] < 1) fail("{}: kernel size must be positive, got {}", op, pair_str(p.kernel));
  for (int d = 0; d < 2; ++d)
    if (p.stride[d] == 0) p.stride[d] = p.kernel[d];
  if (p.stride[0] < 1 || p.stride[1] < 1) fail("{}: stride must be positive, got {}", op, pair_str(p.stride));
  if (p.padding[0] < 0 || p.padding[1] < 0) fail("{}: padding must be non-negative, got {}", op, pair_str(p.padding));
  if (p.padding[0] * 2 > p.kernel[0] || p.padding[1] * 2 > p.kernel[1])
    fail("{}: padding {} must be at most half of the kernel size {}", op, pair_str(p.padding), pair_str(p.kernel));
  const auto& s = x.sizes();
  if (s[1] == 0 || s[2] == 0 || s[3] == 0)
    fail("{}: expected non-empty channel and spatial dims, got input shape {}", op, shape_str(s));
  std::array<int64_t, 2> out{};
  for (int d = 0; d < 2; ++d) out[d] = pool_output_size(s[2 + d], p.kernel[d], p.stride[d], p.padding[d], p.ceil_mode);
  if (out[0] < 1 || out[1] < 1)
    fail("{}: kernel {} is larger than the padded input {}x{} (input shape {}, padding {}); the output would be {}x{}",
         op, pair_str(p.kernel), s[2] + 2 * p.padding[0], s[3] + 2 * p.padding[1], shape_str(s), pair_str(p.padding),
         out[0], out[1]);
  return out;
}

void check_pool_grad(const char* op, const Tensor& grad_out, const Shape& input_shape) {
  if (input_shape.size() != 4 || grad_out.dim() != 4 || grad_out.sizes()[0] != input_shape[0] ||
      grad_out.sizes()[1] != input_shape[1])
    fail("{} backward: gradient of shape {} does not match the input shape {}", op, shape_str(grad_out.sizes()),
         shape_str(input_shape));
}
}  // namespace

std::pair<Tensor, Tensor> max_pool2d_forward(const Tensor& x, Pool2dParams p, bool with_indices) {
  auto [Ho, Wo] = check_pool("max_pool2d", x, p);
  Shape shape{x.sizes()[0], x.sizes()[1], Ho, Wo};
  Tensor out = empty(shape, {x.dtype(), x.device()});
  Tensor idx = with_indices || !x.is_cpu() ? empty(shape, {DType::Int64, x.device()}) : Tensor();
  if (out.numel() > 0) KERNEL(x.device(), max_pool2d_forward)(out, idx, contiguous(x), with_geometry(p, x.sizes(), shape));
  return {out, idx};
}

Tensor max_pool2d_backward(const Tensor& grad_out, const Tensor& indices, const Shape& input_shape) {
  check_pool_grad("max_pool2d", grad_out, input_shape);
  if (indices.sizes() != grad_out.sizes() || indices.dtype() != DType::Int64)
    fail("max_pool2d backward: indices ({} {}) must be int64 of the gradient's shape {}", dtype_name(indices.dtype()),
         shape_str(indices.sizes()), shape_str(grad_out.sizes()));
  Tensor gx = empty(input_shape, {grad_out.dtype(), grad_out.device()});
  if (gx.numel() == 0) return gx;
  KERNEL(grad_out.device(), max_pool2d_backward)(gx, contiguous(grad_out), contiguous(indices),
                                                 with_geometry(Pool2dParams{}, input_shape, grad_out.sizes()));
  return gx;
}

Tensor avg_pool2d_forward(const Tensor& x, Pool2dParams p) {
  auto [Ho, Wo] = check_pool("avg_pool2d", x, p);
  Tensor out = empty({x.sizes()[0], x.sizes()[1], Ho, Wo}, {x.dtype(), x.device()});
  if (out.numel() > 0) KERNEL(x.device(), avg_pool2d_forward)(out, contiguous(x), with_geometry(p, x.sizes(), out.sizes()));
  return out;
}

Tensor avg_pool2d_backward(const Tensor& grad_out, const Shape& input_shape, Pool2dParams p) {
  check_pool_grad("avg_pool2d", grad_out, input_shape);
  for (int d = 0; d < 2; ++d)
    if (p.stride[d] == 0) p.stride[d] = p.kernel[d];
  Tensor gx = empty(input_shape, {grad_out.dtype(), grad_out.device()});
  if (gx.numel() == 0) return gx;
  KERNEL(grad_out.device(), avg_pool2d_backward)(gx, contiguous(grad_out), with_geometry(p, input_shape, grad_out.sizes()));
  return gx;
}

Tensor adaptive_avg_pool2d_forward(const Tensor& x, std::array<int64_t, 2> output_size) {
  const char* op = "adaptive_avg_pool2d";
  check_floating(x, op, "input");
  if (x.dim() != 4) fail("{}: expected a 4-D input (N, C, H, W), got shape {}", op, shape_str(x.sizes()));
  if (output_size[0] < 0 || output_size[1] < 0)
    fail("{}: output size must be non-negative, got {}", op, pair_str(output_size));
  const auto& s = x.sizes();
  if (s[1] == 0 || s[2] == 0 || s[3] == 0)
    fail("{}: expected non-empty channel and spatial dims, got input shape {}", op, shape_str(s));
  Tensor out = empty({s[0], s[1], output_size[0], output_size[1]}, {x.dtype(), x.device()});
  if (out.numel() > 0)
    KERNEL(x.device(), adaptive_avg_pool2d_forward)(out, contiguous(x), with_geometry(Pool2dParams{}, s, out.sizes()));
  return out;
}

Tensor adaptive_avg_pool2d_backward(const Tensor& grad_out, const Shape& input_shape) {
  check_pool_grad("adaptive_avg_pool2d", grad_out, input_shape);
  Tensor gx = empty(input_shape, {grad_out.dtype(), grad_out.device()});
  if (gx.numel() == 0) return gx;
  if (grad_out.numel() == 0) return zeros(input_shape, {grad_out.dtype(), grad_out.device()});
  KERNEL(grad_out.device(), adaptive_avg_pool2d_backward)(gx, contiguous(grad_out),
                                                          with_geometry(Pool2dParams{}, input_shape, grad_out.sizes()));
  return gx;
}

// ---- cross entropy -----------------------------------------------------------------------------

namespace {
void check_cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& weight, double ls) {
  const char* op = "cross_entropy";
  check_floating(logits, op, "logits");
  if (logits.dim() != 2) fail("cross_entropy: expected logits of shape (N, C), got shape {}", shape_str(logits.sizes()));
  const int64_t N = logits.sizes()[0], C = logits.sizes()[1];
  if (target.dtype() != DType::Int64)
    fail("cross_entropy: target must hold int64 class indices, got {}", dtype_name(target.dtype()));
  if (target.device() != logits.device())
    fail("cross_entropy: target is on {} but the logits are on {}", target.device().str(), logits.device().str());
  if (target.dim() != 1 || target.numel() != N)
    fail("cross_entropy: target has shape {} but the logits have shape {}; expected target shape [{}]",
         shape_str(target.sizes()), shape_str(logits.sizes()), N);
  if (weight.defined()) {
    check_like(weight, logits, op, "weight");
    if (weight.dim() != 1 || weight.numel() != C)
      fail("cross_entropy: weight has shape {} but there are {} classes (logits shape {}); expected shape [{}]",
           shape_str(weight.sizes()), C, shape_str(logits.sizes()), C);
  }
  if (!(ls >= 0.0 && ls <= 1.0)) fail("cross_entropy: label_smoothing must be between 0.0 and 1.0, got {}", ls);
  if (N == 0) return;
  // range of the targets: the whole vector only comes to the CPU when something is wrong
  int64_t lo = reduce(ReduceOp::Min, target, {}, false).item<int64_t>();
  int64_t hi = reduce(ReduceOp::Max, target, {}, false).item<int64_t>();
  if (lo < 0 || hi >= C) {
    auto t = to_device(contiguous(target), kCPU).to_vector<int64_t>();
    for (size_t i = 0; i < t.size(); ++i)
      if (t[i] < 0 || t[i] >= C)
        fail("cross_entropy: target {} (sample {}) is out of range for {} classes; expected values in [0, {})", t[i], i,
             C, C);
  }
}
}  // namespace

Tensor cross_entropy_losses(const Tensor& logits, const Tensor& target, const Tensor& weight, double label_smoothing) {
  check_cross_entropy(logits, target, weight, label_smoothing);
  Tensor losses = empty({logits.sizes()[0]}, {logits.dtype(), logits.device()});
  if (losses.numel() == 0) return losses;
  KERNEL(logits.device(), cross_entropy_forward)(losses, contiguous(logits), contiguous(target),
                                                 contiguous_or_undefined(weight), label_smoothing);
  return losses;
}

Tensor cross_entropy_weight_sum(const Tensor& target, const Tensor& weight, int64_t n, DType dtype) {
  if (!weight.defined()) {
    Tensor s = empty({}, {dtype, target.device()});
    fill_(s, static_cast<double>(n));
    return s;
  }
  return reduce(ReduceOp::Sum, index_select(weight, 0, target), {}, false);
}

Tensor cross_entropy_backward(const Tensor& grad_losses, const Tensor& logits, const Tensor& target,
                              const Tensor& weight, double label_smoothing) {
  if (grad_losses.dim() != 1 || grad_losses.numel() != logits.sizes()[0])
    fail("cross_entropy backward: gradient of shape {} for {} samples", shape_str(grad_losses.sizes()),
         logits.sizes()[0]);
  Tensor grad = empty(logits.sizes(), {logits.dtype(), logits.device()});
  if (grad.numel() == 0) return grad;
  KERNEL(logits.device(), cross_entropy_backward)(grad, contiguous(to_dtype(grad_losses, logits.dtype())),
                                                  contiguous(logits), contiguous(target),
                                                  contiguous_or_undefined(weight), label_smoothing);
  return grad;
}

// ---- dropout -----------------------------------------------------------------------------------

Tensor dropout_mask(const Shape& shape, double p, DType dtype, Device device, Generator& gen) {
  if (!(p >= 0.0 && p <= 1.0)) fail("dropout: probability has to be between 0 and 1, got {}", p);
  Tensor mask = empty(shape, {dtype, kCPU});
  DL_DISPATCH_FLOATING(dtype, "dropout", [&] {
    scalar_t* m = mask.data_ptr<scalar_t>();
    const int64_t n = mask.numel();
    if (p >= 1.0) {
      std::fill(m, m + n, scalar_t(0));
      return;
    }
    const scalar_t scale = static_cast<scalar_t>(1.0 / (1.0 - p));
    for (int64_t i = 0; i < n; ++i) m[i] = gen.uniform() < p ? scalar_t(0) : scale;
  });
  return to_device(mask, device);
}

}  // namespace dl::ops
