#pragma once
// The CUDA backend's public entry points (docs/cuda.md). In a build without CUDA the same
// functions exist and report that no GPU can be used, so callers (tests, --device cuda) need no
// #ifdef. This header includes no CUDA header: streams travel as opaque handles.
//
// Start-up: dl::cuda::init() registers the CUDA allocator, the host<->device copies and the CUDA
// row of the kernel table (tensor/dispatch.h). is_available() calls it the first time it finds a
// GPU, so `if (dl::cuda::is_available())` before creating CUDA tensors is enough; code that
// parses `--device cuda` calls init() (it throws, saying why, when no GPU is usable).
// One device: tensors live on the current device (cuda:0 unless CUDA_VISIBLE_DEVICES says
// otherwise); a tensor on another index is refused with an error.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace dl {
class Tensor;
}

namespace dl::cuda {

// ---- discovery and start-up ---------------------------------------------------------------------
bool built_with_cuda();
int device_count();                // 0 when no usable GPU (or no CUDA build)
bool is_available();               // device_count() > 0; initialises the backend the first time
std::string unavailable_reason();  // why is_available() is false, for skip messages and errors
std::string device_name(int index);
void init();                       // idempotent and thread-safe; throws dl::Error when no GPU is usable
bool initialized();
void synchronize();                // waits for all work queued on the device

// ---- streams ------------------------------------------------------------------------------------
// Kernels run on the calling thread's current stream (the legacy default stream unless a
// StreamGuard says otherwise). Streams from Stream::create() come from a fixed pool and are never
// destroyed, so a handle stays valid for the life of the program.
class Stream {
 public:
  Stream() = default;                   // the default stream
  static Stream create();               // a non-blocking stream from the pool (round robin)
  static Stream from_handle(void* h) { return Stream(h); }  // wraps a cudaStream_t (not owned)
  void* handle() const { return h_; }   // cudaStream_t
  bool is_default() const { return h_ == nullptr; }
  void synchronize() const;             // waits for this stream's work
  bool query() const;                   // true when all of its work has finished
  void wait(const Stream& other) const;  // later work here waits for what `other` has queued so far
  bool operator==(const Stream& o) const { return h_ == o.h_; }

 private:
  explicit Stream(void* h) : h_(h) {}
  void* h_ = nullptr;
};
Stream current_stream();
void set_current_stream(const Stream& s);  // for the calling host thread
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& s) : saved_(current_stream()) { set_current_stream(s); }
  ~StreamGuard() { set_current_stream(saved_); }
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  Stream saved_;
};

// ---- the caching device allocator -------------------------------------------------------------------
// Freed blocks go back to a pool per (stream, size class) and serve the next request of that
// class on that stream without cudaMalloc; a training loop that allocates the same shapes every
// step stops calling cudaMalloc after its first step. A block freed while other streams are in
// use waits until the work queued on them at free time has finished (see record_stream). When cudaMalloc fails, the cache is
// released and the request retried once before an out-of-memory dl::Error.
struct AllocatorStats {
  uint64_t allocated_bytes = 0;       // in live tensors (rounded to their size class)
  uint64_t peak_allocated_bytes = 0;  // since start or reset_peak_stats()
  uint64_t reserved_bytes = 0;        // obtained from cudaMalloc and not yet released
  uint64_t cached_bytes = 0;          // reserved but free, waiting in the pools
  uint64_t allocations = 0, frees = 0;
  uint64_t cache_hits = 0, cache_misses = 0;  // misses = calls to cudaMalloc
  uint64_t device_frees = 0;                  // calls to cudaFree
  uint64_t oom_retries = 0;                   // cache released after a failed cudaMalloc
};
AllocatorStats allocator_stats();
std::string allocator_summary();  // a few readable lines, incl. the busiest size classes
void empty_cache();               // returns every cached (free) block to the driver
void reset_peak_stats();
// Cross-stream use is safe without this call: when a block is freed, the allocator records an
// event on every other stream work has been queued on (streams made current, streams named by the
// async copies below or by record_stream) and reuses the block only after those events complete.
// record_stream(t, s) is needed only for a stream the backend never saw, e.g. a foreign
// cudaStream_t (Stream::from_handle) on which the caller launches its own kernels on t's memory.
// Throws dl::Error for a tensor not on the GPU or (as set_current_stream) beyond 64 distinct streams.
void record_stream(const Tensor& t, const Stream& s);
size_t size_class(size_t nbytes);  // the rounded size a request of nbytes occupies

// ---- pinned (page-locked) host buffers, for the data loader ------------------------------------
// Copies from pinned memory run asynchronously and overlap with kernels. Buffers come from a
// cache too (page-locking is slow); a buffer used by an async copy is not handed out again until
// that copy has finished. Without CUDA (or without a GPU) a PinnedBuffer is ordinary host memory
// and is_pinned() is false, so a loader can use it unconditionally.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t nbytes);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& o) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void* data() const { return data_; }
  template <typename T> T* data_as() const { return static_cast<T*>(data_); }
  size_t size() const { return size_; }
  bool is_pinned() const { return pinned_; }
  // Marks the buffer busy until the work queued so far on s has finished (the async copies call it).
  void record_use(const Stream& s);

 private:
  void release();
  void* data_ = nullptr;
  size_t size_ = 0;
  bool pinned_ = false;
  void* event_ = nullptr;  // cudaEvent_t of the last async use, or null
};
// dst (a contiguous CUDA tensor) <- the first dst.nbytes of src, queued on s; returns at once.
void copy_to_device_async(const Tensor& dst, PinnedBuffer& src, const Stream& s = current_stream());
// dst <- src (a contiguous CUDA tensor), queued on s; read dst after s.synchronize().
void copy_to_host_async(PinnedBuffer& dst, const Tensor& src, const Stream& s = current_stream());
void empty_pinned_cache();

// ---- hand-written or library kernels, per op family ---------------------------------------------------
// Library: cuBLAS for GEMM, cuDNN for convolution and batch norm (default). Handwritten: this
// backend's own kernels (cuda/*.cu). Set in code or with the environment variable
// DL_CUDA_BACKEND="gemm:handwritten,conv:library,batchnorm:handwritten" (read on first use;
// "all:handwritten" sets every family). Without cuDNN in the build, conv and batch norm always
// run hand-written. TF32 (tensor-core float32 with a 10-bit mantissa) is off unless
// set_allow_tf32(true) or DL_CUDA_TF32=1; it affects cuBLAS and cuDNN float32 GEMMs and
// convolutions only (autocast's bfloat16/float16 ones use tensor cores regardless; docs/cuda.md).
enum class OpFamily { Gemm, Conv, BatchNorm };
enum class Backend { Library, Handwritten };
constexpr int kNumOpFamilies = 3;
void set_backend(OpFamily family, Backend backend);
Backend get_backend(OpFamily family);
void set_backends(const std::string& spec);  // the DL_CUDA_BACKEND syntax; throws dl::Error when malformed
std::string backends_str();                  // "gemm:library,conv:library,batchnorm:library"
const char* to_string(OpFamily family);
const char* to_string(Backend backend);
void set_allow_tf32(bool on);
bool allow_tf32();
bool has_cudnn();  // this build links cuDNN

// Sets a family's backend for a scope (tests run every op under both).
class BackendGuard {
 public:
  BackendGuard(OpFamily f, Backend b) : family_(f), saved_(get_backend(f)) { set_backend(f, b); }
  ~BackendGuard() { set_backend(family_, saved_); }
  BackendGuard(const BackendGuard&) = delete;
  BackendGuard& operator=(const BackendGuard&) = delete;

 private:
  OpFamily family_;
  Backend saved_;
};

}  // namespace dl::cuda
