#pragma once
// Ref-counted storage: a block of bytes on one device, obtained from that device's allocator.
#include <cstddef>
#include <memory>

#include "tensor/device.h"

namespace dl {

// One allocator per device type. CPU: 64-byte aligned; the CUDA backend registers its own.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
};

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
