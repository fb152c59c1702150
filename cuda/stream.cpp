// Streams: a fixed pool of non-blocking streams handed out round robin (never destroyed, so a
// handle and the allocator's per-stream pools stay valid), and each host thread's current stream.
#include <array>
#include <atomic>
#include <mutex>

#include <cuda_runtime.h>

#include "cuda/cuda.h"
#include "cuda/detail.h"

namespace dl::cuda {
namespace {

constexpr int kPoolSize = 32;

struct StreamPool {
  std::array<cudaStream_t, kPoolSize> streams{};
  std::atomic<uint32_t> next{0};
  std::once_flag once;
};

StreamPool& pool() {
  static StreamPool* p = new StreamPool;  // never destroyed
  return *p;
}

thread_local cudaStream_t t_current = nullptr;

}  // namespace

Stream Stream::create() {
  init();
  StreamPool& p = pool();
  std::call_once(p.once, [&] {
    for (auto& s : p.streams) DL_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  });
  return Stream(p.streams[p.next.fetch_add(1) % kPoolSize]);
}

void Stream::synchronize() const {
  if (!initialized()) return;
  DL_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(h_)));
}

bool Stream::query() const {
  if (!initialized()) return true;
  cudaError_t e = cudaStreamQuery(static_cast<cudaStream_t>(h_));
  if (e == cudaErrorNotReady) {
    cudaGetLastError();
    return false;
  }
  DL_CUDA_CHECK(e);
  return true;
}

void Stream::wait(const Stream& other) const {
  if (other == *this || !initialized()) return;
  cudaEvent_t ev;
  DL_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  cudaError_t e = cudaEventRecord(ev, static_cast<cudaStream_t>(other.handle()));
  if (e == cudaSuccess) e = cudaStreamWaitEvent(static_cast<cudaStream_t>(h_), ev, 0);
  cudaEventDestroy(ev);  // safe: destruction is deferred until the event completes
  DL_CUDA_CHECK(e);
}

Stream current_stream() { return Stream::from_handle(t_current); }
void set_current_stream(const Stream& s) { t_current = static_cast<cudaStream_t>(s.handle()); }

namespace detail {
cudaStream_t current_stream() { return t_current; }
}  // namespace detail

}  // namespace dl::cuda
