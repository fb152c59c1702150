// Built instead of the CUDA backend when CUDA is off: every query says there is no GPU, every
// operation that would need one throws dl::Error saying so, and PinnedBuffer is plain host memory.
#include <cstdlib>
#include <cstring>
#include <utility>

#include "cuda/cuda.h"
#include "cuda/optim.h"
#include "tensor/error.h"

namespace dl::cuda {
namespace {
const char* kReason = "this build has no CUDA backend (configured with DL_CUDA=OFF or without nvcc)";
[[noreturn]] void no_cuda(const char* what) { fail("{}: {}", what, kReason); }
}  // namespace

bool built_with_cuda() { return false; }
int device_count() { return 0; }
bool is_available() { return false; }
std::string unavailable_reason() { return kReason; }
std::string device_name(int) { return "none"; }
void init() { no_cuda("dl::cuda::init"); }
bool initialized() { return false; }
void synchronize() {}

Stream Stream::create() { no_cuda("dl::cuda::Stream::create"); }
void Stream::synchronize() const {}
bool Stream::query() const { return true; }
void Stream::wait(const Stream&) const {}
Stream current_stream() { return Stream(); }
void set_current_stream(const Stream& s) {
  if (!s.is_default()) no_cuda("dl::cuda::set_current_stream");
}

AllocatorStats allocator_stats() { return {}; }
std::string allocator_summary() { return std::string("CUDA allocator: ") + kReason; }
void empty_cache() {}
void reset_peak_stats() {}
void record_stream(const Tensor&, const Stream&) { no_cuda("dl::cuda::record_stream"); }
size_t size_class(size_t nbytes) { return nbytes; }

PinnedBuffer::PinnedBuffer(size_t nbytes) : size_(nbytes) {
  if (nbytes == 0) return;
  data_ = std::aligned_alloc(64, (nbytes + 63) / 64 * 64);
  if (!data_) fail("PinnedBuffer: out of host memory allocating {} bytes", nbytes);
}
PinnedBuffer::~PinnedBuffer() { release(); }
PinnedBuffer::PinnedBuffer(PinnedBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), pinned_(o.pinned_),
      event_(std::exchange(o.event_, nullptr)) {}
PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    pinned_ = o.pinned_;
    event_ = std::exchange(o.event_, nullptr);
  }
  return *this;
}
void PinnedBuffer::release() {
  std::free(data_);
  data_ = nullptr;
  size_ = 0;
}
void PinnedBuffer::record_use(const Stream&) {}
void copy_to_device_async(const Tensor&, PinnedBuffer&, const Stream&) { no_cuda("dl::cuda::copy_to_device_async"); }
void copy_to_host_async(PinnedBuffer&, const Tensor&, const Stream&) { no_cuda("dl::cuda::copy_to_host_async"); }
void empty_pinned_cache() {}

void fused_sgd_step(const Tensor&, const Tensor&, const Tensor&, const SGDStep&) { no_cuda("dl::cuda::fused_sgd_step"); }
void fused_adam_step(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const AdamStep&) {
  no_cuda("dl::cuda::fused_adam_step");
}

}  // namespace dl::cuda
