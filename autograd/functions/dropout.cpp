// dropout: out = x * mask, mask 0 with probability p and 1 / (1 - p) elsewhere; backward g * mask.
#include "autograd/functional.h"
#include "autograd/node.h"
#include "tensor/nn_ops.h"
#include "tensor/ops.h"

namespace dl {

using autograd::NeedsGrad;
using autograd::record;
using G = std::vector<Tensor>;

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  if (!x.defined()) fail("dropout: the input is an undefined tensor");
  if (!(p >= 0.0 && p <= 1.0)) fail("dropout: probability has to be between 0 and 1, got {}", p);
  if (!training || p == 0.0) return x;
  check_computable(x.dtype(), "dropout");
  if (!is_floating(x.dtype())) fail("dropout: input must be float32 or float64, got {}", dtype_name(x.dtype()));
  Tensor mask = ops::dropout_mask(x.sizes(), p, x.dtype(), x.device(), gen ? *gen : default_generator());
  return record("DropoutBackward", ops::binary(ops::BinaryOp::Mul, x, mask), {x},
                [mask](const Tensor& g, const NeedsGrad&) { return G{g * mask}; });
}

}  // namespace dl
