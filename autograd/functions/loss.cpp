// cross_entropy: log_softmax fused with the NLL (class weights, label smoothing), reduced by
// mean (divided by the sum of the targets' weights), sum, or not at all.
#include "autograd/functional.h"
#include "autograd/node.h"
#include "tensor/nn_ops.h"
#include "tensor/ops.h"

namespace dl {

using autograd::NeedsGrad;
using autograd::record;
using autograd::save;
using G = std::vector<Tensor>;

Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyOptions& opt) {
  if (!logits.defined() || !target.defined()) fail("cross_entropy: logits and target must be defined tensors");
  // a single unbatched sample: logits (C), target 0-d
  if (logits.dim() == 1 && target.dim() == 0) {
    Tensor loss = cross_entropy(logits.unsqueeze(0), target.unsqueeze(0), opt);
    return opt.reduction == Reduction::None ? loss.squeeze(0) : loss;
  }
  if (opt.weight.defined() && opt.weight.requires_grad() && autograd::grad_mode_enabled())
    fail("cross_entropy: class weights do not take a gradient; pass weight.detach()");
  const double ls = opt.label_smoothing;
  const Tensor& weight = opt.weight;
  Tensor losses = ops::cross_entropy_losses(logits, target, weight, ls);  // (N)
  const int64_t N = losses.numel();
  Tensor out;
  Tensor denom;  // mean: sum of the targets' weights (N without weights)
  switch (opt.reduction) {
    case Reduction::None: out = losses; break;
    case Reduction::Sum: out = ops::reduce(ops::ReduceOp::Sum, losses, {}, false); break;
    case Reduction::Mean:
      denom = ops::cross_entropy_weight_sum(target, weight, N, logits.dtype());
      out = ops::binary(ops::BinaryOp::Div, ops::reduce(ops::ReduceOp::Sum, losses, {}, false), denom);
      break;
  }
  Tensor z = save(logits), t = save(target), w = save(weight);
  Reduction red = opt.reduction;
  return record("CrossEntropyBackward", out, {logits}, [z, t, w, ls, red, N, denom](const Tensor& g, const NeedsGrad&) {
    // the upstream gradient of each sample's loss
    Tensor gl = g;
    if (red != Reduction::None) gl = (red == Reduction::Mean ? g / denom : g).view({1}).expand({N}).contiguous();
    return G{ops::cross_entropy_backward(gl, z, t, w, ls)};  // the fused kernel: softmax minus the target
  });
}

}  // namespace dl
