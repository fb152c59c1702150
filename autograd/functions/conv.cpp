// conv2d: forward (im2col + GEMM kernels behind ops::conv2d_forward) and its backward side by side.
#include "autograd/functional.h"
#include "autograd/node.h"
#include "tensor/nn_ops.h"

namespace dl {

using autograd::NeedsGrad;
using autograd::record;
using autograd::save;

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  if (!x.defined() || !weight.defined()) fail("conv2d: input and weight must be defined tensors");
  // an unbatched (C, H, W) input is a batch of one, as in PyTorch
  if (x.dim() == 3) return conv2d(x.unsqueeze(0), weight, bias, p).squeeze(0);
  Conv2dParams q = p;
  q.gemm_dtype = gemm_dtype_for(x.dtype(), x.device());  // bfloat16 products under autocast
  Tensor out = ops::conv2d_forward(x, weight, bias, q);  // (N, O, Ho, Wo)
  // each gradient needs only the other operand: save x for dW, the weight for dx
  Tensor xs = weight.requires_grad() ? save(x) : Tensor();
  Tensor ws = x.requires_grad() ? save(weight) : Tensor();
  Shape x_shape = x.sizes(), w_shape = weight.sizes();
  return record("Conv2dBackward", out, {x, weight, bias},
                [xs, ws, x_shape, w_shape, p = q](const Tensor& g, const NeedsGrad& needs) {
                  std::vector<Tensor> grads(3);
                  if (needs[0]) grads[0] = ops::conv2d_backward_input(g, ws, x_shape, p);
                  if (needs[1]) grads[1] = ops::conv2d_backward_weight(g, xs, w_shape, p);
                  if (needs[2]) grads[2] = ops::conv2d_backward_bias(g);
                  return grads;
                },
                autograd::trace_info([&] {
                  return autograd::TraceInfo{{{"strides", {p.stride[0], p.stride[1]}, {}},
                                              {"padding", {p.padding[0], p.padding[1]}, {}},
                                              {"dilations", {p.dilation[0], p.dilation[1]}, {}},
                                              {"group", {p.groups}, {}}}};
                }));
}

}  // namespace dl
