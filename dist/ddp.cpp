#include "dist/ddp.h"

#include <chrono>

#include "tensor/error.h"

namespace dl::dist {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Rank 0's values into `t` on every rank (a non-contiguous tensor goes through a contiguous copy).
void broadcast_into(ProcessGroup& pg, const Tensor& t) {
  NoGradGuard ng;
  if (t.is_contiguous()) {
    Tensor alias = t.detach();  // same memory: the broadcast writes the tensor itself
    pg.broadcast(alias, 0);
  } else {
    Tensor c = t.contiguous();
    pg.broadcast(c, 0);
    t.detach().copy_(c);
  }
}
}  // namespace

DistributedDataParallel::DistributedDataParallel(std::shared_ptr<nn::Module> module, ProcessGroup& pg, DdpOptions opts)
    : module_(std::move(module)), pg_(pg), opts_(opts), alive_(std::make_shared<bool>(true)) {
  if (!module_) fail("DistributedDataParallel: the module is null");
  if (!(opts_.bucket_mb > 0)) fail("DistributedDataParallel: bucket_mb must be positive, got {}", opts_.bucket_mb);
  for (const auto& p : module_->parameters())
    if (p.requires_grad()) params_.push_back(p);
  if (params_.empty()) fail("DistributedDataParallel: the module has no trainable parameters");
  const Device dev = params_[0].device();
  const DType dt = params_[0].dtype();
  for (const auto& [name, p] : module_->named_parameters())
    if (p.requires_grad() && (p.device() != dev || p.dtype() != dt))
      fail("DistributedDataParallel: parameter '{}' is {} on {}, the first one {} on {}; every trainable parameter "
           "must have one dtype and device",
           name, dtype_name(p.dtype()), p.device().str(), dtype_name(dt), dev.str());

  // every rank starts from rank 0's weights (and running statistics)
  for (const auto& p : module_->parameters()) broadcast_into(pg_, p);
  if (opts_.broadcast_buffers) broadcast_buffers(*module_, pg_);

  // buckets, in reverse parameter order: the last layers' gradients are ready first
  const double cap = opts_.bucket_mb * 1024 * 1024;
  where_.resize(params_.size());
  for (size_t k = params_.size(); k-- > 0;) {
    const double bytes = static_cast<double>(params_[k].numel() * params_[k].element_size());
    bool need_new = buckets_.empty();
    if (!need_new) {
      double used = 0;
      for (size_t q : buckets_.back().params) used += static_cast<double>(params_[q].numel() * params_[q].element_size());
      need_new = used > 0 && used + bytes > cap;
    }
    if (need_new) buckets_.emplace_back();
    Bucket& b = buckets_.back();
    where_[k] = {buckets_.size() - 1, b.params.size()};
    b.params.push_back(k);
  }
  for (auto& b : buckets_) {
    int64_t n = 0;
    for (size_t q : b.params) {
      b.offsets.push_back(n);
      n += params_[q].numel();
    }
    b.flat = zeros({n}, {dt, dev});
  }
  ready_.assign(params_.size(), false);

  // one hook per parameter, on its AccumulateGrad node
  std::weak_ptr<bool> alive = alive_;
  for (size_t k = 0; k < params_.size(); ++k) {
    accumulators_.push_back(autograd::grad_accumulator(params_[k]));
    accumulators_.back()->post_hooks.push_back([this, k, alive](const Tensor&) {
      if (auto a = alive.lock(); a && *a) on_grad_ready(k);
    });
  }
}

DistributedDataParallel::~DistributedDataParallel() { *alive_ = false; }

std::vector<std::vector<size_t>> DistributedDataParallel::bucket_layout() const {
  std::vector<std::vector<size_t>> out;
  for (const auto& b : buckets_) out.push_back(b.params);
  return out;
}

void DistributedDataParallel::on_grad_ready(size_t k) {
  if (!sync_) return;
  auto t0 = Clock::now();
  // a new backward: also when the last one threw before its end-of-backward callback could run
  if (!in_backward_ || backward_seq_ != autograd::backward_sequence()) {
    in_backward_ = true;
    backward_seq_ = autograd::backward_sequence();
    next_launch_ = 0;
    ready_.assign(params_.size(), false);
    for (auto& b : buckets_) {
      b.pending = b.params.size();
      b.work.reset();
    }
    std::weak_ptr<bool> alive = alive_;
    autograd::queue_callback([this, alive] {
      if (auto a = alive.lock(); a && *a) finish_backward();
    });
  }
  if (!ready_[k]) {
    ready_[k] = true;
    Bucket& b = buckets_[where_[k].first];
    --b.pending;
    if (opts_.overlap) {
      if (b.pending == 0) launch_ready_in_order();
      // MPI advances a non-blocking collective only inside MPI calls: poll the ones in flight
      for (size_t i = 0; i < next_launch_; ++i)
        if (buckets_[i].work) buckets_[i].work->test();
    }
  }
  stats_.hook_seconds += since(t0);
}

void DistributedDataParallel::launch_ready_in_order() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) launch(next_launch_++);
}

void DistributedDataParallel::launch(size_t i) {
  NoGradGuard ng;
  Bucket& b = buckets_[i];
  for (size_t s = 0; s < b.params.size(); ++s) {
    const Tensor& p = params_[b.params[s]];
    Tensor slice = b.flat.narrow(0, b.offsets[s], p.numel());
    Tensor g = p.grad();
    if (g.defined())
      slice.copy_(g.reshape({-1}));
    else
      slice.zero_();  // unused in this forward: contributes zeros
  }
  b.work = pg_.allreduce_async(b.flat, ReduceOp::Average);
  stats_.bytes += static_cast<double>(b.flat.numel() * b.flat.element_size());
}

void DistributedDataParallel::finish_backward() {
  auto t0 = Clock::now();
  NoGradGuard ng;
  // buckets not started yet: all of them without overlap; with it, those holding an unused parameter
  for (; next_launch_ < buckets_.size(); ++next_launch_) launch(next_launch_);
  for (auto& b : buckets_) {
    b.work->wait();
    for (size_t s = 0; s < b.params.size(); ++s) {
      Tensor p = params_[b.params[s]];
      Tensor avg = b.flat.narrow(0, b.offsets[s], p.numel()).view(p.sizes());
      Tensor g = p.grad();
      if (g.defined())
        g.copy_(avg);
      else
        p.set_grad(avg.clone());
    }
    b.work.reset();
  }
  in_backward_ = false;
  ++stats_.steps;
  stats_.wait_seconds += since(t0);
}

void broadcast_buffers(nn::Module& m, ProcessGroup& pg) {
  for (const auto& b : m.buffers()) broadcast_into(pg, b);
}

}  // namespace dl::dist
