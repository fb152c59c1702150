#pragma once
// Internal to cuda/: error checking, the current stream, device properties and scratch memory.
// Included by both the .cu files (compiled by nvcc) and the host .cpp files, so it includes no
// tensor/ or fmt header; the functions that format messages live in cuda/runtime.cu and
// cuda/allocator.cpp.
#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace dl::cuda::detail {

// Throw dl::Error naming the failed call, the error and where it happened.
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void throw_library_error(const char* library, int status, const char* status_name, const char* call,
                                      const char* file, int line);
[[noreturn]] void throw_message(const char* message, const char* file, int line);
// After a kernel launch: cudaGetLastError(), and with DL_CUDA_SYNC=1 a synchronisation, so an
// asynchronous fault is reported at the kernel that caused it.
void check_launch(const char* kernel, const char* file, int line);

cudaStream_t current_stream();  // of the calling host thread
// The streams work may have been queued on: the default stream, every stream made current
// (set_current_stream), and every stream named by an async copy, Stream::wait or record_stream.
// The allocator records an event on each of them (but a block's own) when a block is freed and
// reuses the block only once those events have completed (allocator.cpp). note_stream_used throws
// dl::Error beyond kMaxTrackedStreams distinct streams. used_streams fills out[0, n) and returns n.
constexpr int kMaxTrackedStreams = 64;
void note_stream_used(cudaStream_t s);
int used_streams(cudaStream_t* out);
int current_device();
int sm_count();                 // multiprocessors of the current device
// Thread blocks for a grid-stride loop over `work` items with `threads` threads per block:
// enough to fill the GPU several times, never more than the work needs, never above the limit.
int64_t blocks_for(int64_t work, int threads);

// Raw device memory from the caching allocator for the current stream (kernels' scratch space).
void* raw_alloc(size_t nbytes);
void raw_free(void* ptr);
struct Workspace {
  void* ptr = nullptr;
  explicit Workspace(size_t nbytes) : ptr(nbytes ? raw_alloc(nbytes) : nullptr) {}
  ~Workspace() {
    if (ptr) raw_free(ptr);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  template <typename T> T* as() const { return static_cast<T*>(ptr); }
};

}  // namespace dl::cuda::detail

#define DL_CUDA_CHECK(expr)                                                                   \
  do {                                                                                        \
    cudaError_t dl_cuda_err_ = (expr);                                                        \
    if (dl_cuda_err_ != cudaSuccess)                                                          \
      ::dl::cuda::detail::throw_cuda_error(dl_cuda_err_, #expr, __FILE__, __LINE__);          \
  } while (0)

#define DL_CUDA_LAUNCH_CHECK(kernel) ::dl::cuda::detail::check_launch(kernel, __FILE__, __LINE__)

// Internal invariant in code that cannot use fmt (the .cu files): throws dl::Error.
#define DL_CUDA_REQUIRE(cond, message)                                                       \
  do {                                                                                        \
    if (!(cond)) ::dl::cuda::detail::throw_message(message " (check `" #cond "` failed)", __FILE__, __LINE__); \
  } while (0)
