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
    // pass 1: the global mean; the local count rides along with the sums (one all-reduce)
    const double local_count = static_cast<double>(x.numel() / C);
    Tensor sums = cat({xd.sum({0, 2, 3}), full({1}, local_count, {xd.dtype(), xd.device()})}, 0).contiguous();
    pg_.allreduce(sums, ReduceOp::Sum);
    count = sums.narrow(0, C, 1).item<double>();
    if (count <= 1)
      fail("{}: expected more than 1 value per channel over all ranks in training, got {} (input shape {} on this "
           "rank)",
           repr(), count, shape_str(x.sizes()));
    Tensor mean = sums.narrow(0, 0, C) / count;
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
  struct Swap {
    std::shared_ptr<nn::Module> parent_holder;
    nn::Module* parent;
    std::string leaf;
    std::shared_ptr<nn::BatchNorm2d> old;
  };
  std::vector<Swap> done;
  for (const auto& name : names) {
    auto dot = name.rfind('.');
    Swap s{nullptr, &root, dot == std::string::npos ? name : name.substr(dot + 1), nullptr};
    if (dot != std::string::npos) {
      s.parent_holder = root.get_submodule(name.substr(0, dot));
      s.parent = s.parent_holder.get();
    }
    s.old = std::dynamic_pointer_cast<nn::BatchNorm2d>(s.parent->get_submodule(s.leaf));
    s.parent->replace_module(s.leaf, std::make_shared<SyncBatchNorm>(*s.old, pg));
    const bool held_elsewhere = s.old.use_count() > 1;  // `s.old` should now be its only holder
    nn::Module* parent = s.parent;
    done.push_back(std::move(s));
    if (held_elsewhere) {
      // held elsewhere too (a member pointer of its parent): its forward would still run the old
      // module. Undo every swap, so that a refusal leaves the model as it was.
      for (auto it = done.rbegin(); it != done.rend(); ++it) it->parent->replace_module(it->leaf, it->old);
      fail("convert_sync_batchnorm: '{}' is also held by its parent ({}) outside its registered children, so "
           "replacing the child would not change what its forward runs; give that module a SyncBatchNorm itself "
           "(nothing was converted)",
           name, parent->name());
    }
  }
  return static_cast<int>(done.size());
}

}  // namespace dl::dist
