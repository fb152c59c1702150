#pragma once
// The NCCL side of a ProcessGroup (internal to dist/): one communicator per process, on the GPU of
// the first CUDA tensor it sees, set up with an ncclUniqueId that rank 0 broadcasts over MPI.
// Collectives run on a communication stream of their own, ordered after the work already queued
// on the caller's current stream (an event), so backward's kernels keep running while a bucket is
// reduced. Built without NCCL, constructing one is an error that says so.
#include <memory>

#include "dist/process_group.h"

namespace dl::dist {

class NcclComm {
 public:
  // mpi_comm: a pointer to the group's MPI_Comm (kept opaque here, as is the NCCL handle).
  NcclComm(const ProcessGroup& pg, void* mpi_comm, int device);
  ~NcclComm();
  std::shared_ptr<Work> allreduce(Tensor& t, ReduceOp op);
  void broadcast(Tensor& t, int root);
  void all_gather(const Tensor& in, Tensor& out);
  void abort();  // ncclCommAbort: unblocks kernels waiting on a dead peer

  struct State;

 private:
  std::shared_ptr<State> s_;
};

}  // namespace dl::dist
