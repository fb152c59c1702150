// Host<->device copies (registered with tensor/storage's copy_bytes) and pinned host buffers.
//
// copy_bytes is synchronous towards the host: host->device and device->host copies are queued on
// the current stream and waited for, so the host buffer may be freed or read right after.
// device->device copies are only queued. The asynchronous path is PinnedBuffer +
// copy_to_device_async / copy_to_host_async.
#include <cstdlib>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include <cuda_runtime.h>
#include <fmt/format.h>

#include "cuda/cuda.h"
#include "cuda/detail.h"
#include "tensor/error.h"
#include "tensor/storage.h"
#include "tensor/tensor.h"

namespace dl::cuda {
namespace {

void check_index(Device d) {
  if (d.is_cuda() && d.index != detail::current_device())
    fail("tensor on {}: this backend uses one GPU, the current device cuda:{} (select another with "
         "CUDA_VISIBLE_DEVICES)",
         d.str(), detail::current_device());
}

void copy_h2d(void* dst, Device dd, const void* src, Device, size_t n) {
  if (n == 0) return;
  check_index(dd);
  cudaStream_t s = detail::current_stream();
  DL_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s));
  DL_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_d2h(void* dst, Device, const void* src, Device sd, size_t n) {
  if (n == 0) return;
  check_index(sd);
  cudaStream_t s = detail::current_stream();
  DL_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, s));
  DL_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_d2d(void* dst, Device dd, const void* src, Device sd, size_t n) {
  if (n == 0) return;
  check_index(dd);
  check_index(sd);
  DL_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, detail::current_stream()));
}

// ---- the pinned-buffer cache ------------------------------------------------------------------

class PinnedCache {
 public:
  void* get(size_t size) {
    std::lock_guard<std::mutex> lock(mu_);
    process_pending();
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      return p;
    }
    void* p = nullptr;
    cudaError_t e = cudaHostAlloc(&p, size, cudaHostAllocDefault);
    if (e != cudaSuccess) {
      cudaGetLastError();
      release_free();  // page-locked memory is scarce: give back what is cached and retry once
      DL_CUDA_CHECK(cudaHostAlloc(&p, size, cudaHostAllocDefault));
    }
    return p;
  }

  // Takes the buffer back; with an event, only once the event has completed.
  void put(void* p, size_t size, cudaEvent_t ev) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    if (ev) {
      pending_.push_back({p, size, ev});
      process_pending();
    } else {
      free_[size].push_back(p);
    }
  }

  void empty() {
    std::lock_guard<std::mutex> lock(mu_);
    process_pending();
    release_free();
  }

 private:
  struct Pending {
    void* p;
    size_t size;
    cudaEvent_t ev;
  };
  void process_pending() noexcept {
    for (size_t i = 0; i < pending_.size();) {
      cudaError_t e = cudaEventQuery(pending_[i].ev);
      if (e == cudaErrorNotReady) {
        cudaGetLastError();
        ++i;
        continue;
      }
      cudaGetLastError();
      cudaEventDestroy(pending_[i].ev);
      free_[pending_[i].size].push_back(pending_[i].p);
      pending_[i] = pending_.back();
      pending_.pop_back();
    }
  }
  void release_free() noexcept {
    for (auto& [size, ptrs] : free_)
      for (void* p : ptrs) cudaFreeHost(p);
    free_.clear();
    cudaGetLastError();
  }
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  std::vector<Pending> pending_;
};

PinnedCache& pinned_cache() {
  static PinnedCache* c = new PinnedCache;  // never destroyed
  return *c;
}

void check_async_tensor(const Tensor& t, size_t buffer_size, const char* op) {
  if (!t.device().is_cuda()) fail("{}: the tensor is on {}, expected a CUDA tensor", op, t.device().str());
  check_index(t.device());
  if (!t.is_contiguous()) fail("{}: the tensor of shape {} is not contiguous", op, shape_str(t.sizes()));
  const size_t n = static_cast<size_t>(t.numel() * t.element_size());
  if (n > buffer_size) fail("{}: the tensor needs {} bytes but the pinned buffer holds {}", op, n, buffer_size);
}

}  // namespace

void register_copies() {
  set_copy_bytes(DeviceType::CUDA, DeviceType::CPU, copy_h2d);  // (dst, src)
  set_copy_bytes(DeviceType::CPU, DeviceType::CUDA, copy_d2h);
  set_copy_bytes(DeviceType::CUDA, DeviceType::CUDA, copy_d2d);
}

// ---- PinnedBuffer ------------------------------------------------------------------------------

PinnedBuffer::PinnedBuffer(size_t nbytes) : size_(nbytes) {
  if (nbytes == 0) return;
  if (is_available()) {
    data_ = pinned_cache().get(size_class(nbytes));
    pinned_ = true;
  } else {
    data_ = std::aligned_alloc(64, (nbytes + 63) / 64 * 64);
    if (!data_) fail("PinnedBuffer: out of host memory allocating {} bytes", nbytes);
  }
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
  if (data_) {
    if (pinned_)
      pinned_cache().put(data_, size_class(size_), static_cast<cudaEvent_t>(event_));
    else
      std::free(data_);
  } else if (event_) {
    cudaEventDestroy(static_cast<cudaEvent_t>(event_));
  }
  data_ = nullptr;
  event_ = nullptr;
  size_ = 0;
}

void PinnedBuffer::record_use(const Stream& s) {
  if (!pinned_) return;
  if (!event_) {
    cudaEvent_t ev;
    DL_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    event_ = ev;
  }
  DL_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event_), static_cast<cudaStream_t>(s.handle())));
}

void copy_to_device_async(const Tensor& dst, PinnedBuffer& src, const Stream& s) {
  check_async_tensor(dst, src.size(), "copy_to_device_async");
  const size_t n = static_cast<size_t>(dst.numel() * dst.element_size());
  if (n == 0) return;
  detail::note_stream_used(static_cast<cudaStream_t>(s.handle()));  // the allocator guards the tensor on s
  DL_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.data(), n, cudaMemcpyHostToDevice,
                                static_cast<cudaStream_t>(s.handle())));
  src.record_use(s);
}

void copy_to_host_async(PinnedBuffer& dst, const Tensor& src, const Stream& s) {
  check_async_tensor(src, dst.size(), "copy_to_host_async");
  const size_t n = static_cast<size_t>(src.numel() * src.element_size());
  if (n == 0) return;
  detail::note_stream_used(static_cast<cudaStream_t>(s.handle()));  // the allocator guards the tensor on s
  DL_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.raw_data(), n, cudaMemcpyDeviceToHost,
                                static_cast<cudaStream_t>(s.handle())));
  dst.record_use(s);
}

void empty_pinned_cache() {
  if (initialized()) pinned_cache().empty();
}

}  // namespace dl::cuda
