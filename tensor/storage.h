#pragma once
// Ref-counted storage: a block of bytes on one device, obtained from that device's allocator.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "tensor/device.h"

namespace dl {

// One allocator per device type. CPU: 64-byte aligned; the CUDA backend registers its own.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
};

// The CPU allocator caches freed blocks by size class (see tensor/storage.cpp). Its statistics, and
// a way to give every cached block back to the system:
struct CpuAllocatorStats {
  uint64_t allocations = 0;         // requests so far
  uint64_t cache_hits = 0;          // served from a cached block
  uint64_t system_allocations = 0;  // served by the system
  uint64_t system_frees = 0;        // blocks given back to the system
  size_t in_use_bytes = 0;          // held by live tensors (rounded to size classes)
  size_t peak_in_use_bytes = 0;
  size_t cached_bytes = 0;          // free blocks kept for reuse
  size_t cache_limit_bytes = 0;     // 0: caching is off
  std::string str() const;          // one line for a log
};
CpuAllocatorStats cpu_allocator_stats();
size_t cpu_allocator_release_cached();           // frees every cached block; returns the bytes freed
void set_cpu_allocator_cache_limit(size_t bytes);  // 0 turns caching off (and frees the cache)

Allocator* get_allocator(DeviceType type);          // throws when no allocator is registered
void set_allocator(DeviceType type, Allocator* a);  // backends register themselves at start-up

// Copies nbytes between (possibly different) devices. The CPU<->CPU copy is memcpy; backends
// register the others.
using CopyBytesFn = void (*)(void* dst, Device dst_dev, const void* src, Device src_dev, size_t n);
void set_copy_bytes(DeviceType a, DeviceType b, CopyBytesFn fn);
void copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t n);

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
};

using StoragePtr = std::shared_ptr<Storage>;

}  // namespace dl
