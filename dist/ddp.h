#pragma once
// DistributedDataParallel: data-parallel training of any nn::Module, after PyTorch's DDP.
//
//   auto& pg = dist::ProcessGroup::init();
//   dist::DistributedDataParallel ddp(model, pg);     // broadcasts rank 0's parameters and buffers
//   ... loss = loss_fn(model(x_of_this_rank), y); loss.backward(); opt.step();   // unchanged
//
// Gradients are averaged over the ranks in buckets of about `bucket_mb` MiB (PyTorch's 25 MiB
// default), filled in reverse parameter order (roughly the order backward produces them). Each
// parameter's AccumulateGrad node carries a hook (autograd/node.h post_hooks): when the last
// gradient of a bucket has been accumulated, the bucket's gradients are copied into its flat buffer
// and its all-reduce is started (MPI_Iallreduce / ncclAllReduce) while backward goes on with the
// layers below. Buckets are started strictly in index order, so every rank issues the same
// collectives in the same order. A callback queued on the engine (autograd::queue_callback) waits
// for every bucket at the end of backward and writes the averages back into each .grad, so the
// optimizer step that follows sees the averaged gradients, as with PyTorch.
//
// A parameter that got no gradient in a backward (unused in forward) is reduced as zeros when its
// bucket is flushed at the end of backward; every rank must leave the same parameters unused.
//
// no_sync (gradient accumulation): while a NoSync guard lives, backward only accumulates locally;
// the first backward after it reduces the accumulated gradients (as PyTorch's no_sync()).
#include <memory>
#include <vector>

#include "autograd/node.h"
#include "dist/process_group.h"
#include "nn/module.h"

namespace dl::dist {

struct DdpOptions {
  double bucket_mb = 25;           // bucket capacity in MiB (a parameter larger than it gets a bucket of its own)
  bool overlap = true;             // false: start every bucket only once backward has finished (for measuring)
  bool broadcast_buffers = true;   // rank 0's buffers (running statistics) at construction
};

// Time spent on gradient communication, for the benchmark (reset with reset_stats()).
struct DdpStats {
  int64_t steps = 0;           // synchronised backwards
  double hook_seconds = 0;     // inside the hooks during backward: copies into buckets, starting collectives
  double wait_seconds = 0;     // at the end of backward: waiting for collectives not yet done, copying back
  double bytes = 0;            // gradient bytes all-reduced
};

class DistributedDataParallel {
 public:
  DistributedDataParallel(std::shared_ptr<nn::Module> module, ProcessGroup& pg, DdpOptions opts = {});
  ~DistributedDataParallel();
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  Tensor forward(const Tensor& x) { return (*module_)(x); }
  Tensor operator()(const Tensor& x) { return forward(x); }
  nn::Module& module() { return *module_; }
  ProcessGroup& process_group() { return pg_; }

  // While alive, backward does not synchronise (gradients accumulate on each rank).
  class NoSync {
   public:
    explicit NoSync(DistributedDataParallel& d) : d_(d), prev_(d.sync_) { d_.sync_ = false; }
    ~NoSync() { d_.sync_ = prev_; }
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    DistributedDataParallel& d_;
    bool prev_;
  };
  NoSync no_sync() { return NoSync(*this); }

  // Parameters per bucket (indices into module().parameters()), in launch order.
  std::vector<std::vector<size_t>> bucket_layout() const;
  const DdpStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

 private:
  struct Bucket {
    std::vector<size_t> params;    // indices into params_
    std::vector<int64_t> offsets;  // each one's start in `flat` (elements)
    Tensor flat;                   // the bucket's buffer, on the parameters' device
    size_t pending = 0;            // gradients not yet ready in this backward
    std::shared_ptr<Work> work;
  };
  void on_grad_ready(size_t param);
  void launch(size_t bucket);
  void launch_ready_in_order();
  void finish_backward();

  std::shared_ptr<nn::Module> module_;
  ProcessGroup& pg_;
  DdpOptions opts_;
  std::vector<Tensor> params_;
  std::vector<std::shared_ptr<autograd::AccumulateGrad>> accumulators_;  // hold the hooks alive
  std::vector<std::pair<size_t, size_t>> where_;  // param -> (bucket, slot)
  std::vector<Bucket> buckets_;
  std::vector<bool> ready_;
  size_t next_launch_ = 0;
  bool in_backward_ = false;
  uint64_t backward_seq_ = 0;  // autograd::backward_sequence() of the backward in progress
  bool sync_ = true;
  DdpStats stats_;
  std::shared_ptr<bool> alive_;  // hooks outliving this object (a graph kept around) see false
};

// Copies rank 0's buffers (running statistics) to every rank. With plain batch norm each rank's
// statistics drift apart during training; fit() calls this before each evaluation, so that every
// rank scores the model rank 0 saves (PyTorch's DDP, broadcast_buffers=True, does it before
// every forward; between evaluations the per-rank statistics do not change what is trained).
void broadcast_buffers(nn::Module& m, ProcessGroup& pg);

}  // namespace dl::dist
