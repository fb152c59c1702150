#include "tensor/storage.h"

#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>
#include <cmath>
#include <cstring>
#include <mutex>

#include "tensor/error.h"
#include "tensor/generator.h"

namespace dl {

Device Device::parse(const std::string& s) {
  if (s == "cpu") return kCPU;
  if (s == "cuda") return Device(DeviceType::CUDA, 0);
  if (s.rfind("cuda:", 0) == 0) {
    try {
      size_t used = 0;
      int idx = std::stoi(s.substr(5), &used);
      if (used == s.size() - 5 && idx >= 0) return Device(DeviceType::CUDA, idx);
    } catch (const std::exception&) {
    }
  }
  fail("unknown device '{}': expected 'cpu', 'cuda' or 'cuda:N'", s);
}

namespace {

// The CPU caching allocator. Tensors of the same sizes come and go every iteration of a training
// loop; handing each one back to the system and asking again costs a page fault per 4 KB page on
// first touch (it dominated a 38 MB output on this VM), so freed blocks are kept in free lists by
// size class and handed out again.
//   size classes: multiples of 64 bytes up to 512 bytes, then 8 classes per power of two (at most
//     12.5% rounding); a block serves only requests of its own class.
//   blocks of at least kHugeBlock bytes are mmap'ed 2 MB-aligned with MADV_HUGEPAGE (fewer faults and
//     TLB misses for large activations), smaller ones come from aligned_alloc; all 64-byte aligned.
//   bounded: the cache never holds more than its limit (DL_CPU_CACHE_MB, default 2048), and before
//     the system is asked for a new block, cached blocks are released until what is in use plus what
//     is cached plus the new block fits under twice the largest amount ever in use at once, so caching
//     at most doubles the process's own peak demand. (Exactly the peak is too tight: a training step
//     needs, per size class, the most blocks of that class alive at once, and those maxima fall at
//     different times; with a budget of 1x the peak, every step evicted and re-faulted blocks.)
//   DL_CPU_CACHE=0 turns caching off; DL_CPU_ALLOC_STATS=1 prints the statistics at exit.
//   Thread-safe: one mutex around the free lists (a lock per allocation, never held during a
//   system call that could block for long, except munmap/free of evicted blocks).
constexpr size_t kHugeBlock = size_t{4} << 20;
constexpr size_t kHugePage = size_t{2} << 20;

size_t size_class(size_t nbytes) {
  if (nbytes <= 512) return (nbytes + 63) / 64 * 64;
  const int top = 63 - __builtin_clzll(static_cast<unsigned long long>(nbytes));  // 2^top <= nbytes
  const size_t step = size_t{1} << (top - 3);
  size_t c = (nbytes + step - 1) / step * step;
  if (c >= kHugeBlock) c = (c + kHugePage - 1) / kHugePage * kHugePage;  // whole huge pages
  return c;
}

void* system_alloc(size_t bytes) {
  if (bytes >= kHugeBlock) {
    // over-allocate by one huge page and trim, so the block starts on a 2 MB boundary
    const size_t len = bytes + kHugePage;
    void* raw = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    const uintptr_t base = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t start = (base + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1);
    if (start > base) munmap(raw, start - base);
    const uintptr_t end = start + bytes, raw_end = base + len;
    if (raw_end > end) munmap(reinterpret_cast<void*>(end), raw_end - end);
    madvise(reinterpret_cast<void*>(start), bytes, MADV_HUGEPAGE);  // advisory: failure is harmless
    return reinterpret_cast<void*>(start);
  }
  return std::aligned_alloc(64, bytes);
}

void system_free(void* p, size_t bytes) {
  if (bytes >= kHugeBlock)
    munmap(p, bytes);
  else
    std::free(p);
}

size_t env_size(const char* name, size_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const unsigned long long x = std::strtoull(v, &end, 10);
  return end && *end == '\0' ? static_cast<size_t>(x) : fallback;
}

class CpuAllocator final : public Allocator {
 public:
  CpuAllocator() {
    enabled_ = env_size("DL_CPU_CACHE", 1) != 0;
    limit_ = env_size("DL_CPU_CACHE_MB", 2048) << 20;
    if (env_size("DL_CPU_ALLOC_STATS", 0) != 0)
      std::atexit([] { std::fprintf(stderr, "%s\n", cpu_allocator_stats().str().c_str()); });
  }

  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    if (nbytes > (size_t{1} << 60)) fail("out of memory: could not allocate {} bytes on the CPU", nbytes);
    const size_t bytes = size_class(nbytes);
    std::vector<std::pair<void*, size_t>> evicted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.allocations++;
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        stats_.cached_bytes -= bytes;
        stats_.cache_hits++;
        note_in_use(bytes);
        return p;
      }
      // a miss: make room so that in use + cached + this block stays under twice the peak demand
      const size_t in_use_after = stats_.in_use_bytes + bytes;
      const size_t budget = std::max(2 * stats_.peak_in_use_bytes, in_use_after);
      if (in_use_after + stats_.cached_bytes > budget) evict_locked(in_use_after + stats_.cached_bytes - budget, evicted);
    }
    for (auto [p, b] : evicted) system_free(p, b);
    void* p = system_alloc(bytes);
    if (!p) {
      release_cached();  // give every cached block back and try once more before failing
      p = system_alloc(bytes);
    }
    if (!p) fail("out of memory: could not allocate {} bytes on the CPU", nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.system_allocations++;
    note_in_use(bytes);
    return p;
  }

  void deallocate(void* ptr, size_t nbytes) override {
    if (!ptr) return;
    const size_t bytes = size_class(nbytes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.in_use_bytes -= bytes;
      if (enabled_ && stats_.cached_bytes + bytes <= limit_) {
        free_[bytes].push_back(ptr);
        stats_.cached_bytes += bytes;
        return;
      }
      stats_.system_frees++;
    }
    system_free(ptr, bytes);
  }

  size_t release_cached() {
    std::vector<std::pair<void*, size_t>> evicted;
    size_t freed = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      freed = stats_.cached_bytes;
      evict_locked(stats_.cached_bytes, evicted);
    }
    for (auto [p, b] : evicted) system_free(p, b);
    return freed;
  }

  CpuAllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    CpuAllocatorStats s = stats_;
    s.cache_limit_bytes = enabled_ ? limit_ : 0;
    return s;
  }

  void set_limit(size_t bytes) {
    std::vector<std::pair<void*, size_t>> evicted;
    {
      std::lock_guard<std::mutex> lock(mu_);
      limit_ = bytes;
      enabled_ = bytes > 0;
      if (stats_.cached_bytes > limit_) evict_locked(stats_.cached_bytes - limit_, evicted);
    }
    for (auto [p, b] : evicted) system_free(p, b);
  }

 private:
  void note_in_use(size_t bytes) {
    stats_.in_use_bytes += bytes;
    stats_.peak_in_use_bytes = std::max(stats_.peak_in_use_bytes, stats_.in_use_bytes);
  }
  // Takes at least `need` bytes of cached blocks out of the lists (largest classes first: fewest
  // system calls); the caller frees them after dropping the lock.
  void evict_locked(size_t need, std::vector<std::pair<void*, size_t>>& out) {
    size_t got = 0;
    for (auto it = free_.rbegin(); it != free_.rend() && got < need; ++it) {
      auto& list = it->second;
      while (!list.empty() && got < need) {
        out.emplace_back(list.back(), it->first);
        list.pop_back();
        got += it->first;
        stats_.cached_bytes -= it->first;
        stats_.system_frees++;
      }
    }
  }

  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;  // size class -> cached blocks
  CpuAllocatorStats stats_;
  size_t limit_ = 0;
  bool enabled_ = true;
};

CpuAllocator& cpu_allocator() {
  static CpuAllocator* a = new CpuAllocator;  // never destroyed: tensors may outlive static destructors
  return *a;
}

struct Registry {
  std::array<Allocator*, kNumDeviceTypes> allocators{};
  std::array<std::array<CopyBytesFn, kNumDeviceTypes>, kNumDeviceTypes> copies{};
  Registry() {
    allocators[0] = &cpu_allocator();
    copies[0][0] = [](void* dst, Device, const void* src, Device, size_t n) {
      if (n) std::memcpy(dst, src, n);
    };
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

CpuAllocatorStats cpu_allocator_stats() { return cpu_allocator().stats(); }
size_t cpu_allocator_release_cached() { return cpu_allocator().release_cached(); }
void set_cpu_allocator_cache_limit(size_t bytes) { cpu_allocator().set_limit(bytes); }

std::string CpuAllocatorStats::str() const {
  const double mb = 1.0 / (1 << 20);
  return fmt::format(
      "CPU allocator: {} allocations, {} served from the cache ({:.1f}%), {} from the system, {} blocks returned; "
      "in use {:.1f} MB (peak {:.1f} MB), cached {:.1f} MB (limit {:.0f} MB)",
      allocations, cache_hits, allocations ? 100.0 * static_cast<double>(cache_hits) / static_cast<double>(allocations) : 0.0,
      system_allocations, system_frees, static_cast<double>(in_use_bytes) * mb, static_cast<double>(peak_in_use_bytes) * mb,
      static_cast<double>(cached_bytes) * mb, static_cast<double>(cache_limit_bytes) * mb);
}

Allocator* get_allocator(DeviceType type) {
  Allocator* a = registry().allocators[static_cast<int>(type)];
  if (!a)
    fail("no allocator for device type {}: this build has no {} support, or it was not initialised",
         static_cast<int>(type), type == DeviceType::CUDA ? "CUDA" : "such");
  return a;
}

void set_allocator(DeviceType type, Allocator* a) { registry().allocators[static_cast<int>(type)] = a; }

void set_copy_bytes(DeviceType a, DeviceType b, CopyBytesFn fn) {
  registry().copies[static_cast<int>(a)][static_cast<int>(b)] = fn;
}

void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t n) {
  CopyBytesFn fn = registry().copies[static_cast<int>(dst_dev.type)][static_cast<int>(src_dev.type)];
  if (!fn) fail("no copy routine from {} to {} in this build", src_dev.str(), dst_dev.str());
  fn(dst, dst_dev, src, src_dev, n);
}

Storage::Storage(size_t nbytes, Device device)
    : nbytes_(nbytes), device_(device), allocator_(get_allocator(device.type)) {
  data_ = allocator_->allocate(nbytes);
}

Storage::~Storage() {
  if (data_) allocator_->deallocate(data_, nbytes_);
}

// ---- Generator ---------------------------------------------------------------------------------

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

void Generator::manual_seed(uint64_t seed) {
  uint64_t x = seed;
  for (auto& v : s_) v = splitmix64(x);
  has_spare_ = false;
  spare_ = 0.0;
}

uint64_t Generator::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Generator::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

double Generator::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = 0.0;
  while (u1 <= 0.0) u1 = uniform();
  double u2 = uniform();
  double r = std::sqrt(-2.0 * std::log(u1));
  double theta = 2.0 * 3.14159265358979323846 * u2;
  spare_ = r * std::sin(theta);
  has_spare_ = true;
  return r * std::cos(theta);
}

uint64_t Generator::below(uint64_t n) {
  DL_CHECK(n > 0, "Generator::below(0)");
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t v;
  do v = next_u64();
  while (v >= limit);
  return v % n;
}

Generator& default_generator() {
  static Generator g(0x5eed);
  return g;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace dl
