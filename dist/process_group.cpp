#include "dist/process_group.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <iostream>
#include <thread>

#include "autograd/node.h"
#include "tensor/error.h"

#ifdef DL_WITH_MPI
#include <mpi.h>
#endif
#include "dist/nccl_comm.h"

namespace dl::dist {

namespace {
std::unique_ptr<ProcessGroup>& world_slot() {
  static std::unique_ptr<ProcessGroup> g;
  return g;
}

[[maybe_unused]] double env_seconds(const char* name, double fallback) {
  if (const char* s = std::getenv(name)) {
    char* end = nullptr;
    double v = std::strtod(s, &end);
    if (end == s || *end != '\0' || !(v > 0)) fail("{} must be a positive number of seconds, got '{}'", name, s);
    return v;
  }
  return fallback;
}
[[maybe_unused]] double env_timeout() { return env_seconds("DL_DIST_TIMEOUT", 300); }

[[maybe_unused]] void check_tensor(const Tensor& t, const char* what) {
  if (!t.defined()) fail("dist::{}: the tensor is undefined", what);
  if (t.numel() > 2147483647)
    fail("dist::{}: {} elements is more than one MPI/NCCL call takes here (2^31 - 1); split the tensor", what, t.numel());
  if (!t.is_contiguous()) fail("dist::{}: expected a contiguous tensor, got strides {}", what, shape_str(t.strides()));
}
}  // namespace

bool available() {
#ifdef DL_WITH_MPI
  return true;
#else
  return false;
#endif
}

bool nccl_available() {
#ifdef DL_WITH_NCCL
  return true;
#else
  return false;
#endif
}

std::string unavailable_reason() {
  return available() ? "" : "this build has no MPI (CMake's find_package(MPI) found none; install libopenmpi-dev "
                            "and openmpi-bin, then configure again)";
}

bool ProcessGroup::initialized() { return world_slot() != nullptr; }

ProcessGroup& ProcessGroup::world() {
  if (!world_slot()) fail("dist::ProcessGroup::world(): call ProcessGroup::init() first");
  return *world_slot();
}

void ProcessGroup::set_timeout(double seconds) {
  if (!(seconds > 0)) fail("dist::ProcessGroup: the timeout must be positive, got {}", seconds);
  timeout_s_ = seconds;
}

#ifndef DL_WITH_MPI

struct ProcessGroup::Impl {};
ProcessGroup::~ProcessGroup() = default;
ProcessGroup& ProcessGroup::init(ProcessGroupOptions) { fail("dist::ProcessGroup::init: {}", unavailable_reason()); }
void ProcessGroup::finalize() {}
std::shared_ptr<Work> ProcessGroup::allreduce_async(Tensor&, ReduceOp) { fail("dist: {}", unavailable_reason()); }
void ProcessGroup::broadcast(Tensor&, int) { fail("dist: {}", unavailable_reason()); }
Tensor ProcessGroup::all_gather(const Tensor&) { fail("dist: {}", unavailable_reason()); }
void ProcessGroup::barrier() { fail("dist: {}", unavailable_reason()); }
double ProcessGroup::allreduce(double, ReduceOp) { fail("dist: {}", unavailable_reason()); }
std::string ProcessGroup::broadcast(const std::string&, int) { fail("dist: {}", unavailable_reason()); }
void ProcessGroup::abort(const std::string& why) const {
  std::cerr << "error: " << why << std::endl;
  std::_Exit(3);
}

#else  // DL_WITH_MPI

struct ProcessGroup::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  std::unique_ptr<NcclComm> nccl;  // made on the first CUDA collective
};

namespace {

// Checks an MPI return code; the error names the call and the rank.
void mpi_check(int rc, const char* call, int rank) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail("rank {}: {} failed: {}", rank, call, std::string(msg, static_cast<size_t>(len)));
}

MPI_Datatype mpi_type(DType d) {
  switch (d) {
    case DType::Float32: return MPI_FLOAT;
    case DType::Float64: return MPI_DOUBLE;
    case DType::Int64: return MPI_INT64_T;
    case DType::UInt8: return MPI_UINT8_T;
    // MPI has no 16-bit float type: bfloat16/float16 travel as 2-byte units, which broadcast and
    // all_gather need; allreduce refuses them (it would add bit patterns).
    case DType::BFloat16:
    case DType::Float16: return MPI_UINT16_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::Max ? MPI_MAX : MPI_SUM; }

const char* op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Average: return "average";
    case ReduceOp::Max: return "max";
  }
  return "?";
}

// Polls `req` until it completes; past the group's timeout, ends the job naming `call` and `what`.
void wait_request(const ProcessGroup& pg, MPI_Request& req, const char* call, const std::string& what) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(pg.timeout_s());
  for (long spins = 0;; ++spins) {
    int done = 0;
    mpi_check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "MPI_Test", pg.rank());
    if (done) return;
    if (Clock::now() > deadline)
      pg.abort(fmt::format("{} ({}) did not complete within {:g} s (DL_DIST_TIMEOUT): another rank has died, hangs, "
                           "or called a different collective; ending the job",
                           call, what, pg.timeout_s()));
    // spin briefly (a reply is usually microseconds away), then give the core back between polls
    if (spins > 2000) std::this_thread::sleep_for(std::chrono::microseconds(spins > 20000 ? 500 : 20));
  }
}

class MpiWork final : public Work {
 public:
  MpiWork(const ProcessGroup& pg, Tensor t, ReduceOp op, const char* call, std::string what)
      : pg_(pg), t_(std::move(t)), op_(op), call_(call), what_(std::move(what)) {}
  // MPI still writes into the tensor until the request completes: never free it before that
  ~MpiWork() override {
    if (!finished_ && req != MPI_REQUEST_NULL) wait_request(pg_, req, call_, what_);
  }
  MPI_Request req = MPI_REQUEST_NULL;
  bool test() override {
    if (finished_) return true;
    int done = 0;
    mpi_check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "MPI_Test", pg_.rank());
    if (done) finish();
    return finished_;
  }
  void wait() override {
    if (finished_) return;
    wait_request(pg_, req, call_, what_);
    finish();
  }

 private:
  void finish() {
    finished_ = true;
    if (op_ == ReduceOp::Average && pg_.world_size() > 1) {
      NoGradGuard ng;
      t_.mul_(1.0 / pg_.world_size());
    }
  }
  const ProcessGroup& pg_;
  Tensor t_;  // kept alive until the collective has finished writing it
  ReduceOp op_;
  const char* call_;
  std::string what_;
  bool finished_ = false;
};

class DoneWork final : public Work {
 public:
  bool test() override { return true; }
  void wait() override {}
};

}  // namespace

ProcessGroup& ProcessGroup::init(ProcessGroupOptions opts) {
  if (world_slot()) return *world_slot();
  int inited = 0;
  mpi_check(MPI_Initialized(&inited), "MPI_Initialized", -1);
  if (!inited) {
    int provided = 0;
    mpi_check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread", -1);
    if (provided < MPI_THREAD_FUNNELED)
      fail("MPI_Init_thread: this MPI provides thread level {}, the framework needs MPI_THREAD_FUNNELED", provided);
  }
  std::unique_ptr<ProcessGroup> pg(new ProcessGroup());
  pg->impl_ = std::make_unique<Impl>();
  int rank = -1;
  mpi_check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", rank);
  mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &pg->impl_->comm), "MPI_Comm_dup", rank);
  mpi_check(MPI_Comm_rank(pg->impl_->comm, &pg->rank_), "MPI_Comm_rank", rank);
  rank = pg->rank_;
  mpi_check(MPI_Comm_size(pg->impl_->comm, &pg->world_size_), "MPI_Comm_size", rank);
  MPI_Comm local;
  mpi_check(MPI_Comm_split_type(pg->impl_->comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local),
            "MPI_Comm_split_type", rank);
  mpi_check(MPI_Comm_rank(local, &pg->local_rank_), "MPI_Comm_rank", rank);
  mpi_check(MPI_Comm_size(local, &pg->local_size_), "MPI_Comm_size", rank);
  mpi_check(MPI_Comm_free(&local), "MPI_Comm_free", rank);
  pg->timeout_s_ = opts.timeout_s > 0 ? opts.timeout_s : env_timeout();
  world_slot() = std::move(pg);
  std::atexit([] { ProcessGroup::finalize(); });
  return *world_slot();
}

ProcessGroup::~ProcessGroup() = default;

void ProcessGroup::finalize() {
  auto& g = world_slot();
  if (!g) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) {
    // Runs from atexit too, where an exception would terminate: report and leave instead.
    try {
      // The last barrier waits for rank 0's own end of run (the test set, the run record), which
      // may take longer than one collective: DL_DIST_FINAL_TIMEOUT (default 1 h) bounds it. A dead
      // peer ends the job at once through mpirun; a hung one after that time.
      g->set_timeout(std::max(g->timeout_s(), env_seconds("DL_DIST_FINAL_TIMEOUT", 3600)));
      g->barrier();
      g->impl_->nccl.reset();
      MPI_Comm_free(&g->impl_->comm);
      mpi_check(MPI_Finalize(), "MPI_Finalize", g->rank_);
    } catch (const std::exception& e) {
      std::cerr << "[rank " << g->rank_ << "] error while finishing MPI: " << e.what() << std::endl;
      std::_Exit(3);
    }
  }
  g.reset();
}

void ProcessGroup::abort(const std::string& why) const {
  std::fflush(stdout);
  std::cerr << "[rank " << rank_ << "/" << world_size_ << "] error: " << why << std::endl;
  if (impl_ && impl_->nccl) impl_->nccl->abort();
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::_Exit(3);
}

std::shared_ptr<Work> ProcessGroup::allreduce_async(Tensor& t, ReduceOp op) {
  check_tensor(t, "allreduce");
  if (op == ReduceOp::Average && !is_floating_point(t.dtype()))
    fail("dist::allreduce: average needs a floating tensor, got {}", dtype_name(t.dtype()));
  if (t.device().is_cuda()) {  // NCCL reduces bfloat16 and float16 itself
    if (!impl_->nccl) impl_->nccl = std::make_unique<NcclComm>(*this, &impl_->comm, t.device().index);
    return impl_->nccl->allreduce(t, op);
  }
  if (is_low_precision(t.dtype()))
    fail("dist::allreduce ({}): MPI has no {} type, so a CPU {} tensor can be broadcast or gathered but not "
         "reduced; convert with .to(DType::Float32) first", op_name(op), dtype_name(t.dtype()), dtype_name(t.dtype()));
  std::string what = fmt::format("all-reduce ({}) of {} {} elements, rank {} of {}", op_name(op), t.numel(),
                                 dtype_name(t.dtype()), rank_, world_size_);
  if (world_size_ == 1) return std::make_shared<DoneWork>();
  auto w = std::make_shared<MpiWork>(*this, t, op, "MPI_Iallreduce", std::move(what));
  mpi_check(MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), static_cast<int>(t.numel()), mpi_type(t.dtype()), mpi_op(op),
                           impl_->comm, &w->req),
            "MPI_Iallreduce", rank_);
  return w;
}

void ProcessGroup::broadcast(Tensor& t, int root) {
  check_tensor(t, "broadcast");
  if (root < 0 || root >= world_size_) fail("dist::broadcast: root {} outside the {} ranks", root, world_size_);
  if (t.device().is_cuda()) {
    if (!impl_->nccl) impl_->nccl = std::make_unique<NcclComm>(*this, &impl_->comm, t.device().index);
    impl_->nccl->broadcast(t, root);
    return;
  }
  if (world_size_ == 1) return;
  MPI_Request req;
  mpi_check(MPI_Ibcast(t.raw_data(), static_cast<int>(t.numel()), mpi_type(t.dtype()), root, impl_->comm, &req),
            "MPI_Ibcast", rank_);
  wait_request(*this, req, "MPI_Ibcast",
               fmt::format("broadcast of {} elements from rank {}, rank {} of {}", t.numel(), root, rank_, world_size_));
}

Tensor ProcessGroup::all_gather(const Tensor& t) {
  check_tensor(t, "all_gather");
  Shape s = t.sizes();
  s.insert(s.begin(), world_size_);
  Tensor out = empty(s, {t.dtype(), t.device()});
  if (t.device().is_cuda()) {
    if (!impl_->nccl) impl_->nccl = std::make_unique<NcclComm>(*this, &impl_->comm, t.device().index);
    impl_->nccl->all_gather(t, out);
    return out;
  }
  MPI_Request req;
  const int n = static_cast<int>(t.numel());
  mpi_check(MPI_Iallgather(t.raw_data(), n, mpi_type(t.dtype()), out.raw_data(), n, mpi_type(t.dtype()), impl_->comm,
                           &req),
            "MPI_Iallgather", rank_);
  wait_request(*this, req, "MPI_Iallgather",
               fmt::format("all-gather of {} elements, rank {} of {}", n, rank_, world_size_));
  return out;
}

void ProcessGroup::barrier() {
  MPI_Request req;
  mpi_check(MPI_Ibarrier(impl_->comm, &req), "MPI_Ibarrier", rank_);
  wait_request(*this, req, "MPI_Ibarrier", fmt::format("barrier, rank {} of {}", rank_, world_size_));
}

double ProcessGroup::allreduce(double v, ReduceOp op) {
  Tensor t = full({1}, v, DType::Float64);
  allreduce(t, op);
  return t.item<double>();
}

std::string ProcessGroup::broadcast(const std::string& s, int root) {
  Tensor n = full({1}, static_cast<double>(s.size()), DType::Int64);
  broadcast(n, root);
  Tensor bytes = empty({n.item<int64_t>()}, DType::UInt8);
  if (rank_ == root && !s.empty()) std::copy(s.begin(), s.end(), static_cast<char*>(bytes.raw_data()));
  if (bytes.numel()) broadcast(bytes, root);
  const char* p = static_cast<const char*>(bytes.raw_data());
  return bytes.numel() ? std::string(p, p + bytes.numel()) : std::string();
}

#endif  // DL_WITH_MPI

}  // namespace dl::dist
