// Device discovery, start-up (dl::cuda::init) and the error reporting every CUDA call goes through.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include <cuda_runtime.h>
#include <fmt/format.h>

#include "cuda/cuda.h"
#include "cuda/detail.h"
#include "cuda/host.h"
#include "tensor/dispatch.h"
#include "tensor/error.h"

namespace dl::cuda {

// registration, one per area (allocator.cpp, copy.cpp; the kernels: cuda/host.h register_kernels)
void register_allocator();
void register_copies();

bool built_with_cuda() { return true; }

int device_count() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the error so later calls start clean
    return 0;
  }
  return n;
}

namespace {
std::once_flag g_init_once;
std::atomic<bool> g_initialized{false};
std::string g_init_error;  // why init() failed, if it did
}  // namespace

bool is_available() {
  if (device_count() <= 0) return false;
  try {
    init();
  } catch (const Error&) {
    return false;
  }
  return true;
}

std::string unavailable_reason() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return fmt::format("no usable CUDA device: {} ({})", cudaGetErrorString(err), cudaGetErrorName(err));
  }
  if (n == 0) return "no CUDA device found";
  if (!g_init_error.empty()) return "the CUDA backend failed to start: " + g_init_error;
  return "";
}

std::string device_name(int index) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
    cudaGetLastError();
    return "unknown";
  }
  return prop.name;
}

void init() {
  if (g_initialized) return;
  std::call_once(g_init_once, [] {
    try {
      if (device_count() <= 0) fail("dl::cuda::init: {}", unavailable_reason());
      DL_CUDA_CHECK(cudaFree(nullptr));  // creates the context now, not inside the first kernel
      register_allocator();
      register_copies();
      host::register_kernels(kernels(DeviceType::CUDA));
      g_initialized = true;
    } catch (const Error& e) {
      g_init_error = e.what();
    }
  });
  if (!g_initialized) fail("dl::cuda::init: the CUDA backend could not start: {}", g_init_error);
}

bool initialized() { return g_initialized; }

void synchronize() {
  if (!g_initialized) return;
  DL_CUDA_CHECK(cudaDeviceSynchronize());
}

namespace detail {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  cudaGetLastError();  // clears a non-sticky error; a sticky one (a kernel fault) stays
  std::string msg = fmt::format("CUDA error {} ({}) from `{}` at {}:{}", cudaGetErrorName(err),
                                cudaGetErrorString(err), call, file, line);
  if (err == cudaErrorMemoryAllocation) msg += "; the GPU is out of memory";
  if (err == cudaErrorIllegalAddress || err == cudaErrorLaunchFailure || err == cudaErrorAssert)
    msg += "; the CUDA context is now unusable (rerun with DL_CUDA_SYNC=1 to find the kernel that faulted)";
  throw Error(msg);
}

[[noreturn]] void throw_library_error(const char* library, int status, const char* status_name, const char* call,
                                      const char* file, int line) {
  throw Error(fmt::format("{} error {} ({}) from `{}` at {}:{}", library, status_name, status, call, file, line));
}

[[noreturn]] void throw_message(const char* message, const char* file, int line) {
  throw Error(fmt::format("{} ({}:{})", message, file, line));
}

void check_launch(const char* kernel, const char* file, int line) {
  static const bool sync = [] {
    const char* e = std::getenv("DL_CUDA_SYNC");
    return e && std::string(e) == "1";
  }();
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && sync) err = cudaStreamSynchronize(current_stream());
  if (err != cudaSuccess) throw_cuda_error(err, kernel, file, line);
}

int current_device() {
  int d = 0;
  DL_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

int sm_count() {
  static const int n = [] {
    int v = 0;
    DL_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, current_device()));
    return v > 0 ? v : 1;
  }();
  return n;
}

int64_t blocks_for(int64_t work, int threads) {
  if (work <= 0) return 1;
  const int64_t needed = (work + threads - 1) / threads;
  const int64_t enough = static_cast<int64_t>(sm_count()) * (2048 / threads) * 4;  // 4 waves of full occupancy
  const int64_t b = needed < enough ? needed : enough;
  return b < 1 ? 1 : b;
}

}  // namespace detail
}  // namespace dl::cuda
