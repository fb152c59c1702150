#pragma once
// Shared by the CUDA suites (tests/cuda/*.cpp, ctest label `cuda`): every case starts with
// DL_SKIP_WITHOUT_CUDA(), which ends it as skipped (DL_SKIP: ctest counts it as skipped, with the
// reason) when no GPU can be used: on CPU-only machines and in builds without CUDA.
//
// The pattern of a check: run the same op on a CPU tensor and on its copy on the GPU, and
// compare the GPU result (copied back) with the CPU one, with a tolerance next to the tensors.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "cuda/cuda.h"
#include "tensor/ops.h"
#include "test_util.h"

#ifndef DL_TEST_FAKE_GPU
#define DL_SKIP_WITHOUT_CUDA()                                          \
  do {                                                                  \
    if (!::dl::cuda::is_available())                                    \
      DL_SKIP("no GPU: " << ::dl::cuda::unavailable_reason());          \
  } while (0)
#else
// A check of the suites themselves on a machine without a GPU: compiled with -DDL_TEST_FAKE_GPU
// the "GPU" is the CPU, so every comparison is CPU against CPU and must pass; what fails is a
// mistake in the test (a shape, an expectation), not in the CUDA backend.
#define DL_SKIP_WITHOUT_CUDA() \
  do {                         \
  } while (0)
#endif

namespace dl::test {

#ifndef DL_TEST_FAKE_GPU
inline Device gpu() { return Device(DeviceType::CUDA, 0); }
#else
inline Device gpu() { return kCPU; }
#endif
inline Tensor to_gpu(const Tensor& t) { return ops::to_device(t, gpu()); }
inline Tensor to_cpu(const Tensor& t) { return ops::to_device(t, kCPU); }

// Uniform values in [lo, hi) of any dtype (integers: rounded down), drawn on the CPU.
inline Tensor uniform(const Shape& shape, DType dtype, Generator& g, double lo = -2.0, double hi = 2.0) {
  Tensor u = rand(shape, DType::Float64, &g);
  Tensor v = ops::binary_scalar(ops::BinaryOp::Add, ops::binary_scalar(ops::BinaryOp::Mul, u, hi - lo), lo);
  if (!is_floating(dtype)) {
    // floor, without a floor op: shift to non-negative, truncate through int64, shift back
    const double shift = lo < 0 ? -lo + 1 : 0;
    Tensor pos = ops::to_dtype(ops::binary_scalar(ops::BinaryOp::Add, v, shift), DType::Int64);
    v = ops::binary_scalar(ops::BinaryOp::Sub, pos, static_cast<double>(static_cast<int64_t>(shift)));
  }
  return ops::to_dtype(v, dtype);
}

inline std::string dtype_label(DType t) { return std::string(dtype_name(t)); }

// Both GEMM / conv / batch-norm backends, for loops in the tests.
inline const std::vector<cuda::Backend>& all_backends() {
  static const std::vector<cuda::Backend> b{cuda::Backend::Library, cuda::Backend::Handwritten};
  return b;
}

// Sets every op family to one backend for a scope.
struct AllBackends {
  cuda::BackendGuard gemm, conv, bn;
  explicit AllBackends(cuda::Backend b)
      : gemm(cuda::OpFamily::Gemm, b), conv(cuda::OpFamily::Conv, b), bn(cuda::OpFamily::BatchNorm, b) {}
};

}  // namespace dl::test

// CHECK_GPU_CLOSE(gpu_result, cpu_result, rtol, atol): copies the first to the CPU and compares.
#define CHECK_GPU_CLOSE(gpu_t, cpu_t, rtol, atol) CHECK_CLOSE(::dl::test::to_cpu(gpu_t), (cpu_t), (rtol), (atol))
