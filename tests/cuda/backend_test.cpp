// The CUDA runtime pieces: start-up, the backend switches, the caching allocator, host<->device
// copies, pinned buffers, streams and error reporting.
#include <cstring>
#include <thread>

#include "cuda_test_util.h"

#ifdef DL_WITH_CUDA
#include "cuda/detail.h"
#endif

using namespace dl;
using dl::test::gpu;
using dl::test::to_cpu;
using dl::test::to_gpu;

// ---- switches: host logic, runs everywhere -----------------------------------------------------------

TEST_CASE("backend switch: parse, set, guard and reject malformed specs") {
  const std::string saved = cuda::backends_str();
  cuda::set_backends("gemm:handwritten, conv:library ,batchnorm:hand");
  CHECK(cuda::get_backend(cuda::OpFamily::Gemm) == cuda::Backend::Handwritten);
  CHECK(cuda::get_backend(cuda::OpFamily::Conv) == cuda::Backend::Library);
  CHECK(cuda::get_backend(cuda::OpFamily::BatchNorm) == cuda::Backend::Handwritten);
  CHECK(cuda::backends_str() == "gemm:handwritten,conv:library,batchnorm:handwritten");
  cuda::set_backends("all:library");
  CHECK(cuda::backends_str() == "gemm:library,conv:library,batchnorm:library");
  {
    cuda::BackendGuard g(cuda::OpFamily::Conv, cuda::Backend::Handwritten);
    CHECK(cuda::get_backend(cuda::OpFamily::Conv) == cuda::Backend::Handwritten);
  }
  CHECK(cuda::get_backend(cuda::OpFamily::Conv) == cuda::Backend::Library);
  // malformed specs throw, naming the bad part, and change nothing
  CHECK_THROWS_WITH_AS(cuda::set_backends("gemm:fast"), doctest::Contains("unknown backend 'fast'"), Error);
  CHECK_THROWS_WITH_AS(cuda::set_backends("pool:library"), doctest::Contains("unknown op family 'pool'"), Error);
  CHECK_THROWS_WITH_AS(cuda::set_backends("conv:handwritten,gemm"), doctest::Contains("not family:backend"), Error);
  CHECK(cuda::backends_str() == "gemm:library,conv:library,batchnorm:library");
  cuda::set_backends(saved);
  CHECK(std::string(cuda::to_string(cuda::OpFamily::BatchNorm)) == "batchnorm");
  CHECK(std::string(cuda::to_string(cuda::Backend::Handwritten)) == "handwritten");
  const bool tf32 = cuda::allow_tf32();
  cuda::set_allow_tf32(true);
  CHECK(cuda::allow_tf32());
  cuda::set_allow_tf32(tf32);
}

TEST_CASE("without a GPU the backend says why, and CUDA tensors fail with a clear error") {
  if (cuda::is_available()) {
    CHECK(cuda::initialized());
    CHECK(cuda::unavailable_reason().empty());
    MESSAGE("using GPU: " << cuda::device_name(0));
    return;
  }
  MESSAGE("no GPU: " << cuda::unavailable_reason());
  CHECK_FALSE(cuda::unavailable_reason().empty());
  CHECK(cuda::device_count() == 0);
  CHECK_THROWS_AS(cuda::init(), Error);
  // a pinned buffer still works as plain host memory
  cuda::PinnedBuffer buf(100);
  CHECK_FALSE(buf.is_pinned());
  std::memset(buf.data(), 7, 100);
  CHECK(buf.data_as<uint8_t>()[99] == 7);
}

// ---- everything below needs a GPU -------------------------------------------------------------------

TEST_CASE("copies host <-> device round-trip every dtype, contiguous or not") {
  DL_SKIP_WITHOUT_CUDA();
  Generator g(1);
  for (DType dt : {DType::Float32, DType::Float64, DType::Int64, DType::UInt8}) {
    CAPTURE(dtype_name(dt));
    Tensor x = test::uniform({3, 5, 7}, dt, g, 0, 100);
    Tensor y = to_gpu(x);
    CHECK(y.device() == gpu());
    CHECK_CLOSE(to_cpu(y), x, 0, 0);
    // a non-contiguous source on either side
    Tensor xt = ops::transpose(x, 0, 2);
    CHECK_CLOSE(to_cpu(to_gpu(xt)), xt, 0, 0);
    CHECK_CLOSE(to_cpu(ops::transpose(y, 0, 2)), xt, 0, 0);
    // copy_ into a non-contiguous CUDA view, and across dtypes and devices at once
    Tensor dst = zeros({7, 5, 3}, {DType::Float64, gpu()});
    ops::copy_(ops::transpose(dst, 0, 2), x);
    CHECK_CLOSE(to_cpu(dst), ops::to_dtype(xt, DType::Float64), 0, 0);
  }
  // empty tensors and 0-d tensors
  Tensor e = to_gpu(zeros({0, 3}));
  CHECK(e.numel() == 0);
  CHECK(to_cpu(e).sizes() == Shape{0, 3});
  Tensor s = to_gpu(scalar_tensor(2.5, DType::Float64));
  CHECK(s.item<double>() == 2.5);
}

TEST_CASE("caching allocator: blocks are reused, counted, released, and out of memory is an error") {
  DL_SKIP_WITHOUT_CUDA();
  cuda::synchronize();
  cuda::empty_cache();
  const cuda::AllocatorStats s0 = cuda::allocator_stats();
  CHECK(s0.cached_bytes == 0);
  {
    Tensor a = empty({1000, 1000}, {DType::Float32, gpu()});  // 4 MB
    const cuda::AllocatorStats s1 = cuda::allocator_stats();
    CHECK(s1.allocated_bytes >= s0.allocated_bytes + 4000000);
    CHECK(s1.cache_misses == s0.cache_misses + 1);
  }
  const cuda::AllocatorStats s2 = cuda::allocator_stats();
  CHECK(s2.cached_bytes >= 4000000);
  // the same size class again: served from the cache, no cudaMalloc
  for (int step = 0; step < 5; ++step) {
    Tensor b = empty({1000, 1000}, {DType::Float32, gpu()});
    Tensor c = empty({999, 1001}, {DType::Float32, gpu()});  // 3999999 * 4 bytes: same class
  }
  const cuda::AllocatorStats s3 = cuda::allocator_stats();
  CHECK(s3.cache_misses <= s2.cache_misses + 1);
  CHECK(s3.cache_hits >= s2.cache_hits + 9);
  CHECK(s3.peak_allocated_bytes >= 8000000);
  MESSAGE(cuda::allocator_summary());
  cuda::empty_cache();
  CHECK(cuda::allocator_stats().cached_bytes == 0);
  CHECK(cuda::allocator_stats().reserved_bytes == cuda::allocator_stats().allocated_bytes);
  // size classes: small requests round to 512 bytes, large ones lose at most 1/8
  CHECK(cuda::size_class(1) == 512);
  CHECK(cuda::size_class(513) == 1024);
  for (size_t n : {size_t(3) << 20, size_t(5000001), size_t(123456789)}) {
    CHECK(cuda::size_class(n) >= n);
    CHECK(cuda::size_class(n) <= n + n / 8);
  }
  // far more than the device has: a dl::Error naming the request, never an abort
  CHECK_THROWS_WITH_AS(empty({int64_t(1) << 46}, {DType::Float32, gpu()}), doctest::Contains("CUDA out of memory"),
                       Error);
  Tensor after = ones({10}, {DType::Float32, gpu()});  // the allocator still works
  CHECK(ops::reduce(ops::ReduceOp::Sum, after, {}, false).item<float>() == 10.0f);
}

TEST_CASE("pinned buffers: async copies in both directions, and buffers reused only when done") {
  DL_SKIP_WITHOUT_CUDA();
  const int64_t n = 1 << 20;
  cuda::PinnedBuffer host(n * sizeof(float));
  CHECK(host.is_pinned());
  for (int64_t i = 0; i < n; ++i) host.data_as<float>()[i] = static_cast<float>(i % 1000);
  cuda::Stream s = cuda::Stream::create();
  Tensor dev = empty({n}, {DType::Float32, gpu()});
  cuda::copy_to_device_async(dev, host, s);
  s.synchronize();
  cuda::PinnedBuffer back(n * sizeof(float));
  Tensor doubled = ops::binary_scalar(ops::BinaryOp::Mul, dev, 2.0);  // default stream, after the sync
  cuda::synchronize();
  cuda::copy_to_host_async(back, doubled, s);
  s.synchronize();
  for (int64_t i : {int64_t(0), int64_t(999), n - 1}) CHECK(back.data_as<float>()[i] == 2.0f * static_cast<float>(i % 1000));
  // a too-small buffer and a CPU tensor are refused with messages
  cuda::PinnedBuffer tiny(16);
  CHECK_THROWS_WITH_AS(cuda::copy_to_device_async(dev, tiny, s), doctest::Contains("pinned buffer holds 16"), Error);
  CHECK_THROWS_WITH_AS(cuda::copy_to_host_async(back, zeros({4}), s), doctest::Contains("expected a CUDA tensor"),
                       Error);
  // moving a buffer keeps its memory
  void* p = back.data();
  cuda::PinnedBuffer moved = std::move(back);
  CHECK(moved.data() == p);
  CHECK(back.data() == nullptr);
  cuda::empty_pinned_cache();
}

TEST_CASE("streams: kernels follow the current stream, wait() and record_stream order the work") {
  DL_SKIP_WITHOUT_CUDA();
  cuda::Stream s1 = cuda::Stream::create(), s2 = cuda::Stream::create();
  CHECK_FALSE(s1.is_default());
  CHECK(cuda::current_stream().is_default());
  Tensor x = to_gpu(arange(0.0, 100000.0, 1.0, DType::Float32));
  Tensor y;
  {
    cuda::StreamGuard guard(s1);
    CHECK(cuda::current_stream() == s1);
    s1.wait(cuda::Stream());  // x was written on the default stream
    y = ops::binary_scalar(ops::BinaryOp::Mul, x, 3.0);
    cuda::record_stream(x, s1);
  }
  CHECK(cuda::current_stream().is_default());
  cuda::Stream().wait(s1);  // the default stream now waits for y
  Tensor z = ops::binary_scalar(ops::BinaryOp::Add, y, 1.0);
  CHECK(ops::reduce(ops::ReduceOp::Max, z, {}, false).item<float>() == 3.0f * 99999.0f + 1.0f);
  s2.synchronize();
  CHECK(s1.query());
  // the current stream is per host thread
  bool other_thread_default = false;
  {
    cuda::StreamGuard guard(s2);
    std::thread t([&] { other_thread_default = cuda::current_stream().is_default(); });
    t.join();
  }
  CHECK(other_thread_default);
}

TEST_CASE("streams: a block freed while another stream still reads it is not reused early, without record_stream") {
  DL_SKIP_WITHOUT_CUDA();
  // `side` is made to lag behind long GEMMs on `slow`; it then reads x, and x is freed on the host
  // before `side` has run. No record_stream: the allocator must keep x's block out of the default
  // stream's pool until `side` is done, or the fill below would overwrite x before `side` reads it.
  cuda::Stream slow = cuda::Stream::create(), side = cuda::Stream::create();
  const int64_t n = int64_t(1) << 20;
  const TensorOptions f32_gpu{DType::Float32, gpu()};
  Tensor a = full({4096, 4096}, 1e-3, f32_gpu);  // (4096, 4096), default stream
  Tensor y;
  const void* x_block = nullptr;
  {
    Tensor x = to_gpu(arange(0.0, static_cast<double>(n), 1.0, DType::Float32));  // (n), default stream
    x_block = x.raw_data();
    {
      cuda::StreamGuard guard(slow);
      slow.wait(cuda::Stream());  // a was written on the default stream
      Tensor big = a;
      for (int i = 0; i < 4; ++i) big = ops::matmul(big, a);  // ~0.5 TFLOP: milliseconds of work
    }
    cuda::StreamGuard guard(side);
    side.wait(slow);
    side.wait(cuda::Stream());  // x was written on the default stream
    y = ops::binary_scalar(ops::BinaryOp::Mul, x, 2.0);  // (n), queued behind the GEMMs
  }  // x freed here; `side` has not read it yet
  Tensor z = empty({n}, f32_gpu);  // x's size class, on the default stream
  if (!side.query())
    CHECK_MESSAGE(z.raw_data() != x_block, "x's block was handed out while the side stream still had to read it");
  else
    MESSAGE("the side stream finished before the check: the block-identity check was not exercised");
  ops::fill_(z, -1.0);
  cuda::Stream().wait(side);
  Tensor expect = ops::binary_scalar(ops::BinaryOp::Mul, arange(0.0, static_cast<double>(n), 1.0, DType::Float32), 2.0);
  CHECK_GPU_CLOSE(y, expect, 0.0, 0.0);
  cuda::synchronize();
}

TEST_CASE("DL_CUDA_CHECK names the failed call, the error and the place (with or without a GPU)") {
#ifdef DL_WITH_CUDA
  bool threw = false;
  try {
    DL_CUDA_CHECK(cudaSetDevice(1 << 20));
  } catch (const Error& e) {
    threw = true;
    const std::string msg = e.what();
    CHECK(msg.find("cudaSetDevice(1 << 20)") != std::string::npos);
    CHECK(msg.find("backend_test.cpp") != std::string::npos);
    CHECK(msg.find("CUDA error cudaError") != std::string::npos);  // the error's name
    if (cuda::is_available()) CHECK(msg.find("cudaErrorInvalidDevice") != std::string::npos);
  }
  CHECK(threw);
#else
  DL_SKIP("a build without CUDA has no DL_CUDA_CHECK to test: " << cuda::unavailable_reason());
#endif
}

TEST_CASE("errors: a tensor on another device index is refused and the context survives a failed call") {
  DL_SKIP_WITHOUT_CUDA();
  if (cuda::device_count() == 1) {
    // cuda:1 does not exist here: memory comes from the current device, the kernels refuse it
    CHECK_THROWS_WITH_AS(ops::fill_(empty({4}, {DType::Float32, Device(DeviceType::CUDA, 1)}), 1.0),
                         doctest::Contains("cuda:1"), Error);
  }
#ifdef DL_WITH_CUDA
  CHECK_THROWS_AS([] { DL_CUDA_CHECK(cudaSetDevice(1 << 20)); }(), Error);
#endif
  Tensor ok = ones({3}, {DType::Float32, gpu()});
  CHECK(ops::reduce(ops::ReduceOp::Sum, ok, {}, false).item<float>() == 3.0f);
}
