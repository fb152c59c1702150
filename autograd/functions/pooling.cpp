// Pooling: max (backward routes each gradient to the argmax the forward recorded), average, and
// adaptive average. An unbatched (C, H, W) input is a batch of one, as in PyTorch.
#include "autograd/functional.h"
#include "autograd/node.h"
#include "tensor/nn_ops.h"

namespace dl {

using autograd::NeedsGrad;
using autograd::record;
using autograd::save;
using G = std::vector<Tensor>;

namespace {
// What a tracer needs of a pooling op: the window (opt.stride is resolved by the forward).
autograd::TraceInfo pool_trace(const Pool2dParams& opt) {
  return autograd::trace_info([&] {
    return autograd::TraceInfo{{{"kernel", {opt.kernel[0], opt.kernel[1]}, {}},
                                {"strides", {opt.stride[0] ? opt.stride[0] : opt.kernel[0], opt.stride[1] ? opt.stride[1] : opt.kernel[1]}, {}},
                                {"padding", {opt.padding[0], opt.padding[1]}, {}},
                                {"ceil_mode", {opt.ceil_mode ? 1 : 0}, {}},
                                {"count_include_pad", {opt.count_include_pad ? 1 : 0}, {}}}};
  });
}
}  // namespace

Tensor max_pool2d(const Tensor& x, const Pool2dParams& opt) {
  if (!x.defined()) fail("max_pool2d: the input is an undefined tensor");
  if (x.dim() == 3) return max_pool2d(x.unsqueeze(0), opt).squeeze(0);
  // without a graph to record (inference), the indices only a backward reads are not written
  auto result = ops::max_pool2d_forward(x, opt, autograd::needs_graph(x));
  Tensor out = result.first, indices = result.second;  // named copies: clang 14 cannot capture bindings
  Shape in = x.sizes();
  return record("MaxPool2dBackward", out, {x}, [indices, in](const Tensor& g, const NeedsGrad&) {
    return G{ops::max_pool2d_backward(g, indices, in)};
  }, pool_trace(opt));
}

Tensor avg_pool2d(const Tensor& x, const Pool2dParams& opt) {
  if (!x.defined()) fail("avg_pool2d: the input is an undefined tensor");
  if (x.dim() == 3) return avg_pool2d(x.unsqueeze(0), opt).squeeze(0);
  Tensor out = ops::avg_pool2d_forward(x, opt);
  Shape in = x.sizes();
  return record("AvgPool2dBackward", out, {x}, [in, opt](const Tensor& g, const NeedsGrad&) {
    return G{ops::avg_pool2d_backward(g, in, opt)};
  }, pool_trace(opt));
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size) {
  if (!x.defined()) fail("adaptive_avg_pool2d: the input is an undefined tensor");
  if (x.dim() == 3) return adaptive_avg_pool2d(x.unsqueeze(0), output_size).squeeze(0);
  Tensor out = ops::adaptive_avg_pool2d_forward(x, output_size);
  Shape in = x.sizes();
  return record("AdaptiveAvgPool2dBackward", out, {x}, [in](const Tensor& g, const NeedsGrad&) {
    return G{ops::adaptive_avg_pool2d_backward(g, in)};
  }, autograd::trace_info([&] { return autograd::TraceInfo{{{"output_size", {output_size[0], output_size[1]}, {}}}}; }));
}

}  // namespace dl
