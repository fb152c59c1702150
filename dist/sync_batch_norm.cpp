#include "dist/sync_batch_norm.h"

#include "autograd/functional.h"
#include "autograd/node.h"
#include "tensor/error.h"
#include "tensor/ops.h"

namespace dl::dist {

SyncBatchNorm::SyncBatchNorm(const nn::BatchNorm2d& bn, ProcessGroup& pg)
    : Module("SyncBatchNorm"), num_features(bn.num_features), eps(bn.eps), momentum(bn.momentum), pg_(pg) {
  if (!bn.affine || !bn.track_running_stats)
    fail("SyncBatchNorm: only affine batch norm with running statistics is supported (got {})", bn.extra_repr());
  weight = register_parameter("weight", bn.weight, bn.weight.requires_grad());
  bias = register_parameter("bias", bn.bias, bn.bias.requires_grad());
  running_mean = register_buffer("running_mean", bn.running_mean);
  running_var = register_buffer("running_var", bn.running_var);
  num_batches_tracked = register_buffer("num_batches_tracked", bn.num_batches_tracked);
  train(bn.is_training());
}

std::string SyncBatchNorm::extra_repr() const {
  return fmt::format("{}, eps={}, momentum={}, affine=True, track_running_stats=True", num_features, nn::py_float(eps),
                     momentum ? nn::py_float(*momentum) : "None");
}

Tensor SyncBatchNorm::forward(const Tensor& x) {
  if (x.dim() != 4) fail("{}: expected a 4-D input (N, C, H, W), got shape {}", repr(), shape_str(x.sizes()));
  if (x.size(1) != num_features)
    fail("{}: expected {} channels (dim 1), got shape {}", repr(), num_features, shape_str(x.sizes()));
  if (!is_training()) return batch_norm(x, running_mean, running_var, weight, bias, false, 0.0, eps);

  const int64_t C = num_features;
  const Shape per_channel{1, C, 1, 1};
  Tensor xhat, invstd, y;
  double count = 0;
  {
    NoGradGuard ng;
    Tensor xd = x.detach();
    // pass 1: the global mean
    count = pg_.allreduce(static_cast<double>(x.numel() / C), ReduceOp::Sum);
    Tensor sum = xd.sum({0, 2, 3}).contiguous();
    pg_.allreduce(sum, ReduceOp::Sum);
    Tensor mean = sum / count;
    // pass 2: the global (biased) variance, from deviations as one process computes it
    Tensor xc = xd - mean.view(per_channel);
    Tensor sq = (xc * xc).sum({0, 2, 3}).contiguous();
    pg_.allreduce(sq, ReduceOp::Sum);
    Tensor var = sq / count;
    invstd = 1.0 / (var + eps).sqrt();
    xhat = xc * invstd.view(per_channel);
    y = xhat * weight.detach().view(per_channel) + bias.detach().view(per_channel);

    ops::copy_(num_batches_tracked, ops::binary_scalar(ops::BinaryOp::Add, num_batches_tracked, 1.0));
    double f = momentum ? *momentum : 1.0 / num_batches_tracked.item<double>();
    running_mean.mul_(1 - f).add_(mean, f);
    running_var.mul_(1 - f).add_(var * (count / std::max(count - 1, 1.0)), f);  // unbiased, as PyTorch keeps it
  }
  ProcessGroup* pg = &pg_;
  Tensor w = autograd::save(weight), xh = autograd::save(xhat), is = autograd::save(invstd);
  return autograd::record(
      "SyncBatchNormBackward", y, {x, weight, bias},
      [pg, w, xh, is, count, per_channel](const Tensor& dy, const autograd::NeedsGrad& needs) -> std::vector<Tensor> {
        Tensor dbias = dy.sum({0, 2, 3});
        Tensor dweight = (dy * xh).sum({0, 2, 3});
        Tensor dx;
        if (needs[0]) {
          // the input gradient needs sum(dy) and sum(dy * x_hat) over the global batch
          Tensor sums = cat({dbias, dweight}, 0).contiguous();
          pg->allreduce(sums, ReduceOp::Sum);
          const int64_t C = dbias.numel();
          Tensor sum_dy = sums.narrow(0, 0, C).view(per_channel) / count;
          Tensor sum_dy_xhat = sums.narrow(0, C, C).view(per_channel) / count;
          dx = (dy - sum_dy - xh * sum_dy_xhat) * (is * w).view(per_channel);
        }
        return {dx, needs[1] ? dweight : Tensor(), needs[2] ? dbias : Tensor()};
      });
}

int convert_sync_batchnorm(nn::Module& root, ProcessGroup& pg) {
  std::vector<std::string> names;
  for (const auto& [name, m] : root.named_modules())
    if (std::dynamic_pointer_cast<nn::BatchNorm2d>(m)) names.push_back(name);
  int converted = 0;
  for (const auto& name : names) {
    auto dot = name.rfind('.');
    std::shared_ptr<nn::Module> parent_holder;
    nn::Module* parent = &root;
    if (dot != std::string::npos) {
      parent_holder = root.get_submodule(name.substr(0, dot));
      parent = parent_holder.get();
    }
    const std::string leaf = dot == std::string::npos ? name : name.substr(dot + 1);
    std::shared_ptr<nn::BatchNorm2d> old = std::dynamic_pointer_cast<nn::BatchNorm2d>(parent->get_submodule(leaf));
    parent->replace_module(leaf, std::make_shared<SyncBatchNorm>(*old, pg));
    if (old.use_count() > 1)
      fail("convert_sync_batchnorm: '{}' is also held by its parent ({}) outside its registered children, so "
           "replacing the child would not change what its forward runs; give that module a SyncBatchNorm itself",
           name, parent->name());
    ++converted;
  }
  return converted;
}

}  // namespace dl::dist
