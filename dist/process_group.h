#pragma once
// dist::ProcessGroup: the ranks of one data-parallel job and their collectives, over MPI for CPU
// tensors and over NCCL for CUDA tensors (NCCL's communicator is set up through MPI on first use).
// One process per rank, started by `mpirun -np N program ...` (docs/distributed.md).
//
// Every collective is started non-blocking (MPI_Iallreduce, ncclAllReduce on a communication
// stream) and waited for by polling with a deadline: a peer that died or hangs makes the wait end
// after `timeout_s` with a message naming the call, the rank and what it waited for, and the job is
// then aborted (MPI_Abort, which makes mpirun stop every rank) instead of hanging. Every MPI and
// NCCL call is checked; an error names the call and the rank.
//
// Built without MPI (find_package(MPI) failed at configure time), init() fails with that reason
// and available() is false; everything else in the framework is unaffected.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace dl::dist {

enum class ReduceOp { Sum, Average, Max };

// True when this build has MPI (and so can run distributed).
bool available();
// True when this build has NCCL (CUDA tensors use it; without it they are an error).
bool nccl_available();
// Why available() is false ("" when it is true).
std::string unavailable_reason();

// A started collective. wait() returns once it has finished (in place: the tensor holds the result),
// or ends the job after the group's timeout. test() advances it without blocking (MPI only makes
// progress on a non-blocking collective while some MPI call runs) and says whether it has finished.
class Work {
 public:
  virtual ~Work() = default;
  virtual bool test() = 0;
  virtual void wait() = 0;
};

struct ProcessGroupOptions {
  // Seconds a collective may wait for the other ranks before the job is ended. 0: $DL_DIST_TIMEOUT
  // when set, else 300. (PyTorch's default is 30 minutes; a training step here takes well under 1 s.)
  double timeout_s = 0;
};

class ProcessGroup {
 public:
  // Initialises MPI (once per process; MPI_THREAD_FUNNELED: only the thread that called init
  // talks to other ranks) and returns the world group. A process not started by mpirun is a
  // group of one. Later calls return the same group.
  static ProcessGroup& init(ProcessGroupOptions opts = {});
  // The group init() made; throws when init() has not run.
  static ProcessGroup& world();
  static bool initialized();
  // MPI_Finalize after a barrier bounded by DL_DIST_FINAL_TIMEOUT (default 1 h: rank 0 may still be
  // evaluating the test set and writing the run record); also run at exit when the program does
  // not call it. Never throws: an error is printed and the process exits with status 3.
  static void finalize();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int local_rank() const { return local_rank_; }  // rank among the processes on this node
  int local_size() const { return local_size_; }
  double timeout_s() const { return timeout_s_; }
  void set_timeout(double seconds);
  bool is_main() const { return rank_ == 0; }

  // In place on a contiguous tensor (float32/float64/int64/uint8; Average: floating only).
  // CPU tensors go over MPI, CUDA tensors over NCCL. Every rank must call the same collectives,
  // in the same order, with tensors of the same shape and dtype.
  std::shared_ptr<Work> allreduce_async(Tensor& t, ReduceOp op = ReduceOp::Sum);
  void allreduce(Tensor& t, ReduceOp op = ReduceOp::Sum) { allreduce_async(t, op)->wait(); }
  void broadcast(Tensor& t, int root = 0);
  // (world_size, *t.sizes()): every rank's t, in rank order.
  Tensor all_gather(const Tensor& t);
  void barrier();

  // Conveniences for host values (over MPI).
  double allreduce(double v, ReduceOp op = ReduceOp::Sum);
  std::string broadcast(const std::string& s, int root = 0);

  // Ends the whole job: prints "[rank r] error: <why>" and calls MPI_Abort (mpirun stops every
  // rank). What a failed wait calls.
  [[noreturn]] void abort(const std::string& why) const;

  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;
  ~ProcessGroup();

  struct Impl;  // MPI communicator, NCCL communicator (opaque here)

 private:
  ProcessGroup() = default;
  int rank_ = 0, world_size_ = 1, local_rank_ = 0, local_size_ = 1;
  double timeout_s_ = 300;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dl::dist
