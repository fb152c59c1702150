#include "tensor/cpu/scratch.h"

#include <cstdlib>

#include "tensor/error.h"

namespace dl::cpu {
namespace {

struct Slots {
  void* ptr[kScratchSlots] = {};
  size_t cap[kScratchSlots] = {};
  ~Slots() {
    for (void* p : ptr) std::free(p);
  }
};
thread_local Slots t_slots;

}  // namespace

void* thread_scratch_bytes(int slot, size_t bytes) {
  DL_CHECK(slot >= 0 && slot < kScratchSlots, "thread_scratch: slot {} out of range", slot);
  Slots& s = t_slots;
  if (bytes <= s.cap[slot] && s.ptr[slot]) return s.ptr[slot];
  // grow by at least a quarter, so a slowly growing request does not reallocate every call
  size_t want = bytes + bytes / 4;
  want = (want + 63) / 64 * 64;
  if (want < 4096) want = 4096;
  void* p = std::aligned_alloc(64, want);
  if (!p) throw std::bad_alloc();  // callers run outside parallel regions or catch and rethrow
  std::free(s.ptr[slot]);
  s.ptr[slot] = p;
  s.cap[slot] = want;
  return p;
}

size_t thread_scratch_held() {
  size_t n = 0;
  for (size_t c : t_slots.cap) n += c;
  return n;
}

}  // namespace dl::cpu
