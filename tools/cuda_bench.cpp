// bench_cuda: what the CUDA backend's kernels achieve, hand-written against the libraries.
//   SGEMM 8192^3         hand-written FP32, cuBLAS FP32, cuBLAS TF32, autocast BF16 / FP16 (16-bit
//                        operands, float32 sums and output, the operand rounding included) (TFLOP/s);
//                        DGEMM 4096^3
//   ResNet-18 convs      each distinct conv of ResNet-18 at 224x224 (batch 32, or 8 with --quick):
//                        forward, backward-input, backward-weight, cuDNN (FP32, TF32, autocast BF16
//                        and FP16 with their operand rounding and output widening) vs
//                        hand-written im2col + GEMM (ms and TFLOP/s)
//   a residual block     conv-bn-relu-conv-bn + skip, forward and backward through autograd
//   memory-bound ops     add, sum, softmax, batch norm (GB/s)
// Usage: bench_cuda [--quick]. Times are medians of a few runs after a warm-up (the warm-up
// includes cuDNN's algorithm search). Prints "bench_cuda: no GPU" and exits 0 without one.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/functional.h"
#include "cuda/cuda.h"
#include "tensor/nn_ops.h"
#include "tensor/ops.h"

using namespace dl;

namespace {

const Device kGpu(DeviceType::CUDA, 0);

double median_ms(const std::function<void()>& f, int reps) {
  f();  // warm-up: algorithm searches, allocator pools
  cuda::synchronize();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto s = std::chrono::steady_clock::now();
    f();
    cuda::synchronize();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

Tensor gpu_uniform(const Shape& s, DType dt = DType::Float32) {
  static Generator g(1234);
  Tensor u = rand(s, dt, &g);
  return ops::to_device(ops::binary_scalar(ops::BinaryOp::Sub, u, 0.5), kGpu);
}

void set_all(cuda::Backend b) {
  for (auto f : {cuda::OpFamily::Gemm, cuda::OpFamily::Conv, cuda::OpFamily::BatchNorm}) cuda::set_backend(f, b);
}

// ---- GEMM -------------------------------------------------------------------------------------------

void bench_gemm(bool quick) {
  std::printf("\n== GEMM (square, row-major; TFLOP/s = 2 n^3 / time) ==\n");
  std::printf("  %-34s %8s %10s %10s\n", "kernel", "n", "ms", "TFLOP/s");
  struct Cfg {
    const char* name;
    DType dt;
    cuda::Backend be;
    bool tf32;
    DType gemm = DType::Float32;  // autocast's operand precision
  };
  const std::vector<Cfg> cfgs = {{"hand-written FP32", DType::Float32, cuda::Backend::Handwritten, false},
                                 {"cuBLAS FP32", DType::Float32, cuda::Backend::Library, false},
                                 {"cuBLAS TF32", DType::Float32, cuda::Backend::Library, true},
                                 {"cuBLAS autocast BF16", DType::Float32, cuda::Backend::Library, false, DType::BFloat16},
                                 {"cuBLAS autocast FP16", DType::Float32, cuda::Backend::Library, false, DType::Float16},
                                 {"hand-written FP64", DType::Float64, cuda::Backend::Handwritten, false},
                                 {"cuBLAS FP64", DType::Float64, cuda::Backend::Library, false}};
  for (const Cfg& c : cfgs) {
    const int64_t n = c.dt == DType::Float32 ? (quick ? 4096 : 8192) : (quick ? 2048 : 4096);
    Tensor a = gpu_uniform({n, n}, c.dt), b = gpu_uniform({n, n}, c.dt);
    cuda::set_backend(cuda::OpFamily::Gemm, c.be);
    cuda::set_allow_tf32(c.tf32);
    const double ms = median_ms([&] { ops::matmul(a, b, c.gemm); }, quick ? 3 : 5);
    std::printf("  %-34s %8lld %10.2f %10.2f\n", c.name, static_cast<long long>(n), ms,
                2.0 * n * n * n / (ms * 1e-3) / 1e12);
  }
  cuda::set_allow_tf32(false);
  cuda::set_backend(cuda::OpFamily::Gemm, cuda::Backend::Library);
}

// ---- convolutions -------------------------------------------------------------------------------------

struct ConvShape {
  const char* name;
  int64_t C, H, O, k, stride, pad;
};

void bench_convs(bool quick) {
  const int64_t N = quick ? 8 : 32;
  // every distinct convolution of ResNet-18 at 224 x 224
  const std::vector<ConvShape> shapes = {
      {"conv1 7x7/2 3->64 @224", 3, 224, 64, 7, 2, 3},      {"layer1 3x3 64->64 @56", 64, 56, 64, 3, 1, 1},
      {"layer2.0 3x3/2 64->128 @56", 64, 56, 128, 3, 2, 1}, {"layer2 3x3 128->128 @28", 128, 28, 128, 3, 1, 1},
      {"layer2 down 1x1/2 64->128", 64, 56, 128, 1, 2, 0},  {"layer3 3x3 256->256 @14", 256, 14, 256, 3, 1, 1},
      {"layer4 3x3 512->512 @7", 512, 7, 512, 3, 1, 1},     {"layer4 down 1x1/2 256->512", 256, 14, 512, 1, 2, 0}};
  std::printf("\n== ResNet-18 convolutions, batch %lld, float32 (ms; TFLOP/s in brackets) ==\n",
              static_cast<long long>(N));
  std::printf("  %-28s %-10s %18s %18s %18s\n", "conv", "backend", "forward", "backward input", "backward weight");
  struct Be {
    const char* name;
    cuda::Backend be;
    bool tf32;
    DType gemm = DType::Float32;  // autocast's operand precision
  };
  std::vector<Be> bes = {{"hand", cuda::Backend::Handwritten, false}};
  if (cuda::has_cudnn()) {
    bes.push_back({"cuDNN", cuda::Backend::Library, false});
    bes.push_back({"cuDNN TF32", cuda::Backend::Library, true});
    bes.push_back({"cuDNN BF16", cuda::Backend::Library, false, DType::BFloat16});
    bes.push_back({"cuDNN FP16", cuda::Backend::Library, false, DType::Float16});
  }
  for (const ConvShape& s : shapes) {
    Conv2dParams p;
    p.stride = {s.stride, s.stride};
    p.padding = {s.pad, s.pad};
    Tensor x = gpu_uniform({N, s.C, s.H, s.H}), w = gpu_uniform({s.O, s.C, s.k, s.k});
    const auto out = ops::conv2d_output_size(x.sizes(), w.sizes(), p);
    Tensor go = gpu_uniform({N, s.O, out[0], out[1]});
    const double flops = 2.0 * N * s.O * out[0] * out[1] * s.C * s.k * s.k;
    for (const Be& b : bes) {
      cuda::set_backend(cuda::OpFamily::Conv, b.be);
      cuda::set_backend(cuda::OpFamily::Gemm, b.be);
      cuda::set_allow_tf32(b.tf32);
      p.gemm_dtype = b.gemm;
      const int reps = quick ? 3 : 5;
      const double f = median_ms([&] { ops::conv2d_forward(x, w, Tensor(), p); }, reps);
      const double bi = median_ms([&] { ops::conv2d_backward_input(go, w, x.sizes(), p); }, reps);
      const double bw = median_ms([&] { ops::conv2d_backward_weight(go, x, w.sizes(), p); }, reps);
      auto cell = [&](double ms) {
        static char buf[64];
        std::snprintf(buf, sizeof(buf), "%8.2f (%6.1f)", ms, flops / (ms * 1e-3) / 1e12);
        return std::string(buf);
      };
      std::printf("  %-28s %-10s %18s %18s %18s\n", s.name, b.name, cell(f).c_str(), cell(bi).c_str(), cell(bw).c_str());
    }
  }
  cuda::set_allow_tf32(false);
  set_all(cuda::Backend::Library);
}

// ---- a residual block through autograd -------------------------------------------------------------------

void bench_block(bool quick) {
  const int64_t N = quick ? 8 : 32, C = 64, H = 56;
  std::printf("\n== residual block (conv-bn-relu-conv-bn + x, relu), batch %lld, 64 ch, 56x56: forward + backward ==\n",
              static_cast<long long>(N));
  Tensor x = gpu_uniform({N, C, H, H});
  Tensor w1 = gpu_uniform({C, C, 3, 3}), w2 = gpu_uniform({C, C, 3, 3});
  Tensor g1 = ops::to_device(ones({C}), kGpu), b1 = ops::to_device(zeros({C}), kGpu);
  Tensor g2 = ops::to_device(ones({C}), kGpu), b2 = ops::to_device(zeros({C}), kGpu);
  for (Tensor* t : {&w1, &w2, &g1, &b1, &g2, &b2}) t->requires_grad_(true);
  Conv2dParams o;
  o.padding = {1, 1};
  for (cuda::Backend be : {cuda::Backend::Handwritten, cuda::Backend::Library}) {
    set_all(be);
    const double ms = median_ms(
        [&] {
          Tensor y = conv2d(x, w1, Tensor(), o);
          y = batch_norm(y, Tensor(), Tensor(), g1, b1, true).relu();
          y = conv2d(y, w2, Tensor(), o);
          y = (batch_norm(y, Tensor(), Tensor(), g2, b2, true) + x).relu();
          y.sum().backward();
          for (Tensor* t : {&w1, &w2, &g1, &b1, &g2, &b2}) t->zero_grad();
        },
        quick ? 3 : 5);
    std::printf("  %-12s %8.2f ms\n", cuda::to_string(be), ms);
  }
  set_all(cuda::Backend::Library);
}

// ---- memory-bound ops --------------------------------------------------------------------------------------

void bench_memory(bool quick) {
  const int64_t n = quick ? (int64_t(1) << 26) : (int64_t(1) << 28);
  std::printf("\n== memory-bound kernels, %lld float32 elements (GB/s of compulsory traffic) ==\n",
              static_cast<long long>(n));
  Tensor a = gpu_uniform({n}), b = gpu_uniform({n});
  auto report = [&](const char* name, double bytes, const std::function<void()>& f) {
    const double ms = median_ms(f, 5);
    std::printf("  %-40s %8.3f ms %8.0f GB/s\n", name, ms, bytes / (ms * 1e-3) / 1e9);
  };
  const double fb = 4.0 * static_cast<double>(n);
  report("add (contiguous, vectorised)", 3 * fb, [&] { ops::binary(ops::BinaryOp::Add, a, b); });
  Tensor at = ops::transpose(ops::view(a, {n / 4096, 4096}), 0, 1), bt = ops::transpose(ops::view(b, {n / 4096, 4096}), 0, 1);
  report("add (transposed operands, strided)", 3 * fb, [&] { ops::binary(ops::BinaryOp::Add, at, bt); });
  report("sum (all elements, split rows)", fb, [&] { ops::reduce(ops::ReduceOp::Sum, a, {}, false); });
  Tensor rows = ops::view(ops::slice(a, 0, 0, n / 1000 * 1000, 1), {n / 1000, 1000});
  report("softmax over rows of 1000", 2 * fb, [&] { ops::softmax(rows, 1); });
  const int64_t images = n / (64 * 56 * 56);
  Tensor xb = ops::view(ops::slice(a, 0, 0, images * 64 * 56 * 56, 1), {images, 64, 56, 56});
  for (cuda::Backend be : {cuda::Backend::Handwritten, cuda::Backend::Library}) {
    cuda::set_backend(cuda::OpFamily::BatchNorm, be);
    std::string name = std::string("batch norm forward, training (") + cuda::to_string(be) + ")";
    // statistics pass + normalise pass: reads x twice, writes once
    report(name.c_str(), 3 * 4.0 * static_cast<double>(xb.numel()),
           [&] { ops::batch_norm_forward(xb, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5); });
  }
  cuda::set_backend(cuda::OpFamily::BatchNorm, cuda::Backend::Library);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (!cuda::is_available()) {
    std::printf("bench_cuda: no GPU (%s); nothing to measure\n", cuda::unavailable_reason().c_str());
    return 0;
  }
  try {
    std::printf("bench_cuda on %s; cuDNN %s; %s\n", cuda::device_name(0).c_str(), cuda::has_cudnn() ? "yes" : "no",
                quick ? "quick" : "full");
    bench_gemm(quick);
    bench_convs(quick);
    bench_block(quick);
    bench_memory(quick);
    std::printf("\n%s\n", cuda::allocator_summary().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda: %s\n", e.what());
    return 1;
  }
  return 0;
}
