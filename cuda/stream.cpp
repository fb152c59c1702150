// Streams: a fixed pool of non-blocking streams handed out round robin (never destroyed, so a
// handle and the allocator's per-stream pools stay valid), each host thread's current stream, and
// the set of streams work has been queued on (the allocator's cross-stream safety).
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

// Every stream work has been queued on (made current by some thread, or named by an async copy or
// record_stream), for the allocator's cross-stream safety (allocator.cpp). Append-only: readers
// take a snapshot without a lock; writers (rare: a stream's first use) take the mutex.
struct UsedStreams {
  std::array<std::atomic<cudaStream_t>, detail::kMaxTrackedStreams> streams{};
  std::atomic<int> count{1};  // [0] is the legacy default stream, always in use
  std::mutex mu;
};

UsedStreams& used() {
  static UsedStreams* u = new UsedStreams;  // never destroyed
  return *u;
}

}  // namespace

namespace detail {
void note_stream_used(cudaStream_t s) {
  UsedStreams& u = used();
  int n = u.count.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i)
    if (u.streams[i].load(std::memory_order_relaxed) == s) return;
  std::lock_guard<std::mutex> lock(u.mu);
  n = u.count.load(std::memory_order_relaxed);
  for (int i = 0; i < n; ++i)
    if (u.streams[i].load(std::memory_order_relaxed) == s) return;
  if (n == kMaxTrackedStreams)
    throw_message("dl::cuda: more than 64 distinct streams used in this process; the caching allocator tracks at most "
                  "64 to keep cross-stream reuse safe (reuse streams, e.g. from Stream::create()'s pool)",
                  __FILE__, __LINE__);
  u.streams[n].store(s, std::memory_order_relaxed);
  u.count.store(n + 1, std::memory_order_release);
}

int used_streams(cudaStream_t* out) {
  UsedStreams& u = used();
  const int n = u.count.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) out[i] = u.streams[i].load(std::memory_order_relaxed);
  return n;
}
}  // namespace detail

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
  detail::note_stream_used(static_cast<cudaStream_t>(h_));
  cudaEvent_t ev;
  DL_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  cudaError_t e = cudaEventRecord(ev, static_cast<cudaStream_t>(other.handle()));
  if (e == cudaSuccess) e = cudaStreamWaitEvent(static_cast<cudaStream_t>(h_), ev, 0);
  cudaEventDestroy(ev);  // safe: destruction is deferred until the event completes
  DL_CUDA_CHECK(e);
}

Stream current_stream() { return Stream::from_handle(t_current); }
void set_current_stream(const Stream& s) {
  detail::note_stream_used(static_cast<cudaStream_t>(s.handle()));  // may throw: then nothing changes
  t_current = static_cast<cudaStream_t>(s.handle());
}

namespace detail {
cudaStream_t current_stream() { return t_current; }
}  // namespace detail

}  // namespace dl::cuda
