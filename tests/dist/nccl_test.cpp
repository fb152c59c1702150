// The NCCL side of the process group (CUDA tensors), under `mpirun -np 2` like the other dist
// tests, one GPU per rank (cuda:<local rank>). Labelled cuda as well: skipped without NCCL in the
// build or without a GPU per rank, never passed.
#include <doctest/doctest.h>

#include "cuda/cuda.h"
#include "dist/ddp.h"
#include "nn/layers.h"
#include "test_util.h"

using namespace dl;

TEST_CASE("nccl: all-reduce + broadcast + all-gather + DDP on CUDA tensors") {
  if (!dist::available()) DL_SKIP("built without MPI");
  if (!dist::nccl_available()) DL_SKIP("built without NCCL (no CUDA, or no nccl.h / libnccl found)");
  if (!cuda::is_available()) DL_SKIP("no GPU: " << cuda::unavailable_reason());
  auto& pg = dist::ProcessGroup::init();
  if (cuda::device_count() < pg.local_size())
    DL_SKIP(pg.local_size() << " ranks on this node but " << cuda::device_count() << " GPU(s): NCCL needs one per rank");
  cuda::init();
  const Device dev(DeviceType::CUDA, pg.local_rank());
  const int r = pg.rank(), n = pg.world_size();
  Tensor a = full({1000}, r + 1.0).to(dev);
  pg.allreduce(a, dist::ReduceOp::Sum);
  CHECK(a.to(kCPU).to_vector<float>() == std::vector<float>(1000, n * (n + 1) / 2.0f));
  Tensor avg = full({7}, 2.0 * r, DType::Float64).to(dev);
  pg.allreduce(avg, dist::ReduceOp::Average);
  CHECK(avg.to(kCPU).to_vector<double>() == std::vector<double>(7, double(n - 1)));
  Tensor b = full({5}, r == 0 ? 3.0 : -1.0).to(dev);
  pg.broadcast(b, 0);
  CHECK(b.to(kCPU).to_vector<float>() == std::vector<float>(5, 3.0f));
  Tensor g = pg.all_gather(full({2}, double(r)).to(dev)).to(kCPU);
  CHECK(g.sizes() == Shape{n, 2});
  CHECK(g.select(0, n - 1).to_vector<float>() == std::vector<float>(2, float(n - 1)));

  // DDP on the GPU: the averaged gradient of sum(W x) with x = rank + 1
  manual_seed(5);
  auto lin = std::make_shared<nn::Linear>(4, 3);
  lin->to(dev);
  dist::DistributedDataParallel ddp(lin, pg, {.bucket_mb = 1e-5});
  (*lin)(full({2, 4}, r + 1.0).to(dev)).sum().backward();
  CHECK(lin->weight.grad().to(kCPU).to_vector<float>() == std::vector<float>(12, float(n + 1)));
}
