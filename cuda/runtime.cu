// Device discovery through the CUDA runtime.
#include <cuda_runtime.h>

#include <fmt/format.h>

#include "cuda/cuda.h"

namespace dl::cuda {

bool built_with_cuda() { return true; }

int device_count() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  return n;
}

bool is_available() { return device_count() > 0; }

std::string unavailable_reason() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return fmt::format("no usable CUDA device: {} ({})", cudaGetErrorString(err), cudaGetErrorName(err));
  }
  if (n == 0) return "no CUDA device found";
  return "";
}

std::string device_name(int index) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) return "unknown";
  return prop.name;
}

}  // namespace dl::cuda
