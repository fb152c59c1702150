#include "dist/nccl_comm.h"

#include "tensor/error.h"

#if defined(DL_WITH_NCCL) && defined(DL_WITH_MPI)
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <thread>

#include "cuda/cuda.h"
#endif

namespace dl::dist {

#if !(defined(DL_WITH_NCCL) && defined(DL_WITH_MPI))

struct NcclComm::State {};
NcclComm::NcclComm(const ProcessGroup& pg, void*, int) {
  fail("rank {}: collectives on CUDA tensors need NCCL, and this build has none (CMake found no nccl.h / "
       "libnccl; see docs/distributed.md)",
       pg.rank());
}
NcclComm::~NcclComm() = default;
std::shared_ptr<Work> NcclComm::allreduce(Tensor&, ReduceOp) { return nullptr; }
void NcclComm::broadcast(Tensor&, int) {}
void NcclComm::all_gather(const Tensor&, Tensor&) {}
void NcclComm::abort() {}

#else

namespace {
void cuda_check(cudaError_t e, const char* call, int rank) {
  if (e != cudaSuccess) fail("rank {}: {} failed: {}", rank, call, cudaGetErrorString(e));
}
void nccl_check(ncclResult_t r, const char* call, int rank) {
  if (r != ncclSuccess && r != ncclInProgress) fail("rank {}: {} failed: {}", rank, call, ncclGetErrorString(r));
}
ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::Float32: return ncclFloat32;
    case DType::Float64: return ncclFloat64;
    case DType::Int64: return ncclInt64;
    case DType::UInt8: return ncclUint8;
    case DType::BFloat16: return ncclBfloat16;
    case DType::Float16: return ncclFloat16;
  }
  return ncclFloat32;
}
ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Average: return ncclAvg;
    case ReduceOp::Max: return ncclMax;
  }
  return ncclSum;
}
}  // namespace

struct NcclComm::State {
  const ProcessGroup* pg = nullptr;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int device = 0;
  bool aborted = false;

  // Orders the communication stream after what the caller's stream has queued so far.
  void after_current_stream() {
    cudaEvent_t ev;
    cuda_check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreateWithFlags", pg->rank());
    cuda_check(cudaEventRecord(ev, static_cast<cudaStream_t>(cuda::current_stream().handle())), "cudaEventRecord",
               pg->rank());
    cuda_check(cudaStreamWaitEvent(stream, ev, 0), "cudaStreamWaitEvent", pg->rank());
    cuda_check(cudaEventDestroy(ev), "cudaEventDestroy", pg->rank());
  }

  // Polls `ev` (recorded after a collective) with the group's deadline; a peer that died or hangs
  // leaves the NCCL kernel spinning, so past the deadline the communicator is aborted and the job ended.
  void wait_event(cudaEvent_t ev, const std::string& what) {
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + std::chrono::duration<double>(pg->timeout_s());
    for (long spins = 0;; ++spins) {
      cudaError_t q = cudaEventQuery(ev);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) cuda_check(q, "cudaEventQuery", pg->rank());
      ncclResult_t async = ncclSuccess;
      nccl_check(ncclCommGetAsyncError(comm, &async), "ncclCommGetAsyncError", pg->rank());
      if (async != ncclSuccess && async != ncclInProgress)
        pg->abort(fmt::format("NCCL reported an asynchronous error during {}: {}", what, ncclGetErrorString(async)));
      if (Clock::now() > deadline)
        pg->abort(fmt::format("{} did not complete within {:g} s (DL_DIST_TIMEOUT): another rank has died or hangs",
                              what, pg->timeout_s()));
      if (spins > 2000) std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
};

namespace {
class NcclWork final : public Work {
 public:
  NcclWork(std::shared_ptr<NcclComm::State> s, Tensor t, std::string what)
      : s_(std::move(s)), t_(std::move(t)), what_(std::move(what)) {
    cuda_check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreateWithFlags", s_->pg->rank());
    cuda_check(cudaEventRecord(done_, s_->stream), "cudaEventRecord", s_->pg->rank());
  }
  ~NcclWork() override { cudaEventDestroy(done_); }
  bool test() override { return finished_ || (finished_ = cudaEventQuery(done_) == cudaSuccess); }
  void wait() override {
    if (finished_) return;
    s_->wait_event(done_, what_);
    finished_ = true;
  }

 private:
  std::shared_ptr<NcclComm::State> s_;
  Tensor t_;  // kept alive until NCCL has written it
  std::string what_;
  cudaEvent_t done_ = nullptr;
  bool finished_ = false;
};
}  // namespace

NcclComm::NcclComm(const ProcessGroup& pg, void* mpi_comm, int device) : s_(std::make_shared<State>()) {
  s_->pg = &pg;
  s_->device = device;
  const int rank = pg.rank();
  cuda_check(cudaSetDevice(device), "cudaSetDevice", rank);
  ncclUniqueId id;
  if (rank == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId", rank);
  MPI_Comm comm = *static_cast<MPI_Comm*>(mpi_comm);
  int rc = MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, comm);
  if (rc != MPI_SUCCESS) fail("rank {}: MPI_Bcast (of the ncclUniqueId) failed with code {}", rank, rc);
  nccl_check(ncclCommInitRank(&s_->comm, pg.world_size(), id, rank), "ncclCommInitRank", rank);
  cuda_check(cudaStreamCreateWithFlags(&s_->stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags", rank);
}

NcclComm::~NcclComm() {
  if (!s_) return;
  if (s_->comm && !s_->aborted) ncclCommDestroy(s_->comm);
  if (s_->stream) cudaStreamDestroy(s_->stream);
}

void NcclComm::abort() {
  if (s_ && s_->comm && !s_->aborted) {
    s_->aborted = true;
    ncclCommAbort(s_->comm);
  }
}

std::shared_ptr<Work> NcclComm::allreduce(Tensor& t, ReduceOp op) {
  const int rank = s_->pg->rank();
  if (t.device().index != s_->device)
    fail("rank {}: NCCL communicator is on cuda:{}, the tensor on {}", rank, s_->device, t.device().str());
  s_->after_current_stream();
  nccl_check(ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()),
                           nccl_op(op), s_->comm, s_->stream),
             "ncclAllReduce", rank);
  return std::make_shared<NcclWork>(s_, t, fmt::format("ncclAllReduce of {} elements, rank {} of {}", t.numel(), rank,
                                                       s_->pg->world_size()));
}

void NcclComm::broadcast(Tensor& t, int root) {
  const int rank = s_->pg->rank();
  s_->after_current_stream();
  nccl_check(ncclBroadcast(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()), root,
                           s_->comm, s_->stream),
             "ncclBroadcast", rank);
  NcclWork(s_, t, fmt::format("ncclBroadcast of {} elements from rank {}, rank {}", t.numel(), root, rank)).wait();
}

void NcclComm::all_gather(const Tensor& in, Tensor& out) {
  const int rank = s_->pg->rank();
  s_->after_current_stream();
  nccl_check(ncclAllGather(in.raw_data(), out.raw_data(), static_cast<size_t>(in.numel()), nccl_type(in.dtype()),
                           s_->comm, s_->stream),
             "ncclAllGather", rank);
  NcclWork(s_, out, fmt::format("ncclAllGather of {} elements, rank {}", in.numel(), rank)).wait();
}

#endif

}  // namespace dl::dist
