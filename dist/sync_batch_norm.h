#pragma once
// SyncBatchNorm: BatchNorm2d whose training-mode statistics are those of the whole global batch,
// all ranks together (PyTorch's nn.SyncBatchNorm). Forward all-reduces each channel's sum and
// count, then the sum of squared deviations (two passes, as one process computes them); backward
// all-reduces the per-channel sums of dy and dy * x_hat that the input gradient needs. Same
// parameters, buffers and state_dict keys as BatchNorm2d, so checkpoints move between the two.
// In eval mode it is plain batch norm with the running statistics (no communication).
//
// When plain BatchNorm2d differs under DistributedDataParallel: in training, each rank then
// normalises with the statistics of its own shard (batch / world_size samples), so the forward and
// the gradients differ from one process's on the global batch, noticeably when the per-rank batch
// is small (a few samples per channel); the running statistics then also differ per rank (rank 0's
// are the ones saved). With SyncBatchNorm, 2 ranks x 32 compute what 1 process x 64 does, up to
// float32 round-off (tests/dist/ddp_test.cpp checks both statements). The price: three small
// all-reduces per layer per step, latency-bound and on the critical path.
#include <memory>
#include <optional>

#include "dist/process_group.h"
#include "nn/layers.h"

namespace dl::dist {

class SyncBatchNorm : public nn::Module {
 public:
  // Takes over `bn`'s parameter and buffer tensors themselves (an optimizer built on them keeps working).
  SyncBatchNorm(const nn::BatchNorm2d& bn, ProcessGroup& pg);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  int64_t num_features;
  double eps;
  std::optional<double> momentum;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  ProcessGroup& pg_;
};

// Replaces every BatchNorm2d below `root` by a SyncBatchNorm on the same tensors; returns how many.
// A BatchNorm2d that a module also keeps in a member of its own and calls directly (so replacing the
// registered child would not change what runs) is a clear error rather than a silent no-op.
int convert_sync_batchnorm(nn::Module& root, ProcessGroup& pg);

}  // namespace dl::dist
