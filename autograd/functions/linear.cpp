// linear: y = x @ W^T + b over the last dim of x, with one GEMM each way in backward.
#include "autograd/functional.h"
#include "autograd/node.h"
#include "tensor/ops.h"

namespace dl {

using autograd::NeedsGrad;
using autograd::record;
using autograd::save;

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (!x.defined() || !weight.defined()) fail("linear: input and weight must be defined tensors");
  if (weight.dim() != 2) fail("linear: expected a 2-D weight (out_features, in_features), got shape {}", shape_str(weight.sizes()));
  const int64_t out_f = weight.sizes()[0], in_f = weight.sizes()[1];
  if (x.dim() < 1) fail("linear: expected an input with at least 1 dim (..., {}), got a 0-d tensor", in_f);
  if (x.sizes().back() != in_f)
    fail("linear: input has {} features (shape {}) but weight expects {} (weight shape {})", x.sizes().back(),
         shape_str(x.sizes()), in_f, shape_str(weight.sizes()));
  check_computable(x.dtype(), "linear");
  if (!is_floating(x.dtype())) fail("linear: input must be float32 or float64, got {}", dtype_name(x.dtype()));
  if (weight.dtype() != x.dtype())
    fail("linear: weight is {} but the input is {}", dtype_name(weight.dtype()), dtype_name(x.dtype()));
  if (bias.defined()) {
    if (bias.dim() != 1 || bias.numel() != out_f)
      fail("linear: bias has shape {} but the weight has {} output features (weight shape {}); expected shape [{}]",
           shape_str(bias.sizes()), out_f, shape_str(weight.sizes()), out_f);
    if (bias.dtype() != x.dtype())
      fail("linear: bias is {} but the input is {}", dtype_name(bias.dtype()), dtype_name(x.dtype()));
  }
  // (..., in) -> (M, in): a view when the strides allow
  Shape x_shape = x.sizes();
  Shape out_shape = x_shape;
  out_shape.back() = out_f;
  const int64_t M = in_f > 0 ? x.numel() / in_f : shape_numel(Shape(x_shape.begin(), x_shape.end() - 1));
  Tensor x2 = ops::can_view(x, {M, in_f}) ? ops::view(x, {M, in_f}) : ops::view(ops::contiguous(x), {M, in_f});
  Tensor out = ops::matmul(x2, ops::transpose(weight, 0, 1), gemm_dtype_for(x.dtype(), x.device()));  // (M, out)
  if (bias.defined()) ops::add_(out, bias, 1.0);
  out = ops::view(out, out_shape);

  Tensor xs = weight.requires_grad() ? save(x2) : Tensor();
  Tensor ws = x.requires_grad() ? save(weight) : Tensor();
  return record("LinearBackward", out, {x, weight, bias},
                [xs, ws, x_shape, M, out_f](const Tensor& g, const NeedsGrad& needs) {
                  std::vector<Tensor> grads(3);
                  Tensor g2 = g.contiguous().view({M, out_f});
                  if (needs[0]) grads[0] = g2.matmul(ws).view(x_shape);  // g @ W
                  if (needs[1]) grads[1] = g2.t().matmul(xs);            // g^T @ x
                  if (needs[2]) grads[2] = g2.sum({0});                  // sum over rows
                  return grads;
                });
}

}  // namespace dl
