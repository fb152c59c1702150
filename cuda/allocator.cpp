// The caching device allocator. Every block is one cudaMalloc of a size class (no splitting);
// a freed block waits in the pool of (the stream it was allocated on, its size class) and serves
// the next request of that class on that stream. Reuse on the same stream is safe without any
// synchronisation: work queued later on a stream runs after the work that used the block before.
//
// Cross-stream use is safe by default: the allocator cannot see which streams read or wrote a
// block, so when a block is freed it records an event on every *other* stream work has been
// queued on in this process (detail::used_streams: the default stream, streams made current,
// streams named by async copies / record_stream) and parks the block until those events have
// completed. A program that only ever uses the default stream pays nothing; one that uses k streams
// pays k - 1 event records per free (events are pooled), and a freed block may wait for unrelated
// work queued on the other streams before it is reused. The default stream always counts as used,
// so a program that runs everything on one non-default stream pays one event record per free.
#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <unordered_map>
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

size_t size_class(size_t n) {
  if (n == 0) return 0;
  constexpr size_t kSmall = size_t(1) << 20, kHuge = size_t(1) << 30;
  auto round_up = [](size_t v, size_t step) { return (v + step - 1) / step * step; };
  if (n <= kSmall) return round_up(n, 512);
  if (n > kHuge) return round_up(n, size_t(1) << 27);  // 128 MiB steps: at most 12.5% waste
  // eight classes per power of two: at most 12.5% waste
  int log2 = 63 - __builtin_clzll(static_cast<unsigned long long>(n));
  return round_up(n, size_t(1) << (log2 - 3));
}

namespace {

std::string bytes_str(uint64_t b) {
  if (b >= (uint64_t(1) << 30)) return fmt::format("{:.2f} GiB", static_cast<double>(b) / (1 << 30));
  if (b >= (uint64_t(1) << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(b) / (1 << 20));
  if (b >= 1024) return fmt::format("{:.1f} KiB", static_cast<double>(b) / 1024);
  return fmt::format("{} B", b);
}

class CachingAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    const size_t size = size_class(nbytes);
    cudaStream_t stream = detail::current_stream();
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.allocations;
    ++class_requests_[size];
    auto it = free_.find({stream, size});
    if ((it == free_.end() || it->second.empty()) && !pending_.empty()) {
      process_pending();  // blocks whose other-stream work has finished join their pools
      it = free_.find({stream, size});
    }
    if (it != free_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      Block& b = blocks_.at(p);
      b.in_use = true;
      ++stats_.cache_hits;
      stats_.cached_bytes -= size;
      note_allocated(size);
      return p;
    }
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      ++stats_.oom_retries;
      release_cached();
      err = cudaMalloc(&p, size);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      cudaGetLastError();
      fail("CUDA out of memory: could not allocate {} (requested {} bytes; {} in tensors, {} reserved by this "
           "allocator, {} free of {} on the device; cudaMalloc said {})",
           bytes_str(size), nbytes, bytes_str(stats_.allocated_bytes), bytes_str(stats_.reserved_bytes),
           bytes_str(free_b), bytes_str(total_b), cudaGetErrorString(err));
    }
    ++stats_.cache_misses;
    stats_.reserved_bytes += size;
    blocks_.emplace(p, Block{size, stream, true});
    note_allocated(size);
    return p;
  }

  // Called from Storage's destructor: never throws.
  void deallocate(void* ptr, size_t) override {
    if (!ptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = blocks_.find(ptr);
    if (it == blocks_.end() || !it->second.in_use) {
      std::fprintf(stderr, "dl::cuda allocator: free of unknown pointer %p ignored\n", ptr);
      return;
    }
    Block& b = it->second;
    b.in_use = false;
    ++stats_.frees;
    stats_.allocated_bytes -= b.size;
    stats_.cached_bytes += b.size;
    // Work queued on other streams before this free may still use the block: park it behind an
    // event on each of them (see the top of this file).
    cudaStream_t streams[detail::kMaxTrackedStreams];
    const int n = detail::used_streams(streams);
    Pending pend{ptr, {}};
    bool synced = false;
    for (int i = 0; i < n && !synced; ++i) {
      if (streams[i] == b.stream) continue;
      cudaEvent_t ev = take_event();
      if (!ev || cudaEventRecord(ev, streams[i]) != cudaSuccess) {
        cudaGetLastError();
        if (ev) events_.push_back(ev);
        cudaDeviceSynchronize();  // cannot track it: wait for everything instead
        cudaGetLastError();
        synced = true;
        continue;
      }
      pend.events.push_back(ev);
    }
    if (synced) {
      events_.insert(events_.end(), pend.events.begin(), pend.events.end());
      pend.events.clear();
    }
    if (pend.events.empty()) {
      free_[{b.stream, b.size}].push_back(ptr);
      return;
    }
    pending_.push_back(std::move(pend));
    if (pending_.size() >= next_sweep_) {  // keep the parked list (and the events) short
      process_pending();
      next_sweep_ = 2 * pending_.size() + 64;
    }
  }

  void check_live(void* ptr) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = blocks_.find(ptr);
    if (it == blocks_.end() || !it->second.in_use) fail("record_stream: the tensor's memory is not a live CUDA block");
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    process_pending();
    release_cached();
  }

  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_allocated_bytes = stats_.allocated_bytes;
  }

  std::string summary() {
    std::lock_guard<std::mutex> lock(mu_);
    const AllocatorStats& s = stats_;
    std::string out = fmt::format(
        "CUDA caching allocator: {} in tensors (peak {}), {} reserved, {} cached free; {} allocations, {} frees, "
        "{} cache hits, {} cudaMalloc, {} cudaFree, {} out-of-memory retries",
        bytes_str(s.allocated_bytes), bytes_str(s.peak_allocated_bytes), bytes_str(s.reserved_bytes),
        bytes_str(s.cached_bytes), s.allocations, s.frees, s.cache_hits, s.cache_misses, s.device_frees, s.oom_retries);
    std::vector<std::pair<uint64_t, size_t>> top;
    for (const auto& [size, count] : class_requests_) top.emplace_back(count, size);
    std::sort(top.rbegin(), top.rend());
    if (!top.empty()) out += "\n  busiest size classes (requests):";
    for (size_t i = 0; i < top.size() && i < 8; ++i) out += fmt::format(" {} x{}", bytes_str(top[i].second), top[i].first);
    return out;
  }

 private:
  struct Block {
    size_t size;
    cudaStream_t stream;  // allocated on; its pool takes the block back
    bool in_use;
  };
  struct Pending {
    void* ptr;
    std::vector<cudaEvent_t> events;
  };
  struct PoolKey {
    cudaStream_t stream;
    size_t size;
    bool operator<(const PoolKey& o) const { return stream != o.stream ? stream < o.stream : size < o.size; }
  };

  void note_allocated(size_t size) {
    stats_.allocated_bytes += size;
    stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  }

  // An event from the pool (or a new one); null when none can be created.
  cudaEvent_t take_event() {
    if (!events_.empty()) {
      cudaEvent_t ev = events_.back();
      events_.pop_back();
      return ev;
    }
    cudaEvent_t ev = nullptr;
    if (cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    return ev;
  }

  // Moves parked blocks whose other-stream events have all completed into their pools.
  void process_pending() {
    for (size_t i = 0; i < pending_.size();) {
      Pending& p = pending_[i];
      bool done = true;
      for (cudaEvent_t ev : p.events) {
        cudaError_t e = cudaEventQuery(ev);
        if (e == cudaErrorNotReady) {
          cudaGetLastError();
          done = false;
          break;
        }
      }
      if (!done) {
        ++i;
        continue;
      }
      events_.insert(events_.end(), p.events.begin(), p.events.end());  // completed: reusable
      const Block& b = blocks_.at(p.ptr);
      free_[{b.stream, b.size}].push_back(p.ptr);
      pending_[i] = std::move(pending_.back());
      pending_.pop_back();
    }
  }

  // Returns every free block to the driver (work still queued on them finishes first; after the
  // synchronisation every parked block's events have completed, so those are released too).
  void release_cached() {
    cudaDeviceSynchronize();
    cudaGetLastError();
    process_pending();
    for (auto& [key, ptrs] : free_) {
      for (void* p : ptrs) {
        cudaFree(p);
        blocks_.erase(p);
        stats_.reserved_bytes -= key.size;
        stats_.cached_bytes -= key.size;
        ++stats_.device_frees;
      }
    }
    free_.clear();
    cudaGetLastError();
  }

  std::mutex mu_;
  std::unordered_map<void*, Block> blocks_;  // every block obtained from cudaMalloc
  std::map<PoolKey, std::vector<void*>> free_;
  std::vector<Pending> pending_;  // freed blocks waiting for other streams' events
  size_t next_sweep_ = 64;
  std::vector<cudaEvent_t> events_;  // completed events, for reuse
  std::map<size_t, uint64_t> class_requests_;
  AllocatorStats stats_;
};

CachingAllocator& allocator() {
  static CachingAllocator* a = new CachingAllocator;  // never destroyed: tensors may outlive statics
  return *a;
}

}  // namespace

void register_allocator() { set_allocator(DeviceType::CUDA, &allocator()); }

AllocatorStats allocator_stats() { return initialized() ? allocator().stats() : AllocatorStats{}; }
std::string allocator_summary() { return allocator().summary(); }
void empty_cache() {
  if (initialized()) allocator().empty_cache();
}
void reset_peak_stats() { allocator().reset_peak(); }

void record_stream(const Tensor& t, const Stream& s) {
  if (!t.device().is_cuda()) fail("record_stream: the tensor is on {}, not a CUDA device", t.device().str());
  if (!t.storage()->data()) return;  // an empty tensor owns no block
  allocator().check_live(t.storage()->data());
  // Every freed block is protected against every stream noted here (see the top of this file), so
  // record_stream only has to make sure the allocator knows the stream: it matters for a stream
  // that was never made current, e.g. a foreign cudaStream_t the caller launches its own kernels on.
  detail::note_stream_used(static_cast<cudaStream_t>(s.handle()));
}

namespace detail {
void* raw_alloc(size_t nbytes) { return allocator().allocate(nbytes); }
void raw_free(void* ptr) { allocator().deallocate(ptr, 0); }
}  // namespace detail

}  // namespace dl::cuda
