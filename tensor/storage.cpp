#include "tensor/storage.h"

#include <array>
#include <cstdlib>
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

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    size_t rounded = (nbytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) fail("out of memory: could not allocate {} bytes on the CPU", nbytes);
    return p;
  }
  void deallocate(void* ptr, size_t) override { std::free(ptr); }
};

struct Registry {
  std::array<Allocator*, kNumDeviceTypes> allocators{};
  std::array<std::array<CopyBytesFn, kNumDeviceTypes>, kNumDeviceTypes> copies{};
  Registry() {
    static CpuAllocator cpu;
    allocators[0] = &cpu;
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
