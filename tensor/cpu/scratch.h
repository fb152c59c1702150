#pragma once
// Per-thread scratch memory for CPU kernels (im2col columns, packed tiles, partial sums): each
// thread keeps a few slots, each grown to the largest size asked of it and kept between calls, so a
// kernel called every iteration allocates (and page-faults) only the first time. 64-byte aligned.
// A pointer stays valid until the same thread asks the same slot for more bytes.
#include <cstddef>

namespace dl::cpu {

constexpr int kScratchSlots = 19;

void* thread_scratch_bytes(int slot, size_t bytes);

template <typename T>
T* thread_scratch(int slot, size_t count) {
  return static_cast<T*>(thread_scratch_bytes(slot, count * sizeof(T)));
}

// Bytes held by the calling thread's slots (for tests and statistics).
size_t thread_scratch_held();

}  // namespace dl::cpu
